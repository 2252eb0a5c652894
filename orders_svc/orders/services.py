"""Writes of orders: append events (optimistic version check), keep the read model in step."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from opentelemetry import trace

from common.events import (
    event_data_validate,
    outbox_notify_statement,
    outbox_publish_on_commit,
)
from common.sql import Statement, insert_statement, statements_run, upsert_statement
from common.tracing import trace_context_inject
from orders.domain import Order
from orders.errors import ConcurrencyConflict, IdempotencyKeyReused, OrderStateConflict
from orders.models import IdempotencyKey, OrderEvent, OrderEventType, OrderStatus, OrderSummary
from orders.selectors import order_events, order_get


@dataclass(frozen=True)
class LineRequest:
    product_id: int
    quantity: int


def order_append(*, order: Order, type: str, data: dict[str, Any]) -> Order:
    """Append one event after ``order.version``; a concurrent append makes this one fail."""
    return order_append_many(order=order, events=[(type, data)])


def order_append_many(*, order: Order, events: Sequence[tuple[str, dict[str, Any]]]) -> Order:
    """Append events (type, data) after ``order.version``, in one round trip with the
    read model's row; a concurrent append makes this one fail. Runs inside the caller's
    transaction, or one of its own."""
    with transaction.atomic(savepoint=False):  # so that they are published at its commit
        order_append_write(order_id=order.id, statements=order_append_prepare(order, events))
    return order


def order_append_prepare(
    order: Order, events: Sequence[tuple[str, dict[str, Any]]]
) -> list[Statement]:
    """Apply the events (type, data) to ``order`` after its version, and return the
    statements that record them, for ``order_append_write``.

    The events are the outbox rows too (``OUTBOX_MODEL``): their data is checked
    against the published contract (``orders.events``) first, and they are
    published at commit (``common.events.publish_on_commit``; or the relay is
    woken). The read model's row is written with them, so it never shows a state
    the events do not hold. Statements, not writes, so that a saga step's
    events, read model and saga row cost one round trip (issue #16); should their
    write fail, ``order`` holds events that were not recorded: drop it.
    """
    wire = [(type, json.loads(json.dumps(data, cls=DjangoJSONEncoder))) for type, data in events]
    for type, wire_data in wire:
        event_data_validate(event_type=type, data=wire_data)
    # What the order's trace is found by in the tracing backend.
    trace.get_current_span().set_attribute("order.id", str(order.id))
    # The span that appends them: the relay's and consumers' spans continue it.
    context = trace_context_inject()
    rows = [
        OrderEvent(
            order_id=order.id,
            version=order.version + offset,
            type=type,
            data=wire_data,
            trace_context=context,
        )
        for offset, (type, wire_data) in enumerate(wire, start=1)
    ]
    # bulk_create's statement without its compiling (common.sql); it sets occurred_at.
    events_insert = insert_statement(rows)
    for row in rows:
        order.apply(row.type, row.data, row.version, row.occurred_at)
    # Published by this process once the caller's transaction, which writes them
    # (order_append_write), commits: before the commands its saga sends then, and never
    # after a rollback. What it cannot publish, the relay's sweep does.
    outbox_publish_on_commit(rows)
    return [events_insert, summary_statement(order=order)]


def order_append_write(*, order_id: UUID, statements: Sequence[Statement]) -> None:
    """Run ``order_append_prepare``'s statements (and any that go with them) in one round
    trip (with the relay's wake-up when publishing on commit is off); a version already
    taken is a ``ConcurrencyConflict``."""
    try:
        # No savepoint: a version conflict fails the caller's whole transaction
        # anyway (nothing may be written on a stale order), and the savepoint's
        # two statements are on the saga's hot path.
        with transaction.atomic(savepoint=False):
            statements_run([*statements, outbox_notify_statement()])
    except IntegrityError:
        raise ConcurrencyConflict(f"Order {order_id} moved on meanwhile.") from None


def summary_statement(*, order: Order) -> Statement:
    """The order's read-model row from its state, inserted or replaced (an upsert: a
    replay gives the same row, and one statement does for the first event and the rest)."""
    return upsert_statement(
        OrderSummary(
            order_id=order.id,
            customer_id=order.customer_id,
            status=order.status,
            total=order.total,
            currency=order.currency,
            line_count=len(order.lines),
            item_count=order.item_count,
            rejection_reason=order.rejection_reason,
            version=order.version,
            created_at=order.created_at,
            updated_at=order.updated_at,
        )
    )


def _fingerprint(lines: Sequence[LineRequest]) -> str:
    canonical = json.dumps(
        sorted((line.product_id, line.quantity) for line in lines), separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def order_place(
    *, customer_id: str, lines: Sequence[LineRequest], idempotency_key: str = ""
) -> tuple[Order, bool]:
    """A new PENDING order; returns (order, created).

    With an ``Idempotency-Key`` the same key (same customer, same lines) gives
    the first order back, even when both requests race; the same key with
    other lines is refused.
    """
    fingerprint = _fingerprint(lines)
    if idempotency_key:
        existing = _order_for_key(customer_id, idempotency_key, fingerprint)
        if existing is not None:
            return existing, False
    try:
        with transaction.atomic():
            order = Order(id=uuid.uuid4())
            if idempotency_key:
                IdempotencyKey.objects.create(
                    customer_id=customer_id,
                    key=idempotency_key,
                    request_fingerprint=fingerprint,
                    order_id=order.id,
                )
            placed = {
                "customer_id": customer_id,
                "currency": settings.CURRENCY,
                "lines": [
                    {"product_id": line.product_id, "quantity": line.quantity} for line in lines
                ],
            }
            from orders.saga import saga_place_start  # the saga module builds on this one

            # The order's event, read model and saga in one round trip.
            appended = order_append_prepare(order, [(OrderEventType.PLACED, placed)])
            saga_place_start(order=order, order_writes=appended)
    except IntegrityError:
        existing = _order_for_key(customer_id, idempotency_key, fingerprint)
        if existing is None:
            raise
        return existing, False
    return order, True


def _order_for_key(customer_id: str, key: str, fingerprint: str) -> Order | None:
    record = IdempotencyKey.objects.filter(customer_id=customer_id, key=key).first()
    if record is None:
        return None
    if record.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key already placed an order with other lines; use a new key."
        )
    return order_get(order_id=record.order_id)


@transaction.atomic
def order_cancel_request(*, order_id: UUID | str, requested_by: str) -> Order:
    """Ask for an approved order to be cancelled (the saga returns stock and credit)."""
    order = order_get(order_id=order_id)
    if order.status == OrderStatus.APPROVED and order.cancel_requested:
        return order  # asked already
    if order.status != OrderStatus.APPROVED:
        raise OrderStateConflict(
            f"Only an approved order can be cancelled; this one is {order.status}."
        )
    order = order_append(
        order=order, type=OrderEventType.CANCEL_REQUESTED, data={"requested_by": requested_by}
    )
    from orders.saga import saga_cancel_start

    saga_cancel_start(order=order)
    return order


def read_models_rebuild(*, progress: Callable[[Iterable[Any]], Iterable[Any]] = iter) -> int:
    """Throw the summaries away and project them again from every event; returns the count."""
    with transaction.atomic():
        OrderSummary.objects.all().delete()
        order_ids = list(
            OrderEvent.objects.order_by("order_id").values_list("order_id", flat=True).distinct()
        )
        for order_id in progress(order_ids):
            order = Order.from_events(order_id, order_events(order_id=order_id))
            statements_run([summary_statement(order=order)])
    return len(order_ids)
