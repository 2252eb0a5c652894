"""The order sagas, orchestrated here: place (reserve stock → reserve credit → approve) and cancel.

Each reserving step is a command to a participant's queue (``catalog.stock_reserve``,
``users.credit_reserve``); the participant acts in one local transaction and
replies with ``orders.saga_reply``. The place saga sends its credit step along with
the stock command, as a routing slip (``then``): once catalog holds the stock it
asks users itself, with the priced lines it attests (``common.signing.attest``) and
orders' grant for this order's customer, and users answers orders for both steps:
one command and one reply fewer than asking each in turn. Orders checks catalog's
attestation and both parts against what it asked; a catalog that replies instead
(no ``then``: sagas begun before the slip) is answered the old way, by asking users.
The saga's row (``Saga``) records what it
waits for and until when, and a snapshot of the order (``Saga.snapshot``: what
the next append needs), so a reply costs no rebuild of the order from its
events; every reply and every deadline is handled under a row lock, in one
transaction with the order's events, so a duplicate reply changes nothing and
a restart loses nothing. Each (state, step, outcome) has its handler
(``REPLY_HANDLERS``).

The saga ends with the order's decision: ``order.approved`` once credit is
held, ``order.rejected`` on a refusal or a timeout. Each participant's reserve
is final (catalog's stock is taken off the shelf, users' credit spent), so
``order.approved`` asks nothing of them; ``order.rejected`` is the compensation,
consumed by each (in the transaction that records the event in its inbox):
catalog puts the stock back, users gives the credit back. No commit, capture or
release command and no reply for them: the event is already published and
consumed exactly once (outbox and inbox), so the commands would only repeat it.
A release that comes before its late reserve leaves a marker that makes the
reserve a no-op.

``saga_deadlines_check`` (run by ``manage.py saga_watchdog``) resends a
command whose reply is late (commands are idempotent), and after
``SAGA_MAX_ATTEMPTS`` gives up: it rejects the order with ``timeout``. The
cancel saga still asks for both releases and waits for their replies before
``order.cancelled``; a release that keeps failing is retried and the saga
flagged for attention (``manage.py saga_status``).

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
from collections.abc import Callable, Sequence
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from common.commands import BrokerUnreachable, broker_reachable, command_send
from common.signing import SignatureInvalid, attest, attestation_verify
from common.sql import (
    Statement,
    columns,
    insert_statement,
    prepared,
    rows_read,
    statements_run,
    update_statement,
)
from common.tracing import trace_context_extract, trace_context_inject, tracer
from orders.domain import Order
from orders.errors import ReplyInconsistent
from orders.models import OrderEventType, OrderStatus, Saga
from orders.selectors import order_get
from orders.services import order_append_prepare, order_append_write

logger = logging.getLogger(__name__)

State = Saga.State

# step -> (service, task)
STEPS = {
    "stock_reserve": ("catalog", "catalog.stock_reserve"),
    "stock_release": ("catalog", "catalog.stock_release"),
    "credit_reserve": ("users", "users.credit_reserve"),
    "credit_release": ("users", "users.credit_release"),
}


# What the routing slip's attestations are for (common.signing.attest): orders grants
# catalog the credit step of one order's customer; catalog vouches for its priced lines.
CREDIT_GRANT = "users.credit_reserve"
STOCK_ATTESTATION = "catalog.stock_reserved"

# What a step may change: saved alone, the UPDATE leaves the identity columns out.
_PROGRESS_FIELDS = [
    "state",
    "pending",
    "snapshot",
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


# Where a step's appended events wait on the saga object for ``_progress_save`` to write.
_UNWRITTEN_APPENDS = "_unwritten_appends"


def _progress_save(saga: Saga) -> None:
    """``saga.save(update_fields=_PROGRESS_FIELDS)`` in one plain UPDATE (``common.sql``:
    every reply pays for it), with the events the step appended (``_append``): one
    round trip for the order's events, its read model and the saga."""
    saga.updated_at = timezone.now()
    update = update_statement(
        Saga, pk=saga.pk, fields={name: getattr(saga, name) for name in _PROGRESS_FIELDS}
    )
    appended = saga.__dict__.pop(_UNWRITTEN_APPENDS, [])
    if appended:
        order_append_write(order_id=saga.order_id, statements=[*appended, update])
    else:
        statements_run([update])


def _finish(saga: Saga, outcome: str) -> None:
    saga.state = State.DONE
    saga.outcome = outcome
    saga.pending = {}
    saga.deadline = None
    saga.needs_attention = False


def _append(saga: Saga, order: Order, *events: tuple[str, dict[str, Any]]) -> Order:
    """Append the events to the order; written with the saga by ``_progress_save``, which
    every step ends with."""
    saga.__dict__.setdefault(_UNWRITTEN_APPENDS, []).extend(order_append_prepare(order, events))
    saga.snapshot = order.snapshot()
    return order


@transaction.atomic(savepoint=False)
def saga_place_start(*, order: Order, order_writes: Sequence[Statement] = ()) -> Saga:
    """Begin the place saga for a new order: ask catalog to reserve its stock.

    Called in the transaction that placed the order, so there is no saga yet:
    one INSERT (a second start for one order breaks the unique constraint, which
    fails that whole transaction: no savepoint, two statements fewer per order),
    in one round trip with ``order_writes``, the placed order's unwritten events
    (``order_append_prepare``).
    """
    saga = Saga(
        order_id=order.id,
        kind=Saga.Kind.PLACE,
        state=State.RESERVING_STOCK,
        snapshot=order.snapshot(),
        trace_context=trace_context_inject(),
    )
    lines = [{"product_id": line.product_id, "quantity": line.quantity} for line in order.lines]
    _ask(saga, "stock_reserve", order_id=str(order.id), lines=lines, then=_credit_slip(order))
    # The ORM's save(force_insert=True), less its compiling, with the order's events.
    order_append_write(order_id=order.id, statements=[*order_writes, insert_statement([saga])])
    return saga


def _credit_slip(order: Order) -> dict[str, Any]:
    """The routing slip's next step: once catalog holds the stock, it asks users itself to
    reserve the total for this customer. Users believes catalog on orders' word only: the
    grant, orders' attestation of this order's customer."""
    fields = {"order_id": str(order.id), "customer_id": order.customer_id}
    return {"customer_id": order.customer_id, "grant": attest(claim=CREDIT_GRANT, fields=fields)}


@transaction.atomic
def saga_cancel_start(*, order: Order) -> Saga:
    """Begin the cancel saga for an approved order: give back its stock and its credit."""
    saga, created = Saga.objects.get_or_create(
        order_id=order.id,
        kind=Saga.Kind.CANCEL,
        defaults={
            "state": State.CANCELLING,
            "snapshot": order.snapshot(),
            "trace_context": trace_context_inject(),
        },
    )
    if created:
        _ask(saga, "stock_release", order_id=str(order.id))
        _ask(saga, "credit_release", order_id=str(order.id))
        saga.save(update_fields=_PROGRESS_FIELDS)
    return saga


def _locked(order_id: UUID) -> Saga | None:
    """The order's running saga (the oldest, should there be two), locked.

    A plain SELECT (``common.sql``): the ORM's compiling of this query was a fifth
    of the orders worker's CPU under load (issue #16).
    """
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    meta = Saga._meta
    with connection.cursor() as cursor:
        # Names from the model's own meta; values are parameters.
        read = prepared(
            cursor,
            f"SELECT {columns(Saga)} FROM {meta.db_table} "  # noqa: S608
            "WHERE order_id = %s AND state <> %s ORDER BY started_at LIMIT 1" + lock,
        )
        cursor.execute(
            read, [meta.get_field("order_id").get_db_prep_value(order_id, connection), State.DONE]
        )
        sagas = rows_read(Saga, cursor)
    return sagas[0] if sagas else None


def _order_of(saga: Saga) -> Order:
    """The order as the saga last left it (only its saga appends to an order while the
    saga runs); rebuilt from its events for a saga begun before sagas kept a snapshot."""
    if saga.snapshot:
        return Order.from_snapshot(saga.order_id, saga.snapshot)
    return order_get(order_id=saga.order_id)


def _reject(saga: Saga, order: Order, reason: str, *before: tuple[str, dict[str, Any]]) -> None:
    """The order is rejected; the participants release what they hold on ``order.rejected``."""
    events = list(before)
    if order.status == OrderStatus.PENDING:
        events.append((OrderEventType.REJECTED, {"reason": reason}))
    if events:
        _append(saga, order, *events)
    _finish(saga, f"rejected:{reason}")


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


# --- what each reply does: (state, step, ok) -> handler(saga, order, reason, data) ---


def _stock_reserved(saga: Saga, order: Order, reason: str, data: dict) -> None:
    order = _append(saga, order, (OrderEventType.STOCK_RESERVED, data))
    saga.state = State.RESERVING_CREDIT
    saga.attempts = 0
    _ask(
        saga,
        "credit_reserve",
        order_id=str(order.id),
        customer_id=order.customer_id,
        amount=str(order.total),
    )


def _stock_refused(saga: Saga, order: Order, reason: str, data: dict) -> None:
    reason = reason or "out_of_stock"
    _reject(saga, order, reason, (OrderEventType.STOCK_REFUSED, {**data, "reason": reason}))


def _credit_reserved(saga: Saga, order: Order, reason: str, data: dict) -> None:
    # Held stock and held credit: the order is approved, and the participants commit
    # the stock and capture the credit when order.approved reaches them.
    reserved = (OrderEventType.CREDIT_RESERVED, {"amount": str(order.total)})
    _append(saga, order, reserved, (OrderEventType.APPROVED, order.settled_data()))
    _finish(saga, "approved")


def _credit_refused(
    saga: Saga, order: Order, reason: str, data: dict, *before: tuple[str, dict[str, Any]]
) -> None:
    reason = reason or "credit_limit_exceeded"
    _reject(saga, order, reason, *before, (OrderEventType.CREDIT_REFUSED, {"reason": reason}))


def _slip_answered(saga: Saga, order: Order, reason: str, data: dict, *, ok: bool) -> None:
    """Users answered the credit step catalog passed on (the routing slip): catalog's part,
    as catalog attested it, and users' own, each checked against what was asked."""
    asked = saga.pending.pop("stock_reserve")
    stock = data.get("stock")
    if not isinstance(stock, dict):
        raise ReplyInconsistent("credit_reserve reply on catalog's behalf: no stock part")
    priced = {"lines": stock.get("lines"), "total": stock.get("total")}
    try:
        attestation_verify(
            claim=STOCK_ATTESTATION,
            fields={"order_id": str(order.id), **priced},
            attestation=stock.get("attestation"),
            signer="catalog",
        )
    except SignatureInvalid as refused:
        raise ReplyInconsistent(f"credit_reserve reply: its stock part: {refused}") from None
    _reply_check(step="stock_reserve", asked=asked, ok=True, data=priced)
    total = str(_money(priced["total"], "total"))
    credit = {"customer_id": order.customer_id, "amount": total}
    _reply_check(step="credit_reserve", asked=credit, ok=ok, data=data)
    reserved = (OrderEventType.STOCK_RESERVED, priced)
    if not ok:
        _credit_refused(saga, order, reason, data, reserved)
        return
    # The approved order's lines and total: what order.stock_reserved makes of it.
    probe = Order.from_snapshot(order.id, order.snapshot())
    probe.apply(OrderEventType.STOCK_RESERVED, priced, order.version + 1, timezone.now())
    approved = (OrderEventType.APPROVED, probe.settled_data())
    _append(saga, order, reserved, (OrderEventType.CREDIT_RESERVED, {"amount": total}), approved)
    _finish(saga, "approved")


def _released(saga: Saga, order: Order, reason: str, data: dict) -> None:
    if not saga.pending:
        _append(saga, order, (OrderEventType.CANCELLED, order.settled_data()))
        _finish(saga, "cancelled")


def _release_failed(saga: Saga, order: Order, reason: str, data: dict, *, step: str) -> None:
    saga.last_error = f"{step} failed: {reason}"
    saga.needs_attention = True
    _ask(saga, step, order_id=str(order.id))  # releasing is idempotent: keep asking


ReplyHandler = Callable[[Saga, Order, str, dict], None]

REPLY_HANDLERS: dict[tuple[str, str, bool], ReplyHandler] = {
    (State.RESERVING_STOCK, "stock_reserve", True): _stock_reserved,
    (State.RESERVING_STOCK, "stock_reserve", False): _stock_refused,
    (State.RESERVING_CREDIT, "credit_reserve", True): _credit_reserved,
    (State.RESERVING_CREDIT, "credit_reserve", False): _credit_refused,
    # The routing slip: users answers for catalog's step too.
    (State.RESERVING_STOCK, "credit_reserve", True): partial(_slip_answered, ok=True),
    (State.RESERVING_STOCK, "credit_reserve", False): partial(_slip_answered, ok=False),
    (State.CANCELLING, "stock_release", True): _released,
    (State.CANCELLING, "credit_release", True): _released,
    (State.CANCELLING, "stock_release", False): partial(_release_failed, step="stock_release"),
    (State.CANCELLING, "credit_release", False): partial(_release_failed, step="credit_release"),
}


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
    if saga is None or not (step in saga.pending or _slip_step(saga, step)):
        logger.info("Saga reply %s for order %s ignored: nothing waits for it", step, order_id)
        return
    if saga.state in _LEGACY_STATES:
        _reply_check(step=step, asked=saga.pending[step], ok=ok, data=data)
        _legacy_finish(saga)
    elif step in saga.pending:
        _reply_check(step=step, asked=saga.pending.pop(step), ok=ok, data=data)
        REPLY_HANDLERS[(saga.state, step, ok)](saga, _order_of(saga), reason, data)
    else:  # the slip's answer: its handler checks both parts
        REPLY_HANDLERS[(saga.state, step, ok)](saga, _order_of(saga), reason, data)
    _progress_save(saga)


def _slip_step(saga: Saga, step: str) -> bool:
    """Whether the stock command the saga waits on passed ``step`` on (the routing slip)."""
    asked = saga.pending.get("stock_reserve")
    return (
        step == "credit_reserve"
        and saga.state == State.RESERVING_STOCK
        and isinstance(asked, dict)
        and "then" in asked
    )


# Sagas left by the design before this one (a commit and a capture command after the
# credit, releases before the rejection) are finished the new way: by the decision's event.
_LEGACY_STATES = {State.APPROVING, State.COMPENSATING}


def _legacy_finish(saga: Saga) -> None:
    order = order_get(order_id=saga.order_id)
    if saga.state == State.APPROVING:
        if order.status == OrderStatus.PENDING:
            _append(saga, order, (OrderEventType.APPROVED, order.settled_data()))
        _finish(saga, "approved")
    else:
        _reject(saga, order, saga.outcome or "timeout")


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
        _deadline_handle(saga)


def _deadline_handle(saga: Saga) -> None:
    saga.attempts += 1
    gave_up = saga.attempts > settings.SAGA_MAX_ATTEMPTS
    if saga.state in _LEGACY_STATES:
        _legacy_finish(saga)
    elif gave_up and saga.state in (State.RESERVING_STOCK, State.RESERVING_CREDIT):
        # The decision is final the moment the saga gives up: the customer learns it
        # now, and the participants release whatever they hold (or will hold: a late
        # reserve finds the release's marker) when order.rejected reaches them.
        _reject(saga, _order_of(saga), "timeout")
    else:
        if gave_up:  # cancelling: it must finish
            saga.needs_attention = True
            saga.last_error = f"No reply to {', '.join(saga.pending)} after {saga.attempts} tries."
        for step, command in list(saga.pending.items()):
            _ask(saga, step, **command)
    _progress_save(saga)
