"""The users service's part in the order saga: credit commands in, a reply out.

A reserve spends the credit at once; a rejected order's comes back when
``order.rejected`` reaches users (``accounts.handlers``), an approved order's needs
nothing more.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from uuid import UUID

from celery import shared_task
from opentelemetry import trace

from accounts.errors import InvalidCreditRequest
from accounts.models import CreditReservation
from accounts.services import credit_release, credit_reserve
from common.commands import command_send
from common.signing import MessageRefused, SignatureInvalid, attestation_verify

REPLY = "orders.saga_reply"
# What orders' grant says: catalog may ask for this order's customer's credit.
CREDIT_GRANT = "users.credit_reserve"


def _reply(order_id: str, step: str, ok: bool, reason: str = "", data: dict | None = None) -> None:
    # The task's span, named by the order: what the order's trace is found by.
    trace.get_current_span().set_attribute("order.id", order_id)
    command_send(
        service="orders",
        task=REPLY,
        order_id=order_id,
        step=step,
        ok=ok,
        reason=reason,
        data=data or {},
    )


@shared_task(name="users.credit_reserve", acks_late=True, bind=True)
def credit_reserve_task(
    self,
    order_id: str,
    customer_id: str,
    amount: str,
    grant: dict | None = None,
    stock: dict | None = None,
) -> None:
    # Passed on by catalog (the saga's routing slip): acted on only with orders' grant
    # for this order's customer; the stock part goes back to orders with the answer.
    if getattr(self.request, "signed_by", "orders") != "orders" or stock is not None:
        _grant_check(order_id, customer_id, grant)
    extra = {} if stock is None else {"stock": stock}
    try:
        reservation = credit_reserve(
            customer_id=int(customer_id), order_id=UUID(order_id), amount=Decimal(amount)
        )
    except (InvalidCreditRequest, InvalidOperation, ValueError):
        _reply(order_id, "credit_reserve", False, "invalid_request", extra)
        return
    if reservation.state not in (CreditReservation.State.CAPTURED, CreditReservation.State.HELD):
        _reply(order_id, "credit_reserve", False, reservation.reason or reservation.state, extra)
        return
    # What is held, for whom: the orchestrator checks it against what it asked.
    _reply(
        order_id,
        "credit_reserve",
        True,
        data={
            "customer_id": str(reservation.customer_id),
            "amount": str(reservation.amount),
            **extra,
        },
    )


def _grant_check(order_id: str, customer_id: str, grant: object) -> None:
    try:
        attestation_verify(
            claim=CREDIT_GRANT,
            fields={"order_id": order_id, "customer_id": customer_id},
            attestation=grant,
            signer="orders",
        )
    except SignatureInvalid as refused:
        reason = f"credit asked on orders' behalf without its grant: {refused}"
        raise MessageRefused(reason) from None


@shared_task(name="users.credit_release", acks_late=True)
def credit_release_task(order_id: str) -> None:
    credit_release(order_id=UUID(order_id))
    _reply(order_id, "credit_release", True)
