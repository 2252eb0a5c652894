"""The order sagas, orchestrated here: place (reserve stock → reserve credit → approve) and cancel.

Each step is a command to a participant's queue (``catalog.stock_reserve``,
``users.credit_reserve``...); the participant acts in one local transaction
and replies with ``orders.saga_reply``. The saga's row (``Saga``) records what
it waits for and until when; every reply and every deadline is handled under
a row lock, in one transaction with the order's events, so a duplicate reply
changes nothing and a restart loses nothing. ``saga_deadlines_check`` (run by
``manage.py saga_watchdog``) resends a command whose reply is late (commands
are idempotent), and after ``SAGA_MAX_ATTEMPTS`` gives up: it rejects the
order with ``timeout`` and compensates. A compensation that keeps failing is
retried and the saga is flagged for attention (``manage.py saga_status``).

A reply is believed only as far as it matches the question. Its signature says
which participant sent it (``common.signing``: only catalog or users may send
``orders.saga_reply``); here the step must be that participant's, and what the
reply claims must be what the saga asked (``saga.pending[step]``): the same
lines, product ids and quantities, a total that adds up, the same customer and
amount. An inconsistent reply raises ``ReplyInconsistent``: its transaction
rolls back (saga and order untouched) and the worker dead-letters it with the
reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from common.commands import BrokerUnreachable, broker_reachable, command_send
from common.tracing import trace_context_extract, trace_context_inject, tracer
from orders.domain import Order
from orders.errors import ReplyInconsistent
from orders.models import OrderEventType, OrderStatus, Saga
from orders.selectors import order_get
from orders.services import order_append

logger = logging.getLogger(__name__)

State = Saga.State

# step -> (service, task)
STEPS = {
    "stock_reserve": ("catalog", "catalog.stock_reserve"),
    "stock_commit": ("catalog", "catalog.stock_commit"),
    "stock_release": ("catalog", "catalog.stock_release"),
    "credit_reserve": ("users", "users.credit_reserve"),
    "credit_capture": ("users", "users.credit_capture"),
    "credit_release": ("users", "users.credit_release"),
}


# What a step may change: saved alone, the UPDATE leaves the identity columns out.
_PROGRESS_FIELDS = [
    "state",
    "pending",
    "outcome",
    "attempts",
    "deadline",
    "needs_attention",
    "last_error",
    "updated_at",
]


def _deadline() -> Any:
    return timezone.now() + timedelta(seconds=settings.SAGA_STEP_TIMEOUT_SECONDS)


def _ask(saga: Saga, step: str, **kwargs: Any) -> None:
    """Send a step's command (after commit) and remember it until its reply arrives."""
    saga.pending[step] = kwargs
    saga.deadline = _deadline()
    service, task = STEPS[step]
    command_send(service=service, task=task, **kwargs)


def _finish(saga: Saga, outcome: str) -> None:
    saga.state = State.DONE
    saga.outcome = outcome
    saga.pending = {}
    saga.deadline = None
    saga.needs_attention = False


@transaction.atomic
def saga_place_start(*, order: Order) -> Saga:
    """Begin the place saga for a new order: ask catalog to reserve its stock.

    Called in the transaction that placed the order, so there is no saga yet:
    one INSERT (a second start for one order breaks the unique constraint).
    """
    saga = Saga(
        order_id=order.id,
        kind=Saga.Kind.PLACE,
        state=State.RESERVING_STOCK,
        trace_context=trace_context_inject(),
    )
    lines = [{"product_id": line.product_id, "quantity": line.quantity} for line in order.lines]
    _ask(saga, "stock_reserve", order_id=str(order.id), lines=lines)
    saga.save(force_insert=True)
    return saga


@transaction.atomic
def saga_cancel_start(*, order: Order) -> Saga:
    """Begin the cancel saga for an approved order: give back its stock and its credit."""
    saga, created = Saga.objects.get_or_create(
        order_id=order.id,
        kind=Saga.Kind.CANCEL,
        defaults={"state": State.CANCELLING, "trace_context": trace_context_inject()},
    )
    if created:
        _ask(saga, "stock_release", order_id=str(order.id))
        _ask(saga, "credit_release", order_id=str(order.id))
        saga.save(update_fields=_PROGRESS_FIELDS)
    return saga


def _locked(order_id: UUID, state_filter: set[str] | None = None) -> Saga | None:
    sagas = Saga.objects.select_for_update().filter(order_id=order_id).exclude(state=State.DONE)
    if state_filter:
        sagas = sagas.filter(state__in=state_filter)
    return sagas.order_by("started_at").first()


def _reject(saga: Saga, order: Order, reason: str) -> None:
    if order.status == OrderStatus.PENDING:
        order_append(order=order, type=OrderEventType.REJECTED, data={"reason": reason})
    _finish(saga, f"rejected:{reason}")


def _compensate(saga: Saga, order: Order, reason: str, steps: list[str]) -> None:
    """Undo what may have been done, then reject (when every release has been confirmed)."""
    saga.state = State.COMPENSATING
    saga.outcome = reason
    saga.pending = {}
    saga.attempts = 0
    for step in steps:
        _ask(saga, step, order_id=str(order.id))


def _money(value: Any, what: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ReplyInconsistent(f"{what} {value!r} is not an amount") from None
    if not amount.is_finite() or amount < 0:
        raise ReplyInconsistent(f"{what} {value!r} is not an amount")
    return amount


def _line_counts(lines: Any, what: str) -> Counter:
    """(product id, quantity) of each line, as a multiset; ``ReplyInconsistent`` if malformed."""
    if not isinstance(lines, list):
        raise ReplyInconsistent(f"{what}: lines missing")
    try:
        return Counter((int(line["product_id"]), int(line["quantity"])) for line in lines)
    except (TypeError, KeyError, ValueError):
        raise ReplyInconsistent(f"{what}: a line without a product id and quantity") from None


def _reply_check(*, step: str, asked: dict, ok: bool, data: dict) -> None:
    """What a reply claims against what its step asked; ``ReplyInconsistent`` says where not."""
    if step == "stock_reserve":
        wanted = _line_counts(asked.get("lines"), "the command")
        if ok:
            priced = data.get("lines")
            if _line_counts(priced, "the reply") != wanted:
                raise ReplyInconsistent(
                    "stock_reserve reply: its lines (product ids, quantities) are not those asked"
                )
            total = sum(
                (_money(line.get("unit_price"), "unit price") * int(line["quantity"]))
                for line in priced
            )
            if _money(data.get("total"), "total") != total:
                raise ReplyInconsistent(
                    f"stock_reserve reply: total {data.get('total')!r} is not its lines' {total}"
                )
        else:
            asked_ids = {product_id for product_id, _ in wanted}
            refused = data.get("product_ids") or []
            if not isinstance(refused, list) or not {str(i) for i in refused} <= {
                str(i) for i in asked_ids
            }:
                raise ReplyInconsistent(
                    f"stock_reserve reply refuses products not asked for: {refused!r}"
                )
    elif step == "credit_reserve":
        for name in ("customer_id", "amount"):
            if name not in data and not ok:
                continue  # a refusal may say less; an approval must say what it holds
            claimed = data.get(name)
            same = (
                _money(claimed, name) == _money(asked[name], name)
                if name == "amount"
                else str(claimed) == str(asked[name])
            )
            if not same:
                raise ReplyInconsistent(
                    f"credit_reserve reply: {name} {claimed!r}, but {asked[name]!r} was asked"
                )


@transaction.atomic
def saga_reply(
    *,
    order_id: str,
    step: str,
    ok: bool,
    sender: str,
    reason: str = "",
    data: dict | None = None,
) -> None:
    """A participant (``sender``, as its signature proved) answered.

    Replies no step waits for (duplicates, late ones) change nothing; one that does
    not match what its step asked raises ``ReplyInconsistent``, changing nothing.
    """
    data = data or {}
    if step not in STEPS:
        raise ReplyInconsistent(f"no saga step is called {step!r}")
    service, _ = STEPS[step]
    if sender != service:  # whether or not a saga waits for it: never another's answer
        raise ReplyInconsistent(f"a {step} reply must come from {service}, not {sender}")
    if not isinstance(data, dict):
        raise ReplyInconsistent(f"a {step} reply's data must be an object")
    saga = _locked(UUID(order_id))
    if saga is None or step not in saga.pending:
        logger.info("Saga reply %s for order %s ignored: nothing waits for it", step, order_id)
        return
    _reply_check(step=step, asked=saga.pending[step], ok=ok, data=data)
    del saga.pending[step]
    order = order_get(order_id=order_id)

    if saga.state == State.RESERVING_STOCK:
        if ok:
            order = order_append(order=order, type=OrderEventType.STOCK_RESERVED, data=data)
            saga.state = State.RESERVING_CREDIT
            saga.attempts = 0
            _ask(
                saga,
                "credit_reserve",
                order_id=order_id,
                customer_id=order.customer_id,
                amount=str(order.total),
            )
        else:
            reason = reason or "out_of_stock"
            order = order_append(
                order=order, type=OrderEventType.STOCK_REFUSED, data={**data, "reason": reason}
            )
            _reject(saga, order, reason)
    elif saga.state == State.RESERVING_CREDIT:
        if ok:
            order = order_append(
                order=order, type=OrderEventType.CREDIT_RESERVED, data={"amount": str(order.total)}
            )
            saga.state = State.APPROVING
            saga.attempts = 0
            _ask(saga, "stock_commit", order_id=order_id)
            _ask(saga, "credit_capture", order_id=order_id)
        else:
            reason = reason or "credit_limit_exceeded"
            order = order_append(
                order=order, type=OrderEventType.CREDIT_REFUSED, data={"reason": reason}
            )
            _compensate(saga, order, reason, ["stock_release"])
    elif saga.state == State.APPROVING:
        if not ok:
            saga.last_error = f"{step} failed: {reason}"
            saga.needs_attention = True
            _ask(saga, step, order_id=order_id)  # committing is idempotent: keep asking
        elif not saga.pending:
            order_append(order=order, type=OrderEventType.APPROVED, data=order.settled_data())
            _finish(saga, "approved")
    elif saga.state == State.COMPENSATING:
        if not ok:
            saga.last_error = f"{step} failed: {reason}"
            saga.needs_attention = True
            _ask(saga, step, order_id=order_id)
        elif not saga.pending:
            _reject(saga, order, saga.outcome)
    elif saga.state == State.CANCELLING:
        if not ok:
            saga.last_error = f"{step} failed: {reason}"
            saga.needs_attention = True
            _ask(saga, step, order_id=order_id)
        elif not saga.pending:
            order_append(order=order, type=OrderEventType.CANCELLED, data=order.settled_data())
            _finish(saga, "cancelled")
    saga.save(update_fields=_PROGRESS_FIELDS)


def saga_deadlines_check(*, now: Any = None) -> int:
    """Handle every saga whose reply is late; returns how many were handled.

    Raises ``BrokerUnreachable`` instead, touching nothing, when sagas are late
    but the broker is down: no command could have reached a participant nor a
    reply come back, so counting an attempt would only bring sagas closer to
    giving up (``timeout``) over an outage that is nobody's answer. Their
    deadlines stay passed, and the first check after the broker is back
    resends everything late. A broker lost between this check and the resends
    costs each of those sagas at most one attempt per outage. Participants'
    workers come back at their own pace after an outage (Celery's reconnect
    backoff grows to 30 s): ``SAGA_STEP_TIMEOUT_SECONDS`` times
    ``SAGA_MAX_ATTEMPTS`` should leave them that long.
    """
    now = now or timezone.now()
    late = list(
        Saga.objects.filter(deadline__lt=now)
        .exclude(state=State.DONE)
        .values_list("order_id", "kind")
    )
    if late and not broker_reachable():
        raise BrokerUnreachable(f"{len(late)} saga(s) late, but the broker is unreachable.")
    for order_id, kind in late:
        _deadline_passed(order_id, kind, now)
    return len(late)


@transaction.atomic
def _deadline_passed(order_id: UUID, kind: str, now: Any) -> None:
    saga = Saga.objects.select_for_update().filter(order_id=order_id, kind=kind).first()
    if saga is None or saga.state == State.DONE or saga.deadline is None or saga.deadline >= now:
        return  # a reply came in meanwhile
    # Resends and a timeout belong to the trace of the request that started the saga:
    # a span of it (commands sent at commit take their context from here).
    with tracer.start_as_current_span(
        "saga deadline",
        context=trace_context_extract(saga.trace_context),
        attributes={"order.id": str(order_id), "saga.kind": kind, "saga.state": saga.state},
    ):
        _deadline_handle(saga, order_id)


def _deadline_handle(saga: Saga, order_id: UUID) -> None:
    saga.attempts += 1
    gave_up = saga.attempts > settings.SAGA_MAX_ATTEMPTS
    order = order_get(order_id=order_id)
    if gave_up and saga.state in (State.RESERVING_STOCK, State.RESERVING_CREDIT):
        # The decision is final the moment the saga gives up: the customer learns it
        # now, not whenever a participant that is gone comes back to confirm its
        # release. The releases go on (retried, flagged if they keep failing); one
        # that lands before its late reserve leaves a marker that makes it a no-op.
        order_append(order=order, type=OrderEventType.REJECTED, data={"reason": "timeout"})
        held = ["stock_release"]
        if saga.state == State.RESERVING_CREDIT:
            held.append("credit_release")
        _compensate(saga, order, "timeout", held)
    else:
        if gave_up:  # approving, compensating or cancelling: these must finish
            saga.needs_attention = True
            saga.last_error = f"No reply to {', '.join(saga.pending)} after {saga.attempts} tries."
        for step, command in list(saga.pending.items()):
            _ask(saga, step, **command)
    saga.save(update_fields=_PROGRESS_FIELDS)
