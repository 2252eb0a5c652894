"""Shapes of the orders API (see API.md)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from rest_framework import serializers

from orders.domain import Order
from orders.models import OrderSummary, Saga

# Catalog's product ids are bigint: a larger one can name no product, and would only
# fail catalog's reserve (an overflow, resent until the saga timed out).
PRODUCT_ID_MAX = 2**63 - 1


class LineInSerializer(serializers.Serializer):
    product_id = serializers.IntegerField(min_value=1, max_value=PRODUCT_ID_MAX)
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

    def to_representation(self, order: Order) -> dict[str, Any]:
        """What the declared fields make of the order, written out with their own formats.

        DRF deep-copies every declared field, and the nested serializers' for each line
        and history entry, for every instance: 0.6 ms of the orders POST's 6.5 ms (issue
        #16, py-spy). The declared fields stay the documented shape; a test holds the two
        equal (``test_serializers``)."""
        return {
            "id": str(order.id),
            "customer_id": str(order.customer_id),
            "status": str(order.status),
            "lines": [
                {
                    "product_id": int(line.product_id),
                    "quantity": int(line.quantity),
                    "unit_price": _money(line.unit_price),
                }
                for line in order.lines
            ],
            "total": _money(order.total),
            "currency": str(order.currency),
            "rejection_reason": str(order.rejection_reason),
            "cancel_requested": bool(order.cancel_requested),
            "created_at": _moment(order.created_at),
            "updated_at": _moment(order.updated_at),
            "history": [{"type": str(kind), "at": _moment(at)} for kind, at in order.history],
        }


# The formats of OrderSerializer's declared fields, made once (unbound: neither reads its
# parent or context to format a value).
_MONEY = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
_MOMENT = serializers.DateTimeField()


def _money(value: Decimal | None) -> str | None:
    return None if value is None else _MONEY.to_representation(value)


def _moment(value: datetime | None) -> str | None:
    return None if value is None else _MOMENT.to_representation(value)


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
        return saga.waiting()
