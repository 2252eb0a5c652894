"""The users service's saga replies say what they did, so the orchestrator can check them."""

from decimal import Decimal
from uuid import uuid4

import pytest

from accounts.tasks import credit_reserve_task
from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def replies(monkeypatch) -> list[dict]:
    """The replies the task sends to orders (the send itself is common.commands')."""
    sent: list[dict] = []
    monkeypatch.setattr("accounts.tasks.command_send", lambda **message: sent.append(message))
    return sent


def test_a_held_credit_reply_names_the_customer_and_the_amount_held(replies):
    customer, order_id = UserFactory(), str(uuid4())

    credit_reserve_task(order_id=order_id, customer_id=str(customer.pk), amount="12.50")

    (reply,) = replies
    assert (reply["task"], reply["step"], reply["ok"]) == (
        "orders.saga_reply",
        "credit_reserve",
        True,
    )
    assert reply["data"] == {"customer_id": str(customer.pk), "amount": "12.50"}


def test_a_refused_credit_reply_claims_no_amount(replies):
    customer, order_id = UserFactory(), str(uuid4())

    credit_reserve_task(order_id=order_id, customer_id=str(customer.pk), amount=str(Decimal(10**6)))

    (reply,) = replies
    assert (reply["ok"], reply["reason"], reply["data"]) == (False, "credit_limit_exceeded", {})
