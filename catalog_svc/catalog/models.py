"""Products, their categories, their stock and the stock held for orders."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from common.models import TimeStampedModel


def default_currency() -> str:
    return settings.CURRENCY


class Category(TimeStampedModel):
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=140, unique=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Product(TimeStampedModel):
    sku = models.CharField("SKU", max_length=64, unique=True)
    name = models.CharField(max_length=200, db_index=True)
    slug = models.SlugField(max_length=220, unique=True)
    description = models.TextField(blank=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, db_index=True)
    currency = models.CharField(max_length=3, default=default_currency)
    active = models.BooleanField(default=True, db_index=True)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    sold_count = models.PositiveIntegerField(default=0, db_index=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gt=0), name="product_price_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"


# The most units one product may have on hand: far below the column's 2**31 - 1, so no
# adjustment or reservation arithmetic can overflow it.
MAX_UNITS = 1_000_000_000


class Stock(models.Model):
    """Units on hand and units held for orders; ``available = on_hand - reserved``."""

    product = models.OneToOneField(
        Product, primary_key=True, on_delete=models.CASCADE, related_name="stock"
    )
    on_hand = models.IntegerField(default=0)
    reserved = models.IntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(on_hand__gte=0), name="stock_on_hand_not_negative"),
            models.CheckConstraint(
                condition=Q(reserved__gte=0), name="stock_reserved_not_negative"
            ),
            # Available never below zero: nothing is ever promised twice.
            models.CheckConstraint(
                condition=Q(reserved__lte=F("on_hand")), name="stock_available_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product_id}: {self.available} available"

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class StockReservation(TimeStampedModel):
    """Stock taken for one order: the saga's step in the catalog, one per order id.

    ``committed`` when reserved: the units have left the shelf (``held``, units kept
    aside until approval, is only in rows from before reserving took them);
    ``released`` when the order was rejected or cancelled.

    A refused attempt is recorded too (state ``refused``) so a redelivered
    command gets the same answer instead of a new decision.
    """

    class State(models.TextChoices):
        HELD = "held"
        COMMITTED = "committed"
        RELEASED = "released"
        REFUSED = "refused"

    order_id = models.UUIDField(unique=True)
    state = models.CharField(max_length=10, choices=State.choices, db_index=True)
    reason = models.CharField(max_length=40, blank=True)
    refused_product_ids = models.JSONField(default=list, blank=True)

    # The lines a reserve has just written (not a column): its reply reads them from here.
    held_lines: list[StockReservationLine] | None = None

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.order_id} ({self.state})"


class StockReservationLine(models.Model):
    reservation = models.ForeignKey(
        StockReservation, on_delete=models.CASCADE, related_name="lines"
    )
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        ordering = ["product_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["reservation", "product"], name="reservation_line_unique"
            ),
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="reservation_line_quantity_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.product_id}"
