"""Orders, event-sourced: the events are the truth; summaries are a projection of them.

``OrderEvent`` rows are appended, never changed (but for the relay's publishing
marks); ``(order_id, version)`` is unique, which is the optimistic concurrency
check: two writers that read version n both try to append n + 1, and one of
them fails.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from common.events import Event, event_dataschema
from common.events.models import OutboxRecord


class OrderEventType(models.TextChoices):
    PLACED = "order.placed"
    STOCK_RESERVED = "order.stock_reserved"
    STOCK_REFUSED = "order.stock_refused"
    CREDIT_RESERVED = "order.credit_reserved"
    CREDIT_REFUSED = "order.credit_refused"
    APPROVED = "order.approved"
    REJECTED = "order.rejected"
    CANCEL_REQUESTED = "order.cancel_requested"
    CANCELLED = "order.cancelled"


class OrderStatus(models.TextChoices):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


class OrderEvent(OutboxRecord):
    """One fact of an order's life; also the outbox (``OUTBOX_MODEL``) the relay publishes.

    Appending the event is the whole write: no second table to keep in step,
    so an event is published exactly when it is committed. The relay sends
    rows in ``id`` order, which keeps each order's events in version order
    (an order's appends are serialised by its version check).
    """

    outbox_ordering = ("id",)
    outbox_time_field = "occurred_at"
    outbox_key = "event_id"  # the id is the database's, not known until the insert

    # No index of its own: the unique (order_id, version) index serves every lookup by
    # order, and one index fewer is one insertion fewer per event and per relay mark.
    order_id = models.UUIDField()
    version = models.PositiveIntegerField()
    type = models.CharField(max_length=40, choices=OrderEventType.choices)
    data = models.JSONField(default=dict)
    occurred_at = models.DateTimeField(auto_now_add=True, db_index=True)
    event_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    # The W3C trace context (traceparent, tracestate) of the work that recorded it.
    trace_context = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["order_id", "version"]
        constraints = [
            models.UniqueConstraint(
                fields=["order_id", "version"], name="order_event_version_unique"
            ),
        ]
        indexes = [
            models.Index(
                fields=["id"],
                condition=Q(published_at__isnull=True),
                name="order_event_unpublished",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} v{self.version} {self.type}"

    def outbox_envelope(self) -> dict[str, Any]:
        return Event(
            id=str(self.event_id),
            type=self.type,
            source=settings.SERVICE_NAME,
            time=self.occurred_at.isoformat(timespec="microseconds"),
            subject=str(self.order_id),
            data=self.data,
            trace=dict(self.trace_context),
            # The version orders produces now: its data was checked against it when
            # appended, unless a new version was deployed meanwhile (contracts/README.md).
            dataschema=event_dataschema(self.type),
        ).to_dict()


class OrderSummary(models.Model):
    """The read model behind GET /api/orders/: one row per order, rebuilt from the events."""

    order_id = models.UUIDField(primary_key=True)
    customer_id = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=10, choices=OrderStatus.choices, db_index=True)
    total = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3)
    line_count = models.PositiveIntegerField()
    item_count = models.PositiveIntegerField()
    rejection_reason = models.CharField(max_length=40, blank=True)
    version = models.PositiveIntegerField(help_text="The last event applied.")
    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "order_id"]
        verbose_name_plural = "order summaries"

    def __str__(self) -> str:
        return f"{self.order_id} ({self.status})"


class IdempotencyKey(models.Model):
    """A client's ``Idempotency-Key`` and the order it created."""

    customer_id = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64)
    order_id = models.UUIDField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer_id", "key"], name="idempotency_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}:{self.key} -> {self.order_id}"


class Saga(models.Model):
    """Where an order's saga stands: what it waits for, until when, and how often it asked.

    The orchestrator reads and writes this row under a lock for every reply and
    every deadline, so a saga survives restarts and duplicate replies.
    """

    class Kind(models.TextChoices):
        PLACE = "place"
        CANCEL = "cancel"

    class State(models.TextChoices):
        RESERVING_STOCK = "reserving_stock"
        RESERVING_CREDIT = "reserving_credit"
        CANCELLING = "cancelling"
        DONE = "done"
        # Only sagas begun before participants finished on the order's events are in
        # these; the saga finishes them by the decision's event (``orders.saga``).
        APPROVING = "approving"
        COMPENSATING = "compensating"

    order_id = models.UUIDField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    state = models.CharField(max_length=20, choices=State.choices, db_index=True)
    # Steps whose reply is awaited, each with the command that asks for it (to resend).
    pending = models.JSONField(default=dict)
    # The order as of its last event (``Order.snapshot()``): what the next step appends
    # after, so a reply does not rebuild the order from all its events.
    snapshot = models.JSONField(default=dict, blank=True)
    outcome = models.CharField(max_length=40, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    deadline = models.DateTimeField(null=True, blank=True, db_index=True)
    needs_attention = models.BooleanField(default=False, db_index=True)
    last_error = models.TextField(blank=True)
    # The trace context (W3C: traceparent, tracestate) of the request that started the
    # saga: the watchdog's resends and timeouts continue it, so one trace follows the
    # order through its retries.
    trace_context = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["order_id", "kind"], name="one_saga_per_order_and_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.order_id}: {self.state}"

    def waiting(self) -> list[str]:
        """The steps whose answers the saga waits for: each command it sent, and the credit
        step its stock command carries on to users (the routing slip), who answers it."""
        steps = set(self.pending)
        asked = self.pending.get("stock_reserve")
        if isinstance(asked, dict) and "then" in asked:
            steps.add("credit_reserve")
        return sorted(steps)
