"""Query-string filters of the product list."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet
from drf_spectacular.utils import extend_schema_field

from catalog.models import Product
from catalog.selectors import category_find, category_subtree_ids

# django-filter refuses numbers above 1e50 before they reach the database; the schema says so.
PriceBound = extend_schema_field({"type": "number", "maximum": 1e50})(django_filters.NumberFilter)

_STOCK_SCHEMA = {
    "type": "string",
    "enum": ["true", "false", "1", "0", ""],
    "description": "Has units available (true or false); empty: no filter.",
}
StockChoice = extend_schema_field(_STOCK_SCHEMA)(django_filters.TypedChoiceFilter)


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
    ordering = django_filters.OrderingFilter(
        fields=(
            ("price", "price"),
            ("name", "name"),
            ("created_at", "created_at"),
            ("sold_count", "sold"),
        )
    )

    class Meta:
        model = Product
        fields = ["search", "category", "min_price", "max_price", "in_stock"]

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
