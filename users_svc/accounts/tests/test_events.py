"""Choreography: a rejected order's credit comes back, a rejected or cancelled order
comes off the customer's count, once per event."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from accounts.models import CreditAccount, CreditReservation, User
from accounts.services import credit_release, credit_reserve
from accounts.tests.factories import UserFactory
from common.events.broker import events_exchange
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


def decision(event_type: str, order_id: uuid.UUID, customer_id: int) -> str:
    body = json.loads(envelope(event_type, str(customer_id)))
    body["subject"] = str(order_id)
    if event_type == "order.rejected":
        body["data"] = {"reason": "out_of_stock"}
    return json.dumps(body)


def spent(amount: str) -> tuple[User, uuid.UUID]:
    """A customer and an order on which users spent ``amount`` of their credit."""
    customer = UserFactory()
    order_id = uuid.uuid4()
    credit_reserve(customer_id=customer.pk, order_id=order_id, amount=Decimal(amount))
    return customer, order_id


def credit_and_count(customer: User) -> tuple[Decimal, int]:
    customer.refresh_from_db()
    return CreditAccount.objects.get(pk=customer.pk).reserved, customer.order_count


def test_an_approved_order_needs_nothing_more_from_users():
    """Its credit was spent, and the order counted, when users reserved it; users no
    longer binds order.approved, and one arriving on a binding left from before is
    acknowledged without effect (not dead-lettered)."""
    customer, order_id = spent("30.00")

    body = decision("order.approved", order_id, customer.pk)
    through_binding = {"exchange": events_exchange().name, "routing_key": "order.approved"}
    assert consume_signed(EventConsumer(), body, **through_binding) is Outcome.IGNORED

    assert CreditReservation.objects.get(order_id=order_id).state == "captured"
    assert credit_and_count(customer) == (Decimal("30.00"), 1)


def test_a_cancelled_order_comes_off_the_count_once():
    customer, order_id = spent("30.00")
    credit_release(order_id=order_id)  # the cancel saga's step, before its event
    body = decision("order.cancelled", order_id, customer.pk)

    assert consume_signed(EventConsumer(), body) is Outcome.HANDLED
    assert consume_signed(EventConsumer(), body) is Outcome.DUPLICATE

    assert credit_and_count(customer) == (Decimal("0.00"), 0)


def test_a_cancellation_never_takes_the_count_below_zero():
    customer = UserFactory()

    consume_signed(EventConsumer(), envelope("order.cancelled", str(customer.pk)))

    customer.refresh_from_db()
    assert customer.order_count == 0


def test_an_account_deleted_since_is_logged_not_failed(caplog):
    assert consume_signed(EventConsumer(), envelope("order.cancelled", "999999")) is (
        Outcome.HANDLED
    )
    assert "no such account" in caplog.text


# --- a rejection undoes users' part in the saga -----------------------------------------


def test_order_rejected_gives_the_credit_back_and_uncounts_the_order_once():
    customer, order_id = spent("30.00")
    body = decision("order.rejected", order_id, customer.pk)

    assert consume_signed(EventConsumer(), body) is Outcome.HANDLED
    assert consume_signed(EventConsumer(), body) is Outcome.DUPLICATE

    assert CreditReservation.objects.get(order_id=order_id).state == "released"
    assert credit_and_count(customer) == (Decimal("0.00"), 0)


def test_order_rejected_before_its_reserve_makes_the_reserve_spend_nothing():
    customer = UserFactory()
    order_id = uuid.uuid4()

    consume_signed(EventConsumer(), decision("order.rejected", order_id, customer.pk))
    late = credit_reserve(customer_id=customer.pk, order_id=order_id, amount=Decimal("30.00"))

    assert late.state == "released"
    assert credit_and_count(customer) == (Decimal("0.00"), 0)
