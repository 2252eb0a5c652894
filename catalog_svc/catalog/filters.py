"""Query-string filters of the product list."""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from drf_spectacular.utils import extend_schema_field

from catalog.models import Product
from catalog.selectors import category_find, category_subtree_ids

# django-filter refuses numbers above 1e50 before they reach the database; the schema says so.
# Empty (``?max_price=``, as an HTML form sends it) means no filter, like every filter here.
_PRICE_SCHEMA = {
    "anyOf": [{"type": "number", "maximum": 1e50}, {"type": "string", "maxLength": 0}],
    "description": "A price; empty: no filter.",
}
PriceBound = extend_schema_field(_PRICE_SCHEMA)(django_filters.NumberFilter)

_STOCK_SCHEMA = {
    "type": "string",
    "enum": ["true", "false", "1", "0", ""],
    "description": "Has units available (true or false); empty: no filter.",
}
StockChoice = extend_schema_field(_STOCK_SCHEMA)(django_filters.TypedChoiceFilter)

# Empty (``?ordering=``, as an HTML form sends it) means the default order, like every
# filter here; the schema says so (drf-spectacular's own lists only the fields).
_ORDERING_FIELDS = ("price", "name", "created_at", "sold")
_ORDERING_SCHEMA = {  # of one item: drf-spectacular makes it a comma-separated list
    "type": "string",
    "enum": sorted({"", *_ORDERING_FIELDS, *(f"-{name}" for name in _ORDERING_FIELDS)}),
    "description": "Sort by these, comma-separated (`-` first: descending): "
    + ", ".join(_ORDERING_FIELDS)
    + "; empty: by name.",
}
OrderingChoice = extend_schema_field(_ORDERING_SCHEMA)(django_filters.OrderingFilter)

# One request for many products (the gateway's GraphQL batches its product lookups):
# as many ids as a page holds, so one page answers all of them.
MAX_IDS = 100
_ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}


class ProductIdsField(django_filters.fields.BaseCSVField):
    """Comma-separated ids, each one checked by the integer field it is combined with."""

    def clean(self, value: list[str] | None) -> list[int] | None:
        if value is not None and len(value) > MAX_IDS:
            raise forms.ValidationError(f"At most {MAX_IDS} ids at once.", code="too_many_ids")
        ids = [each for each in super().clean(value) or [] if each is not None]
        # "?ids=" (empty, as a form sends it) means no filter, like every filter here.
        return ids or None


@extend_schema_field(_ID_SCHEMA)
class ProductIdsFilter(django_filters.BaseInFilter):
    base_field_class = ProductIdsField
    field_class = forms.IntegerField


class ProductFilter(django_filters.FilterSet):
    search = django_filters.CharFilter(method="filter_search", label="Name or SKU contains")
    category = django_filters.CharFilter(
        method="filter_category", label="Category id or slug (its subcategories included)"
    )
    min_price = PriceBound(field_name="price", lookup_expr="gte")
    max_price = PriceBound(field_name="price", lookup_expr="lte")
    # A choice, not a BooleanFilter: that one reads "maybe" as "no filter" instead of an error.
    # Empty (``?in_stock=``, as an HTML form sends it) means no filter, like every filter here.
    in_stock = StockChoice(
        choices=[(v, v) for v in ("true", "false", "1", "0")],
        coerce=lambda value: value in ("true", "1"),
        method="filter_in_stock",
        label="Has units available (true or false)",
    )
    ids = ProductIdsFilter(
        field_name="id",
        lookup_expr="in",
        min_value=1,
        max_value=2**63 - 1,  # a product id is a bigint; more would fail in the database
        label=f"Only these product ids (comma-separated, at most {MAX_IDS})",
    )
    ordering = OrderingChoice(
        fields=(
            ("price", "price"),
            ("name", "name"),
            ("created_at", "created_at"),
            ("sold_count", "sold"),
        )
    )

    class Meta:
        model = Product
        fields = ["search", "category", "min_price", "max_price", "in_stock", "ids"]

    def filter_search(
        self, queryset: QuerySet[Product], name: str, value: str
    ) -> QuerySet[Product]:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(name__icontains=value) | Q(sku__icontains=value))

    def filter_category(
        self, queryset: QuerySet[Product], name: str, value: str
    ) -> QuerySet[Product]:
        category = category_find(id_or_slug=value.strip())
        if category is None:
            return queryset.none()
        return queryset.filter(category_id__in=category_subtree_ids(category=category))

    def filter_in_stock(
        self, queryset: QuerySet[Product], name: str, value: bool | None
    ) -> QuerySet[Product]:
        if value is None:
            return queryset
        return (
            queryset.filter(stock_available__gt=0)
            if value
            else queryset.exclude(stock_available__gt=0)
        )
