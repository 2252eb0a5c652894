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
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from common.commands import BrokerUnreachable, broker_reachable, command_send
from common.tracing import trace_context_extract, traceparent_current, tracer
from orders.domain import Order
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
        traceparent=traceparent_current(),
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
        defaults={"state": State.CANCELLING, "traceparent": traceparent_current()},
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


@transaction.atomic
def saga_reply(
    *, order_id: str, step: str, ok: bool, reason: str = "", data: dict | None = None
) -> None:
    """A participant answered. Replies no step waits for (duplicates, late ones) change nothing."""
    data = data or {}
    saga = _locked(UUID(order_id))
    if saga is None or step not in saga.pending:
        logger.info("Saga reply %s for order %s ignored: nothing waits for it", step, order_id)
        return
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
        context=trace_context_extract({"traceparent": saga.traceparent}),
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
