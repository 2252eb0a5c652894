"""Reads of the catalog: querysets and lookups, never writes."""

from __future__ import annotations

from uuid import UUID

from django.db.models import F, QuerySet, Value
from django.db.models.functions import Coalesce

from catalog.errors import CategoryNotFound, ProductNotFound
from catalog.models import Category, Product, StockReservation


def product_list(*, include_inactive: bool = False) -> QuerySet[Product]:
    """Products with ``stock_available`` computed in SQL, so lists filter and sort on it."""
    products = Product.objects.annotate(
        stock_available=Coalesce(F("stock__on_hand") - F("stock__reserved"), Value(0))
    )
    return products if include_inactive else products.filter(active=True)


def product_get(*, product_id: int, include_inactive: bool = False) -> Product:
    """One product with its stock row (one query); inactive ones exist only for staff."""
    products = Product.objects.select_related("stock")
    if not include_inactive:
        products = products.filter(active=True)
    try:
        return products.get(pk=product_id)
    except (Product.DoesNotExist, ValueError, TypeError):
        raise ProductNotFound(f"There is no product with id {product_id}.") from None


def product_list_by_ids(*, ids: list[int]) -> QuerySet[Product]:
    """The active products among ``ids`` (one query, stock computed as ``product_list`` does)."""
    return product_list().filter(pk__in=ids).order_by("pk")


def category_list() -> QuerySet[Category]:
    return Category.objects.select_related("parent")


def category_get(*, category_id: int) -> Category:
    try:
        return Category.objects.get(pk=category_id)
    except (Category.DoesNotExist, ValueError, TypeError):
        raise CategoryNotFound(f"There is no category with id {category_id}.") from None


def category_find(*, id_or_slug: str) -> Category | None:
    """A category by id (digits) or by slug."""
    # ASCII digits only: str.isdigit() also says yes to "¹" or "٣", which int() refuses
    # or reads as another number.
    numeric = id_or_slug.isascii() and id_or_slug.isdigit()
    lookup = {"pk": int(id_or_slug)} if numeric else {"slug": id_or_slug}
    return Category.objects.filter(**lookup).first()


def category_subtree_ids(*, category: Category) -> list[int]:
    """The category and all its descendants, so a filter on "Electronics" finds phones.

    Categories are few; one query for the whole parent map beats a recursive CTE
    that SQLite and PostgreSQL would spell differently.
    """
    children: dict[int | None, list[int]] = {}
    for category_id, parent_id in Category.objects.values_list("id", "parent_id"):
        children.setdefault(parent_id, []).append(category_id)
    found: list[int] = []
    pending = [category.pk]
    while pending:
        current = pending.pop()
        if current in found:  # a parent loop saved through the admin must not hang us
            continue
        found.append(current)
        pending.extend(children.get(current, []))
    return found


def reservation_get(*, order_id: UUID) -> StockReservation | None:
    return StockReservation.objects.prefetch_related("lines").filter(order_id=order_id).first()
