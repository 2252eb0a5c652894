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

from common.events import event_data_validate, outbox_notify_statement
from common.sql import row_update, rows_insert
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
    """Append events (type, data) after ``order.version``, in one INSERT; a concurrent
    append makes this one fail.

    Runs inside the caller's transaction; the read model is projected in the
    same transaction, so it never shows a state the events do not hold. The
    events are the outbox rows too (``OUTBOX_MODEL``): their data is checked
    against the published contract (``orders.events``) first, and the relay is
    woken at commit. Several events of one saga step (``order.credit_reserved``
    then ``order.approved``) cost one INSERT and one read-model UPDATE.
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
    try:
        # No savepoint: a version conflict fails the caller's whole transaction
        # anyway (nothing may be written on a stale order), and the savepoint's
        # two statements are on the saga's hot path.
        with transaction.atomic(savepoint=False):
            # bulk_create's statement without its compiling, and the relay's wake-up
            # in the same round trip (common.sql).
            rows_insert(rows, then=outbox_notify_statement())
    except IntegrityError:
        raise ConcurrencyConflict(
            f"Order {order.id} moved past version {order.version} meanwhile."
        ) from None
    for row in rows:
        order.apply(row.type, row.data, row.version, row.occurred_at)
    summary_project(order=order)
    return order


def summary_project(*, order: Order) -> None:
    """Write the order's read-model row from its state (idempotent: a replay gives the same row).

    An INSERT for the order's first event, an UPDATE for the others (and an
    INSERT when a rebuild finds nothing to update): one statement on the
    saga's hot path instead of the four of ``update_or_create`` (savepoint,
    locking read, write, release). Appends to one order are serialised by its
    version check, so the two cannot race.
    """
    fields = {
        "customer_id": order.customer_id,
        "status": order.status,
        "total": order.total,
        "currency": order.currency,
        "line_count": len(order.lines),
        "item_count": order.item_count,
        "rejection_reason": order.rejection_reason,
        "version": order.version,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }
    # Plain statements (common.sql): the ORM's compiling of this ten-field write cost
    # more than the write itself, on every step of every saga.
    if order.version == 1 or not row_update(OrderSummary, pk=order.id, fields=fields):
        rows_insert([OrderSummary(order_id=order.id, **fields)])


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
            order_append(
                order=order,
                type=OrderEventType.PLACED,
                data={
                    "customer_id": customer_id,
                    "currency": settings.CURRENCY,
                    "lines": [
                        {"product_id": line.product_id, "quantity": line.quantity} for line in lines
                    ],
                },
            )
            from orders.saga import saga_place_start  # the saga module builds on this one

            saga_place_start(order=order)
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
            summary_project(order=Order.from_events(order_id, order_events(order_id=order_id)))
    return len(order_ids)
