"""Writes of the catalog: products, stock, and the stock reservations the order saga drives."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.text import slugify

from catalog.errors import InvalidReservation, InvalidStockAdjustment
from catalog.models import (
    MAX_UNITS,
    Category,
    Product,
    Stock,
    StockReservation,
    StockReservationLine,
)
from catalog.selectors import reservation_get
from common.sql import insert_statement, prepared, row_insert, statements_run

logger = logging.getLogger(__name__)

State = StockReservation.State

PRODUCT_UPDATABLE_FIELDS = frozenset(
    {"sku", "name", "slug", "description", "price", "active", "category"}
)


@dataclass(frozen=True)
class LineRequest:
    """One line of a reservation command: how many units of which product."""

    product_id: int
    quantity: int


def _unique_slug(
    model: type[Product] | type[Category], base: str, *, exclude_pk: Any = None
) -> str:
    slug = slugify(base)[:200] or "item"
    candidate, n = slug, 2
    while model.objects.filter(slug=candidate).exclude(pk=exclude_pk).exists():
        candidate, n = f"{slug}-{n}", n + 1
    return candidate


@transaction.atomic
def category_create(*, name: str, slug: str = "", parent: Category | None = None) -> Category:
    return Category.objects.create(
        name=name, slug=slug or _unique_slug(Category, name), parent=parent
    )


@transaction.atomic
def product_create(
    *,
    sku: str,
    name: str,
    price: Decimal,
    category: Category,
    description: str = "",
    slug: str = "",
    active: bool = True,
    on_hand: int = 0,
) -> Product:
    """A new product and its stock row, in one transaction."""
    if on_hand < 0:
        raise InvalidStockAdjustment(
            "Stock on hand cannot be negative.", errors={"on_hand": ["Must be 0 or more."]}
        )
    product = Product.objects.create(
        sku=sku,
        name=name,
        slug=slug or _unique_slug(Product, f"{name}-{sku}"),
        description=description,
        price=price,
        active=active,
        category=category,
    )
    Stock.objects.create(product=product, on_hand=on_hand)
    return product


@transaction.atomic
def product_update(*, product: Product, data: dict[str, Any]) -> Product:
    unknown = set(data) - PRODUCT_UPDATABLE_FIELDS
    if unknown:
        raise ValueError(f"Fields not updatable: {sorted(unknown)}")
    for field, value in data.items():
        setattr(product, field, value)
    product.save(update_fields=[*data, "updated_at"])
    return product


@transaction.atomic
def product_retire(*, product: Product) -> Product:
    """Take a product off sale. Orders keep referring to it, so it is never deleted."""
    return product_update(product=product, data={"active": False})


def _locked_stock(product_id: int) -> Stock:
    stock, _ = Stock.objects.get_or_create(product_id=product_id)
    return Stock.objects.select_for_update().get(pk=stock.pk)


@transaction.atomic
def stock_adjust(*, product: Product, delta: int) -> Stock:
    """Receive (positive delta) or write off (negative) units on hand.

    Units orders took are off the shelf already (on hand never drops below zero);
    units still held for orders (``reserved``, by holds from before reserving took
    them) stay untouchable: on hand never drops below them either.
    """
    stock = _locked_stock(product.pk)
    new_on_hand = stock.on_hand + delta
    if new_on_hand > MAX_UNITS:
        raise InvalidStockAdjustment(
            f"Stock on hand would be {new_on_hand}, above the {MAX_UNITS} units a product "
            "may have.",
            errors={"delta": [f"Must be at most {MAX_UNITS - stock.on_hand}."]},
        )
    if new_on_hand < 0:
        raise InvalidStockAdjustment(
            f"Stock on hand would be {new_on_hand}: only {stock.on_hand} units are on the "
            "shelf (units taken by orders are not).",
            errors={"delta": [f"Must be at least {-stock.on_hand}."]},
        )
    if new_on_hand < stock.reserved:
        raise InvalidStockAdjustment(
            f"Stock on hand would be {new_on_hand}, below the {stock.reserved} units "
            "reserved for orders.",
            errors={"delta": [f"Must be at least {stock.reserved - stock.on_hand}."]},
        )
    stock.on_hand = new_on_hand
    stock.save(update_fields=["on_hand", "updated_at"])
    return stock


def _merged_quantities(lines: Iterable[LineRequest]) -> dict[int, int]:
    """Quantity per product, with repeated products summed; bad lines are refused."""
    wanted: dict[int, int] = {}
    for line in lines:
        if line.quantity <= 0:
            raise InvalidReservation(
                f"Quantity for product {line.product_id} must be positive, not {line.quantity}."
            )
        wanted[line.product_id] = wanted.get(line.product_id, 0) + line.quantity
    if not wanted:
        raise InvalidReservation("A reservation needs at least one line.")
    return wanted


def _reserve(order_id: UUID, wanted: dict[int, int]) -> StockReservation:
    """Take the units off the shelf for the order (``committed``) and count them sold.

    Fewest statements first: a duplicate command fails on the order id at its first
    INSERT, and one locking read brings each line's stock and product.
    """
    reservation = StockReservation(order_id=order_id, state=State.COMMITTED)
    row_insert(reservation)  # objects.create(), less the ORM's compiling (common.sql)
    stocks = _shelves_locked(list(wanted))
    if refusal := _refusal(wanted, stocks):
        reason, product_ids = refusal
        reservation.state, reservation.reason = State.REFUSED, reason
        reservation.refused_product_ids = sorted(product_ids)
        reservation.save(update_fields=["state", "reason", "refused_product_ids", "updated_at"])
        return reservation

    reservation.held_lines = [
        StockReservationLine(
            reservation=reservation,
            product_id=product_id,
            quantity=quantity,
            unit_price=stocks[product_id].price,
        )
        for product_id, quantity in sorted(wanted.items())
    ]
    _taken_write(reservation.held_lines)
    return reservation


def _taken_write(lines: list[StockReservationLine]) -> None:
    """Write a reserve's lines, each product's stock and sold count: one multi-row INSERT
    and one UPDATE per product and table, in one round trip on PostgreSQL.

    Plain SQL, as portable as the ORM's (PostgreSQL and SQLite): the ORM's bulk_update,
    bulk_create and F() updates cost 1.8 ms of the catalog worker's 6.3 ms an order
    in compiling alone (issue #16, py-spy); these statements cost 0.2 ms. The stock
    rows are locked (``_reserve``'s read), so nothing changes them meanwhile; the
    CHECK constraints still guard each row.
    """
    # As the ORM keeps it (SQLite: UTC text without an offset).
    now = Stock._meta.get_field("updated_at").get_db_prep_save(timezone.now(), connection)
    stock_table, product_table = Stock._meta.db_table, Product._meta.db_table
    # Table names from the models' own meta; values are parameters.
    statements_run(
        [
            insert_statement(lines),
            *(
                (
                    f"UPDATE {stock_table} SET on_hand = on_hand - %s, updated_at = %s "  # noqa: S608
                    "WHERE product_id = %s",
                    [line.quantity, now, line.product_id],
                )
                for line in lines
            ),
            *(
                (
                    f"UPDATE {product_table} SET sold_count = sold_count + %s WHERE id = %s",  # noqa: S608
                    [line.quantity, line.product_id],
                )
                for line in lines
            ),
        ]
    )


@dataclass(frozen=True)
class _Shelf:
    """A product's stock as a reserve reads it, locked: what it may take, at what price."""

    available: int
    price: Decimal
    active: bool


def _shelves_locked(product_ids: list[int]) -> dict[int, _Shelf]:
    """Each product's stock row (locked, in product order so two orders never wait on each
    other crosswise) with its product's price and whether it is on sale.

    Plain SQL for the reason ``_taken_write`` gives: the ORM's locking read with its
    join cost 1.2 ms an order in the catalog worker (issue #16).
    """
    stock_table, product_table = Stock._meta.db_table, Product._meta.db_table
    # SQLite has no row locks (its writer lock serialises reserves); PostgreSQL locks
    # the stock rows only, as select_for_update(of=("self",)) did.
    lock = " FOR UPDATE OF s" if connection.features.has_select_for_update_of else ""
    places = Product._meta.get_field("price").decimal_places
    with connection.cursor() as cursor:
        # Table names from the models' own meta; values are parameters.
        read = prepared(
            cursor,
            f"SELECT s.product_id, s.on_hand - s.reserved, p.price, p.active "  # noqa: S608
            f"FROM {stock_table} s JOIN {product_table} p ON p.id = s.product_id "
            f"WHERE s.product_id IN ({', '.join(['%s'] * len(product_ids))}) "
            f"ORDER BY s.product_id{lock}",
        )
        cursor.execute(read, product_ids)
        return {
            # SQLite hands back a decimal column as a float: the price as written.
            product_id: _Shelf(
                available, Decimal(str(price)).quantize(Decimal(1).scaleb(-places)), bool(active)
            )
            for product_id, available, price, active in cursor.fetchall()
        }


def _refusal(wanted: dict[int, int], stocks: dict[int, _Shelf]) -> tuple[str, set[int]] | None:
    """Why the order cannot have its stock (reason, product ids), or None."""
    active = {pid: stock.active for pid, stock in stocks.items()}
    if unlisted := wanted.keys() - stocks.keys():
        # Not found, or (rarer) a product without a stock row: read on this path only.
        active |= dict(Product.objects.filter(pk__in=list(unlisted)).values_list("pk", "active"))
    if missing := wanted.keys() - active.keys():
        return "product_not_found", missing
    if inactive := {pid for pid, is_active in active.items() if not is_active}:
        return "product_inactive", inactive
    if short := {
        pid
        for pid, quantity in wanted.items()
        if pid not in stocks or stocks[pid].available < quantity
    }:
        return "out_of_stock", short
    return None


def stock_reserve(*, order_id: UUID, lines: Sequence[LineRequest]) -> StockReservation:
    """Take stock for every line of an order, or for none of them.

    Returns the reservation: ``committed`` with each line's unit price (the units
    have left the shelf and count as sold; ``order.rejected`` or the cancel saga
    gives them back), or ``refused`` with a reason (``product_not_found``,
    ``product_inactive``, ``out_of_stock``). Idempotent by order id: a repeated
    command, even a concurrent one, returns the first outcome rather than
    deciding again (the order id is unique: its INSERT fails and the first
    outcome is read).
    """
    wanted = _merged_quantities(lines)
    try:
        with transaction.atomic():
            return _reserve(order_id, wanted)
    except IntegrityError:
        existing = reservation_get(order_id=order_id)
        if existing is None:
            raise
        return existing


def _locked_reservation(order_id: UUID) -> StockReservation | None:
    return StockReservation.objects.select_for_update().filter(order_id=order_id).first()


def _apply_to_stock(reservation: StockReservation, **changes: Any) -> None:
    """Apply per-line F() changes, e.g. ``reserved=-1`` means reserved -= quantity."""
    lines = StockReservationLine.objects.filter(reservation=reservation)
    _lines_apply(lines.values_list("product_id", "quantity"), **changes)


def _lines_apply(lines: Iterable[tuple[int, int]], **changes: int) -> None:
    """``_apply_to_stock`` for (product id, quantity) lines, in product order (the order
    reserves lock stock rows in)."""
    now = timezone.now()
    for product_id, quantity in sorted(lines):
        Stock.objects.filter(pk=product_id).update(
            updated_at=now,
            **{field: F(field) + sign * quantity for field, sign in changes.items()},
        )


def _release(order_id: UUID) -> tuple[StockReservation, str]:
    """``stock_release``'s work; also returns the state the reservation was in."""
    reservation = _locked_reservation(order_id)
    if reservation is None:
        try:
            with transaction.atomic():
                marker = StockReservation.objects.create(order_id=order_id, state=State.RELEASED)
                return marker, ""
        except IntegrityError:
            # A concurrent reserve inserted the row that made ours fail: release that one.
            reservation = StockReservation.objects.select_for_update().get(order_id=order_id)
    before = reservation.state
    if before in (State.RELEASED, State.REFUSED):
        return reservation, before
    if before == State.HELD:  # held before reserving took the units off the shelf
        _apply_to_stock(reservation, reserved=-1)
    else:
        _apply_to_stock(reservation, on_hand=+1)
    reservation.state = State.RELEASED
    reservation.save(update_fields=["state", "updated_at"])
    return reservation, before


@transaction.atomic
def stock_release(*, order_id: UUID) -> StockReservation:
    """Give the order's units back to the shelf (the cancel saga's step). Idempotent.

    Releasing an order never reserved leaves a ``released`` marker, so a reserve
    command that arrives late (after the saga gave up on it) finds the order
    closed and takes nothing. Sold counts are the cancel's event's to correct
    (``order.cancelled``).
    """
    return _release(order_id)[0]


# No savepoint: its consumer's transaction (inbox row and all) fails as one.
@transaction.atomic(savepoint=False)
def stock_reject(*, order_id: UUID) -> StockReservation:
    """``order.rejected`` reached catalog: what the order took goes back to the shelf and
    out of the sold counts (``stock_release``, and the count the reserve added)."""
    reservation, before = _release(order_id)
    if before == State.COMMITTED:
        sold = reservation.lines.values_list("product_id", "quantity")
        sold_counts_add(lines=[SoldLine(pid, quantity) for pid, quantity in sold], returned=True)
    return reservation


@dataclass(frozen=True)
class SoldLine:
    product_id: int
    quantity: int


def sold_counts_add(*, lines: Iterable[SoldLine], returned: bool = False) -> None:
    """Count units sold (taken for an order) or given back (``order.rejected``,
    ``order.cancelled``).

    Updated in place with ``F()``, in product order like the stock locks, so
    concurrent consumers neither lose counts nor deadlock. A product that no
    longer exists has nothing to count; a return never takes a count below zero.
    """
    quantities: dict[int, int] = {}
    for line in lines:
        quantities[line.product_id] = quantities.get(line.product_id, 0) + line.quantity
    for product_id, quantity in sorted(quantities.items()):
        sold = Greatest(F("sold_count") - quantity, 0) if returned else F("sold_count") + quantity
        Product.objects.filter(pk=product_id).update(sold_count=sold)
