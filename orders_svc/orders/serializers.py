"""Shapes of the orders API (see API.md)."""

from __future__ import annotations

from rest_framework import serializers

from orders.domain import Order
from orders.models import OrderSummary, Saga


class LineInSerializer(serializers.Serializer):
    product_id = serializers.IntegerField(min_value=1)
    quantity = serializers.IntegerField(min_value=1, max_value=1000)


class PlaceOrderSerializer(serializers.Serializer):
    lines = LineInSerializer(many=True, allow_empty=False, min_length=1, max_length=50)

    def validate_lines(self, lines: list[dict]) -> list[dict]:
        ids = [line["product_id"] for line in lines]
        if len(ids) != len(set(ids)):
            raise serializers.ValidationError("Each product may appear on one line only.")
        return lines


class LineOutSerializer(serializers.Serializer):
    product_id = serializers.IntegerField()
    quantity = serializers.IntegerField()
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)


class HistorySerializer(serializers.Serializer):
    type = serializers.CharField()
    at = serializers.DateTimeField()


class OrderSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    customer_id = serializers.CharField()
    status = serializers.CharField()
    lines = LineOutSerializer(many=True)
    total = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
    currency = serializers.CharField()
    rejection_reason = serializers.CharField(allow_blank=True)
    cancel_requested = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    history = serializers.SerializerMethodField()

    def get_history(self, order: Order) -> list[dict]:
        return HistorySerializer(
            [{"type": kind, "at": at} for kind, at in order.history], many=True
        ).data


class OrderSummarySerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="order_id")
    # Not in the read model: the list view reads them from the page's events (one query).
    lines = LineOutSerializer(many=True, read_only=True)

    class Meta:
        model = OrderSummary
        fields = [
            "id",
            "customer_id",
            "status",
            "total",
            "currency",
            "line_count",
            "item_count",
            "rejection_reason",
            "created_at",
            "updated_at",
            "lines",
        ]


class SagaSerializer(serializers.ModelSerializer):
    """A saga as the status page lists it (orders.v1 ``Saga``, grpc_api.py)."""

    waiting = serializers.SerializerMethodField()

    class Meta:
        model = Saga
        fields = [
            "order_id",
            "kind",
            "state",
            "waiting",
            "attempts",
            "outcome",
            "needs_attention",
            "last_error",
            "started_at",
            "updated_at",
            "deadline",
        ]

    def get_waiting(self, saga: Saga) -> list[str]:
        return sorted(saga.pending)
