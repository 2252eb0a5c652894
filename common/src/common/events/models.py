"""The outbox and inbox tables every service gets (app label ``common``).

They live in the service's own database, which is the point: an event is
written in the same transaction as the change it describes (outbox), and a
handled event is remembered in the same transaction as the handler's effects
(inbox). ``common.models`` imports this module so Django registers them.

A service whose own table already holds its events (an event store) makes
that table the outbox instead: its model extends ``OutboxRecord`` and the
service sets ``OUTBOX_MODEL``, and the relay publishes from it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import models
from django.db.models import Q


class OutboxRecord(models.Model):
    """What the relay needs of a table it publishes from.

    A subclass says in which order rows go out (``outbox_ordering``, oldest
    first) and how a row becomes the envelope on the wire
    (``outbox_envelope()``, whose ``id`` is the message id and ``type`` the
    routing key); the relay marks ``published_at`` and, when a publish fails,
    ``attempts`` and ``last_error``. Give subclasses a partial index on the
    ordering fields where ``published_at`` is null: that is all the relay reads.
    ``outbox_time_field`` names the column that says when a row was written
    (the outbox lag on ``/metrics`` is the age of the oldest unpublished row; the
    relay's sweep takes rows by it). ``outbox_key`` names a unique field known before
    the row is written, by which rows published on commit are marked
    (``common.events.publish_on_commit``).
    """

    outbox_ordering: ClassVar[tuple[str, ...]] = ("pk",)
    outbox_time_field: ClassVar[str] = "created_at"
    outbox_key: ClassVar[str] = "pk"

    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="failed publish attempts")
    last_error = models.TextField(blank=True, default="")

    class Meta:
        abstract = True

    def outbox_envelope(self) -> dict[str, Any]:
        raise NotImplementedError


class OutboxMessage(OutboxRecord):
    """An event recorded by this service, waiting for (or done with) the relay."""

    outbox_ordering = ("created_at", "id")

    id = models.UUIDField(primary_key=True, help_text="the event id, also the message id")
    type = models.CharField(max_length=200)
    subject = models.CharField(max_length=200)
    envelope = models.JSONField(help_text="the whole event, as published")
    created_at = models.DateTimeField()

    class Meta:
        app_label = "common"
        verbose_name = "outbox message"
        indexes = [
            # The relay only ever reads unpublished rows, oldest first; a
            # partial index stays small however many published rows are kept.
            models.Index(
                fields=["created_at", "id"],
                condition=Q(published_at__isnull=True),
                name="common_outbox_unpublished",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.subject} ({self.id})"

    def outbox_envelope(self) -> dict[str, Any]:
        return self.envelope


class InboxMessage(models.Model):
    """An event a consumer of this service has handled: a redelivery finds it and stops."""

    id = models.BigAutoField(primary_key=True)
    consumer = models.CharField(max_length=200, help_text="the queue the event came from")
    message_id = models.UUIDField(help_text="the event id")
    type = models.CharField(max_length=200)
    processed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "common"
        verbose_name = "inbox message"
        constraints = [
            models.UniqueConstraint(fields=["consumer", "message_id"], name="common_inbox_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.consumer}: {self.type} ({self.message_id})"
