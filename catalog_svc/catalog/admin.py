from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import F

from catalog.errors import InvalidStockAdjustment
from catalog.models import Category, Product, Stock, StockReservation, StockReservationLine
from catalog.services import stock_adjust


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "parent"]
    list_filter = ["parent"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


class StockInline(admin.StackedInline):
    """Shown, not edited here: saving stale counts would undo concurrent reservations.

    Staff change stock on the Stock page (or the API), which adjusts by a delta
    under a row lock.
    """

    model = Stock
    can_delete = False
    fields = ["on_hand", "reserved", "available"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="available")
    def available(self, stock: Stock) -> int:
        return stock.available


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = [
        "sku",
        "name",
        "category",
        "price",
        "currency",
        "active",
        "available",
        "sold_count",
    ]
    list_filter = ["active", "category", "currency"]
    search_fields = ["sku", "name", "description"]
    list_select_related = ["category", "stock"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["sold_count", "created_at", "updated_at"]
    inlines = [StockInline]

    def save_model(self, request, obj: Product, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        Stock.objects.get_or_create(product=obj)

    @admin.display(description="available", ordering=F("stock__on_hand") - F("stock__reserved"))
    def available(self, product: Product) -> int | None:
        stock = getattr(product, "stock", None)
        return stock.available if stock else None


class StockAdjustForm(forms.ModelForm):
    delta = forms.IntegerField(
        help_text="Units received (positive) or written off (negative).", required=True
    )

    class Meta:
        model = Stock
        fields: list[str] = []

    def clean_delta(self) -> int:
        delta = self.cleaned_data["delta"]
        if delta == 0:
            raise ValidationError("Must not be zero.")
        on_hand = self.instance.on_hand
        if on_hand + delta < 0:
            raise ValidationError(
                f"On hand would be {on_hand + delta}: only {on_hand} units are on the shelf "
                "(units taken by orders are not)."
            )
        if on_hand + delta < self.instance.reserved:
            raise ValidationError(
                f"On hand would fall below the {self.instance.reserved} units reserved for orders."
            )
        return delta


@admin.register(Stock)
class StockAdmin(admin.ModelAdmin):
    """Stock changes by a delta through the service, never by overwriting the counts."""

    form = StockAdjustForm
    list_display = ["product", "on_hand", "reserved", "available", "updated_at"]
    search_fields = ["product__sku", "product__name"]
    list_select_related = ["product"]
    fields = ["product", "on_hand", "reserved", "delta"]
    readonly_fields = ["product", "on_hand", "reserved"]

    def has_add_permission(self, request) -> bool:
        return False

    def save_model(self, request, obj: Stock, form: StockAdjustForm, change: bool) -> None:
        try:
            stock_adjust(product=obj.product, delta=form.cleaned_data["delta"])
        except InvalidStockAdjustment as error:
            self.message_user(request, error.detail, level="error")

    @admin.display(description="available")
    def available(self, stock: Stock) -> int:
        return stock.available


class StockReservationLineInline(admin.TabularInline):
    model = StockReservationLine
    extra = 0
    readonly_fields = ["product", "quantity", "unit_price"]
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(StockReservation)
class StockReservationAdmin(admin.ModelAdmin):
    """Read-only: reservations change only through the saga's commands."""

    list_display = ["order_id", "state", "reason", "created_at", "updated_at"]
    list_filter = ["state", "reason"]
    search_fields = ["order_id"]
    readonly_fields = [
        "order_id",
        "state",
        "reason",
        "refused_product_ids",
        "created_at",
        "updated_at",
    ]
    inlines = [StockReservationLineInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
