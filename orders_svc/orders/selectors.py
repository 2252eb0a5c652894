"""Reads of orders: the aggregate from its events, summaries from the read model."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from django.db.models import QuerySet

from orders.domain import Order
from orders.errors import OrderNotFound
from orders.models import OrderEvent, OrderSummary, Saga


def order_events(*, order_id: UUID) -> list[Any]:
    """The order's events in version order: rows of ``type, data, version, occurred_at``.

    Plain rows rather than model instances: every saga step rebuilds its order
    from these, and the outbox columns are none of its business.
    """
    return list(
        OrderEvent.objects.filter(order_id=order_id)
        .order_by("version")
        .values_list("type", "data", "version", "occurred_at", named=True)
    )


def order_get(*, order_id: UUID | str) -> Order:
    """The order as its events make it; ``OrderNotFound`` if it has none."""
    try:
        key = order_id if isinstance(order_id, UUID) else UUID(str(order_id))
    except ValueError:
        raise OrderNotFound(f"There is no order {order_id}.") from None
    events = order_events(order_id=key)
    if not events:
        raise OrderNotFound(f"There is no order {order_id}.")
    return Order.from_events(key, events)


def orders_get_many(*, order_ids: Sequence[UUID]) -> dict[UUID, Order]:
    """Several orders as their events make them, read with one query (unknown ids: absent).

    For the list's lines: a page of orders with their lines costs one query.
    """
    events: dict[UUID, list[Any]] = defaultdict(list)
    rows = (
        OrderEvent.objects.filter(order_id__in=order_ids)
        .order_by("order_id", "version")
        .values_list("order_id", "type", "data", "version", "occurred_at", named=True)
    )
    for row in rows:
        events[row.order_id].append(row)
    return {order_id: Order.from_events(order_id, found) for order_id, found in events.items()}


def order_summaries(*, customer_id: str | None) -> QuerySet[OrderSummary]:
    """Summaries for one customer, or everyone's (``None``: staff)."""
    summaries = OrderSummary.objects.all()
    return summaries if customer_id is None else summaries.filter(customer_id=customer_id)


def saga_list_unfinished(*, limit: int = 50) -> list[Saga]:
    """Sagas not done, those flagged for an operator first, then the oldest.

    What ``manage.py saga_status`` prints, for callers across the network
    (the gateway's status page) that cannot read this database.
    """
    return list(
        Saga.objects.exclude(state=Saga.State.DONE).order_by("-needs_attention", "started_at")[
            :limit
        ]
    )
