from django.contrib import admin

from orders.models import IdempotencyKey, OrderEvent, OrderSummary, Saga


class ReadOnlyAdmin(admin.ModelAdmin):
    """Events are history and summaries are derived: nothing here is edited by hand."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(OrderSummary)
class OrderSummaryAdmin(ReadOnlyAdmin):
    list_display = ["order_id", "customer_id", "status", "total", "currency", "created_at"]
    list_filter = ["status", "rejection_reason"]
    search_fields = ["order_id", "customer_id"]


@admin.register(OrderEvent)
class OrderEventAdmin(ReadOnlyAdmin):
    list_display = ["order_id", "version", "type", "occurred_at", "published_at"]
    list_filter = ["type", ("published_at", admin.EmptyFieldListFilter)]
    search_fields = ["order_id", "event_id"]


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = ["customer_id", "key", "order_id", "created_at"]
    search_fields = ["customer_id", "key", "order_id"]


@admin.register(Saga)
class SagaAdmin(ReadOnlyAdmin):
    list_display = [
        "order_id",
        "kind",
        "state",
        "outcome",
        "attempts",
        "needs_attention",
        "updated_at",
    ]
    list_filter = ["kind", "state", "needs_attention"]
    search_fields = ["order_id"]
