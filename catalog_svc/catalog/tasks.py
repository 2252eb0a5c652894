"""The catalog's part in the order saga: commands in, one local transaction, a reply out
(or, on the routing slip, the saga's next command, to users).

A reserve takes the units off the shelf at once; a rejected order's come back when
``order.rejected`` reaches catalog (``catalog.handlers``), an approved order's need
nothing more.
"""

from __future__ import annotations

from uuid import UUID

from celery import shared_task
from opentelemetry import trace

from catalog.errors import InvalidReservation
from catalog.models import StockReservation
from catalog.services import LineRequest, stock_release, stock_reserve
from common.commands import command_send
from common.signing import attest

REPLY = "orders.saga_reply"
# The step catalog passes on (the routing slip), and what its attestation of a reserve's
# priced lines says (orders checks it).
PASSED_ON = "users.credit_reserve"
STOCK_ATTESTATION = "catalog.stock_reserved"


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


@shared_task(name="catalog.stock_reserve", acks_late=True)
def stock_reserve_task(order_id: str, lines: list[dict], then: dict | None = None) -> None:
    try:
        reservation = stock_reserve(
            order_id=UUID(order_id),
            lines=[LineRequest(int(line["product_id"]), int(line["quantity"])) for line in lines],
        )
    except (InvalidReservation, KeyError, ValueError) as error:
        _reply(order_id, "stock_reserve", False, "invalid_request", {"detail": str(error)})
        return
    if reservation.state in (StockReservation.State.COMMITTED, StockReservation.State.HELD):
        # Lines just created come with it; a repeated command's are read back.
        held = reservation.held_lines or list(reservation.lines.all())
        priced = [
            {
                "product_id": line.product_id,
                "quantity": line.quantity,
                "unit_price": str(line.unit_price),
            }
            for line in held
        ]
        total = sum(line.unit_price * line.quantity for line in held)
        stock = {"lines": priced, "total": str(total)}
        if then:
            _credit_ask(order_id, then, stock)
        else:
            _reply(order_id, "stock_reserve", True, data=stock)
    else:
        reason = reservation.reason or reservation.state
        _reply(
            order_id,
            "stock_reserve",
            False,
            reason,
            {"product_ids": reservation.refused_product_ids},
        )


def _credit_ask(order_id: str, then: dict, stock: dict) -> None:
    """The routing slip: the saga's next step goes straight to users, with orders' grant
    for the customer and the stock part attested by catalog; users answers orders for
    both (one reply fewer for the orchestrator)."""
    trace.get_current_span().set_attribute("order.id", order_id)
    attestation = attest(claim=STOCK_ATTESTATION, fields={"order_id": order_id, **stock})
    command_send(
        service=PASSED_ON.split(".", 1)[0],
        task=PASSED_ON,
        order_id=order_id,
        customer_id=then["customer_id"],
        amount=stock["total"],
        grant=then["grant"],
        stock={**stock, "attestation": attestation},
    )


@shared_task(name="catalog.stock_release", acks_late=True)
def stock_release_task(order_id: str) -> None:
    stock_release(order_id=UUID(order_id))
    _reply(order_id, "stock_release", True)
