"""Shapes of the catalog API (see API.md)."""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from catalog.models import MAX_UNITS, Category, Product


class CategorySerializer(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = ["id", "name", "slug", "parent"]
        extra_kwargs = {"slug": {"required": False}}


class ProductSerializer(serializers.Serializer):
    """A product as clients read it.

    Declared field by field rather than as a ModelSerializer: this is the
    catalog's hottest read, and a ModelSerializer rebuilds its fields from the
    model on every use, which cost more than the query itself.
    """

    id = serializers.IntegerField(read_only=True)
    sku = serializers.CharField(read_only=True)
    name = serializers.CharField(read_only=True)
    slug = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    price = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)
    currency = serializers.CharField(read_only=True)
    category = serializers.IntegerField(source="category_id", read_only=True)
    active = serializers.BooleanField(read_only=True)
    stock_available = serializers.SerializerMethodField()
    sold = serializers.IntegerField(source="sold_count", read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def get_stock_available(self, product: Product) -> int:
        annotated = getattr(product, "stock_available", None)  # lists annotate it in SQL
        if annotated is not None:
            return annotated
        stock = getattr(product, "stock", None)
        return stock.available if stock is not None else 0


class ProductWriteSerializer(serializers.ModelSerializer):
    """What staff send to create or change a product."""

    price = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.01"),
        error_messages={"min_value": "Price must be greater than zero."},
    )
    on_hand = serializers.IntegerField(
        min_value=0,
        max_value=MAX_UNITS,
        required=False,
        default=0,
        write_only=True,
        help_text="Units on hand when the product is created.",
    )

    class Meta:
        model = Product
        fields = ["sku", "name", "slug", "description", "price", "category", "active", "on_hand"]
        extra_kwargs = {"slug": {"required": False}}


class ProductUpdateSerializer(ProductWriteSerializer):
    """PATCH: stock changes go through the stock endpoint, not here."""

    on_hand = None

    class Meta(ProductWriteSerializer.Meta):
        fields = ["sku", "name", "slug", "description", "price", "category", "active"]


class StockAdjustSerializer(serializers.Serializer):
    delta = serializers.IntegerField(
        min_value=-MAX_UNITS,
        max_value=MAX_UNITS,
        help_text="Units received (positive) or written off (negative); not zero.",
    )

    def validate_delta(self, value: int) -> int:
        if value == 0:
            raise serializers.ValidationError("Must not be zero.")
        return value


class StockSerializer(serializers.Serializer):
    product_id = serializers.IntegerField()
    on_hand = serializers.IntegerField()
    reserved = serializers.IntegerField()
    available = serializers.IntegerField()
