"""OrderSerializer writes its output out by hand (for speed): it must be exactly what its
declared fields, the documented shape, would make of every kind of order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from uuid import uuid4

import pytest
from rest_framework import serializers

from orders.domain import Order
from orders.models import OrderEventType as E
from orders.serializers import OrderSerializer

START = datetime(2026, 12, 6, 20, 15, 30, 123456, tzinfo=UTC)
PLACED = {
    "customer_id": "42",
    "currency": "EUR",
    "lines": [{"product_id": 3, "quantity": 2}, {"product_id": 7, "quantity": 1}],
}
PRICED = {
    "lines": [
        {"product_id": 3, "quantity": 2, "unit_price": "12.5"},
        {"product_id": 7, "quantity": 1, "unit_price": "0.99"},
    ],
    "total": "25.99",
}
LIVES = {
    "pending": [(E.PLACED, PLACED)],
    "stock reserved": [(E.PLACED, PLACED), (E.STOCK_RESERVED, PRICED)],
    "approved": [
        (E.PLACED, PLACED),
        (E.STOCK_RESERVED, PRICED),
        (E.CREDIT_RESERVED, {"amount": "25.99"}),
        (E.APPROVED, {}),
    ],
    "rejected": [
        (E.PLACED, PLACED),
        (E.STOCK_REFUSED, {}),
        (E.REJECTED, {"reason": "out_of_stock"}),
    ],
    "cancelled": [
        (E.PLACED, PLACED),
        (E.STOCK_RESERVED, PRICED),
        (E.CREDIT_RESERVED, {"amount": "25.99"}),
        (E.APPROVED, {}),
        (E.CANCEL_REQUESTED, {}),
        (E.CANCELLED, {}),
    ],
}


def order_living(events) -> Order:
    return Order.from_events(
        uuid4(),
        [
            SimpleNamespace(
                type=kind, data=data, version=n, occurred_at=START + timedelta(seconds=n)
            )
            for n, (kind, data) in enumerate(events, start=1)
        ],
    )


@pytest.mark.parametrize("life", LIVES)
def test_the_written_out_output_is_what_the_declared_fields_make(life):
    order = order_living(LIVES[life])
    declared = serializers.Serializer.to_representation(OrderSerializer(), order)

    written = OrderSerializer(order).data

    assert written == declared
    assert list(written) == list(declared)  # the same keys in the same order


def test_an_order_from_a_snapshot_has_no_history_and_no_prices_yet():
    placed = order_living(LIVES["pending"])
    order = Order.from_snapshot(placed.id, placed.snapshot())

    assert OrderSerializer(order).data == serializers.Serializer.to_representation(
        OrderSerializer(), order
    )
    assert OrderSerializer(order).data["lines"][0]["unit_price"] is None
