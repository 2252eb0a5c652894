"""The users service's saga replies say what they did, so the orchestrator can check them."""

from decimal import Decimal
from uuid import uuid4

import pytest

from accounts.models import CreditReservation
from accounts.tasks import CREDIT_GRANT, credit_reserve_task
from accounts.tests.factories import UserFactory
from common.signing import MessageRefused
from common.testing.signing import attested

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


# --- the routing slip: catalog passes the credit step on, with orders' grant ---------


def slip(order_id: str, customer_id: str, *, signer: str = "orders") -> dict:
    grant = attested(
        claim=CREDIT_GRANT,
        fields={"order_id": order_id, "customer_id": customer_id},
        signer=signer,
    )
    stock = {
        "lines": [{"product_id": 5, "quantity": 1, "unit_price": "12.50"}],
        "total": "12.50",
        "attestation": {"signer": "catalog", "signature": "c2lnbmVk"},  # orders checks it
    }
    return {"grant": grant, "stock": stock}


@pytest.mark.parametrize("ok", [True, False])
def test_on_the_slip_the_answer_carries_catalogs_stock_part_back_to_orders(replies, ok):
    customer, order_id = UserFactory(), str(uuid4())
    passed_on = slip(order_id, str(customer.pk))
    amount = "12.50" if ok else str(Decimal(10**6))

    credit_reserve_task(order_id=order_id, customer_id=str(customer.pk), amount=amount, **passed_on)

    (reply,) = replies
    assert (reply["step"], reply["ok"]) == ("credit_reserve", ok)
    assert reply["data"]["stock"] == passed_on["stock"]  # unchanged, attestation and all
    if ok:
        assert reply["data"]["amount"] == "12.50"


@pytest.mark.parametrize(
    "forge",
    [
        lambda order_id, customer_id: slip(order_id, "999"),  # another customer's grant
        lambda order_id, customer_id: slip(str(uuid4()), customer_id),  # another order's
        lambda order_id, customer_id: slip(order_id, customer_id, signer="catalog"),
        lambda order_id, customer_id: {"stock": slip(order_id, customer_id)["stock"]},
    ],
    ids=["other customer", "other order", "catalog's own grant", "no grant"],
)
def test_on_the_slip_credit_asked_without_orders_grant_is_refused(replies, forge):
    customer, order_id = UserFactory(), str(uuid4())

    with pytest.raises(MessageRefused, match="without its grant"):
        credit_reserve_task(
            order_id=order_id,
            customer_id=str(customer.pk),
            amount="12.50",
            **forge(order_id, str(customer.pk)),
        )

    assert replies == []
    assert not CreditReservation.objects.filter(order_id=order_id).exists()
