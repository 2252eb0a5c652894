"""Choreography: a customer's order count follows order.approved and order.cancelled."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from accounts.models import CreditAccount, CreditReservation
from accounts.services import credit_release, credit_reserve
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


# --- the order's decision finishes users' part in its saga ----------------------------


def decision(event_type: str, order_id: uuid.UUID, customer_id: int) -> str:
    body = json.loads(envelope(event_type, str(customer_id)))
    body["subject"] = str(order_id)
    if event_type == "order.rejected":
        body["data"] = {"reason": "out_of_stock"}
    return json.dumps(body)


def holding(amount: str) -> tuple[int, uuid.UUID]:
    customer = UserFactory()
    order_id = uuid.uuid4()
    credit_reserve(customer_id=customer.pk, order_id=order_id, amount=Decimal(amount))
    return customer.pk, order_id


def test_order_approved_captures_the_held_credit_once():
    customer_id, order_id = holding("30.00")
    body = decision("order.approved", order_id, customer_id)

    assert consume_signed(EventConsumer(), body) is Outcome.HANDLED
    assert consume_signed(EventConsumer(), body) is Outcome.DUPLICATE

    assert CreditReservation.objects.get(order_id=order_id).state == "captured"
    assert CreditAccount.objects.get(pk=customer_id).reserved == Decimal("30.00")  # spent


def test_order_rejected_releases_the_held_credit():
    customer_id, order_id = holding("30.00")

    consume_signed(EventConsumer(), decision("order.rejected", order_id, customer_id))

    assert CreditReservation.objects.get(order_id=order_id).state == "released"
    assert CreditAccount.objects.get(pk=customer_id).reserved == Decimal("0.00")


def test_order_rejected_before_its_reserve_makes_the_reserve_hold_nothing():
    customer = UserFactory()
    order_id = uuid.uuid4()

    consume_signed(EventConsumer(), decision("order.rejected", order_id, customer.pk))
    late = credit_reserve(customer_id=customer.pk, order_id=order_id, amount=Decimal("30.00"))

    assert late.state == "released"
    assert CreditAccount.objects.get(pk=customer.pk).reserved == Decimal("0.00")


def test_order_approved_after_its_cancel_released_the_credit_leaves_it_released():
    customer_id, order_id = holding("30.00")
    credit_release(order_id=order_id)

    consume_signed(EventConsumer(), decision("order.approved", order_id, customer_id))

    assert CreditReservation.objects.get(order_id=order_id).state == "released"
    assert CreditAccount.objects.get(pk=customer_id).reserved == Decimal("0.00")
