import importlib
from decimal import Decimal
from uuid import uuid4

import pytest
from django.apps import apps as django_apps
from django.db import IntegrityError, transaction

from catalog.errors import InvalidReservation, InvalidStockAdjustment
from catalog.models import Product, Stock, StockReservation, StockReservationLine
from catalog.services import (
    LineRequest,
    product_create,
    stock_adjust,
    stock_reject,
    stock_release,
    stock_reserve,
)
from catalog.tests.factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db
State = StockReservation.State


def stock_of(product) -> Stock:
    return Stock.objects.get(pk=product.pk)


def shelf(product) -> tuple[int, int, int]:
    """(on hand, reserved, sold count) of a product."""
    stock = stock_of(product)
    return stock.on_hand, stock.reserved, Product.objects.get(pk=product.pk).sold_count


def test_reserve_takes_every_line_off_the_shelf_counts_it_sold_and_returns_unit_prices():
    phone = ProductFactory(price=Decimal("199.90"), on_hand=5)
    case = ProductFactory(price=Decimal("9.50"), on_hand=10)

    reservation = stock_reserve(
        order_id=uuid4(), lines=[LineRequest(phone.pk, 2), LineRequest(case.pk, 3)]
    )

    assert reservation.state == State.COMMITTED
    assert {
        (line.product_id, line.quantity, line.unit_price) for line in reservation.lines.all()
    } == {
        (phone.pk, 2, Decimal("199.90")),
        (case.pk, 3, Decimal("9.50")),
    }
    # What its reply reads: the lines as written.
    assert [
        (line.product_id, line.quantity, line.unit_price) for line in reservation.held_lines
    ] == [(line.product_id, line.quantity, line.unit_price) for line in reservation.lines.all()]
    assert (shelf(phone), stock_of(phone).available) == ((3, 0, 2), 3)
    assert (shelf(case), stock_of(case).available) == ((7, 0, 3), 7)


def test_reserve_is_all_or_nothing_when_one_line_is_short():
    plenty = ProductFactory(on_hand=100)
    scarce = ProductFactory(on_hand=1)

    reservation = stock_reserve(
        order_id=uuid4(), lines=[LineRequest(plenty.pk, 5), LineRequest(scarce.pk, 2)]
    )

    assert reservation.state == State.REFUSED
    assert reservation.reason == "out_of_stock"
    assert reservation.refused_product_ids == [scarce.pk]
    assert (shelf(plenty), shelf(scarce)) == ((100, 0, 0), (1, 0, 0))
    assert not reservation.lines.exists()


def test_reserve_refuses_unknown_products():
    product = ProductFactory()
    reservation = stock_reserve(
        order_id=uuid4(), lines=[LineRequest(product.pk, 1), LineRequest(987654, 1)]
    )
    assert (reservation.state, reservation.reason) == (State.REFUSED, "product_not_found")
    assert reservation.refused_product_ids == [987654]
    assert shelf(product) == (10, 0, 0)


def test_reserve_refuses_inactive_products():
    product = ProductFactory(active=False)
    reservation = stock_reserve(order_id=uuid4(), lines=[LineRequest(product.pk, 1)])
    assert (reservation.state, reservation.reason) == (State.REFUSED, "product_inactive")


def test_a_product_without_a_stock_row_is_out_of_stock():
    product = ProductFactory()
    Stock.objects.filter(pk=product.pk).delete()
    reservation = stock_reserve(order_id=uuid4(), lines=[LineRequest(product.pk, 1)])
    assert (reservation.state, reservation.reason) == (State.REFUSED, "out_of_stock")


def test_reserve_sums_repeated_lines_of_one_product():
    product = ProductFactory(on_hand=5)
    reservation = stock_reserve(
        order_id=uuid4(), lines=[LineRequest(product.pk, 2), LineRequest(product.pk, 3)]
    )
    assert reservation.state == State.COMMITTED
    assert [line.quantity for line in reservation.lines.all()] == [5]
    assert stock_of(product).available == 0


@pytest.mark.parametrize("lines", [[], [LineRequest(1, 0)], [LineRequest(1, -2)]])
def test_reserve_rejects_empty_or_non_positive_lines(lines):
    with pytest.raises(InvalidReservation):
        stock_reserve(order_id=uuid4(), lines=lines)


def test_reserve_twice_with_the_same_order_id_takes_once():
    product = ProductFactory(on_hand=10)
    order_id = uuid4()

    first = stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 4)])
    second = stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 4)])

    assert first.pk == second.pk
    assert list(second.lines.values_list("quantity", flat=True)) == [4]
    assert shelf(product) == (6, 0, 4)


def test_a_refusal_is_repeated_even_after_stock_arrives():
    product = ProductFactory(on_hand=0)
    order_id = uuid4()
    stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 1)])
    stock_adjust(product=product, delta=10)

    again = stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 1)])

    assert (again.state, again.reason) == (State.REFUSED, "out_of_stock")
    assert shelf(product) == (10, 0, 0)


def test_release_returns_the_units_to_the_shelf_and_leaves_the_count_to_the_cancel():
    product = ProductFactory(on_hand=10)
    order_id = uuid4()
    stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 6)])

    assert stock_release(order_id=order_id).state == State.RELEASED
    # The cancel saga's step: order.cancelled takes the units out of the sold count.
    assert shelf(product) == (10, 0, 6)


def test_release_is_idempotent():
    product = ProductFactory(on_hand=10)
    order_id = uuid4()
    stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 6)])

    stock_release(order_id=order_id)
    stock_release(order_id=order_id)

    assert shelf(product) == (10, 0, 6)


def test_a_rejection_gives_the_units_back_and_uncounts_them_once():
    product = ProductFactory(on_hand=10)
    Product.objects.filter(pk=product.pk).update(sold_count=20)
    order_id = uuid4()
    stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 6)])
    assert shelf(product) == (4, 0, 26)

    assert stock_reject(order_id=order_id).state == State.RELEASED
    stock_reject(order_id=order_id)  # a redelivered event's retry changes nothing more

    assert shelf(product) == (10, 0, 20)


def test_a_rejection_of_a_refused_reservation_changes_nothing():
    product = ProductFactory(on_hand=1)
    Product.objects.filter(pk=product.pk).update(sold_count=20)
    order_id = uuid4()
    stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 2)])

    assert stock_reject(order_id=order_id).state == State.REFUSED
    assert shelf(product) == (1, 0, 20)


def test_a_rejection_of_units_held_before_reserving_took_them_makes_them_available():
    product = ProductFactory(on_hand=10)
    order_id = uuid4()
    held = StockReservation.objects.create(order_id=order_id, state=State.HELD)
    StockReservationLine.objects.create(
        reservation=held, product=product, quantity=3, unit_price=product.price
    )
    Stock.objects.filter(pk=product.pk).update(reserved=3)

    assert stock_reject(order_id=order_id).state == State.RELEASED
    assert shelf(product) == (10, 0, 0)


def test_a_reserve_arriving_after_its_release_takes_nothing():
    product = ProductFactory(on_hand=10)
    order_id = uuid4()

    stock_reject(order_id=order_id)  # the saga gave up (timeout) before catalog answered
    late = stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 2)])

    assert late.state == State.RELEASED
    assert shelf(product) == (10, 0, 0)


def test_the_migration_moves_holds_from_before_to_units_taken():
    migration = importlib.import_module("catalog.migrations.0002_reserve_takes_units_off_the_shelf")
    product = ProductFactory(on_hand=10)
    held = StockReservation.objects.create(order_id=uuid4(), state=State.HELD)
    StockReservationLine.objects.create(
        reservation=held, product=product, quantity=3, unit_price=product.price
    )
    Stock.objects.filter(pk=product.pk).update(reserved=3)

    migration.holds_commit(django_apps, None)

    held.refresh_from_db()
    assert held.state == State.COMMITTED
    assert shelf(product) == (7, 0, 3)
    stock_reject(order_id=held.order_id)  # and a rejection gives them back as any other
    assert shelf(product) == (10, 0, 0)


def test_stock_adjust_receives_and_writes_off_units():
    product = ProductFactory(on_hand=10)
    assert stock_adjust(product=product, delta=5).on_hand == 15
    assert stock_adjust(product=product, delta=-15).on_hand == 0


def test_stock_adjust_cannot_write_off_units_orders_took():
    product = ProductFactory(on_hand=10)
    stock_reserve(order_id=uuid4(), lines=[LineRequest(product.pk, 8)])

    with pytest.raises(InvalidStockAdjustment):
        stock_adjust(product=product, delta=-3)
    assert stock_of(product).on_hand == 2


def test_stock_adjust_cannot_write_off_units_held_for_orders():
    product = ProductFactory(on_hand=10)
    Stock.objects.filter(pk=product.pk).update(reserved=8)  # held before reserving took them

    with pytest.raises(InvalidStockAdjustment):
        stock_adjust(product=product, delta=-3)
    assert stock_of(product).on_hand == 10


def test_product_create_refuses_negative_stock():
    with pytest.raises(InvalidStockAdjustment):
        product_create(
            sku="X-1", name="X", price=Decimal("1.00"), category=CategoryFactory(), on_hand=-1
        )


def test_database_refuses_stock_below_reserved():
    product = ProductFactory(on_hand=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        Stock.objects.filter(pk=product.pk).update(reserved=3)


def test_database_refuses_negative_on_hand():
    product = ProductFactory(on_hand=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        Stock.objects.filter(pk=product.pk).update(on_hand=-1)


@pytest.mark.parametrize("price", [Decimal("0.00"), Decimal("-1.00")])
def test_database_refuses_a_price_that_is_not_positive(price):
    product = ProductFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        type(product).objects.filter(pk=product.pk).update(price=price)
