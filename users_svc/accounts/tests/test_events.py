"""Choreography: a customer's order count follows order.approved and order.cancelled."""

from __future__ import annotations

import json
import uuid

import pytest

from accounts.tests.factories import UserFactory
from common.events.consumer import EventConsumer, Outcome
from common.testing.signing import consume_signed

pytestmark = pytest.mark.django_db


def envelope(event_type: str, customer_id: str) -> str:
    return json.dumps(
        {
            "id": str(uuid.uuid4()),
            "type": event_type,
            "source": "orders",
            "time": "2026-11-22T10:00:00.000000+00:00",
            "subject": str(uuid.uuid4()),
            "trace": {},
            "data": {
                "customer_id": customer_id,
                "total": "1.00",
                "currency": "EUR",
                "lines": [{"product_id": 1, "quantity": 1, "unit_price": "1.00"}],
            },
        }
    )


def test_approved_orders_count_once_each_and_cancelled_ones_come_off():
    customer = UserFactory()
    consumer = EventConsumer()
    first = envelope("order.approved", str(customer.pk))

    assert consume_signed(consumer, first) is Outcome.HANDLED
    assert consume_signed(consumer, first) is Outcome.DUPLICATE
    consume_signed(consumer, envelope("order.approved", str(customer.pk)))
    customer.refresh_from_db()
    assert customer.order_count == 2

    consume_signed(consumer, envelope("order.cancelled", str(customer.pk)))
    customer.refresh_from_db()
    assert customer.order_count == 1


def test_a_cancellation_never_takes_the_count_below_zero():
    customer = UserFactory()

    consume_signed(EventConsumer(), envelope("order.cancelled", str(customer.pk)))

    customer.refresh_from_db()
    assert customer.order_count == 0


def test_an_account_deleted_since_is_logged_not_failed(caplog):
    assert consume_signed(EventConsumer(), envelope("order.approved", "999999")) is Outcome.HANDLED
    assert "no such account" in caplog.text
