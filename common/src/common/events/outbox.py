"""Recording events in the service's own database, in the caller's transaction.

``event_record`` refuses to run outside ``transaction.atomic()`` rather than
opening a transaction of its own: an event written in a separate transaction
from the change it describes is exactly the dual write the outbox exists to
prevent (the change could commit without its event, or the event without the
change). Inside the caller's transaction both commit or neither does, so
nothing is ever published for a rolled-back change.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from common.events.envelope import Event, event_data_validate, event_dataschema
from common.events.models import OutboxMessage, OutboxRecord
from common.events.publish_on_commit import outbox_publish_on_commit
from common.tracing import trace_context_inject

_SUBJECT_MAX_LENGTH = OutboxMessage._meta.get_field("subject").max_length


class OutboxError(Exception):
    """``event_record`` was used where the outbox cannot keep its promise."""


def notify_channel(service: str) -> str:
    """The PostgreSQL LISTEN/NOTIFY channel that wakes this service's relay."""
    # Channel names are identifiers: keep them plain and within 63 bytes.
    return f"outbox_{re.sub(r'[^a-z0-9_]', '_', service.lower())}"[:63]


_last_created_at = datetime.min.replace(tzinfo=UTC)
_clock_lock = threading.Lock()


def _creation_time() -> datetime:
    """Now, but always later than the previous event recorded by this process.

    The relay publishes in ``created_at`` order; two events recorded in the
    same microsecond would otherwise tie and could swap places.
    """
    global _last_created_at
    with _clock_lock:
        now = timezone.now()
        if now <= _last_created_at:
            now = _last_created_at + timedelta(microseconds=1)
        _last_created_at = now
        return now


def event_record(
    *, type: str, subject: str, data: Mapping[str, Any], using: str = DEFAULT_DB_ALIAS
) -> Event:
    """Write an event to the outbox as part of the caller's transaction.

    ``data`` is validated in its wire form (Decimals, UUIDs and datetimes
    become strings first), so the producer checks exactly what consumers will
    receive. Once the transaction commits this process publishes it
    (``OUTBOX_PUBLISH_ON_COMMIT``, ``common.events.publish_on_commit``), or else,
    on PostgreSQL, a ``NOTIFY`` in the same transaction wakes the relay the
    moment the transaction commits; never for a rollback.
    """
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:
        raise OutboxError(
            f"event_record({type!r}) must run inside transaction.atomic() together with the "
            "change it describes; outside one the event could be kept while the change is lost."
        )
    if settings.OUTBOX_MODEL != "common.OutboxMessage":
        raise OutboxError(
            f"this service's relay publishes from {settings.OUTBOX_MODEL} (OUTBOX_MODEL); "
            f"an event_record({type!r}) row would never be published."
        )
    subject = str(subject)
    if not subject or len(subject) > _SUBJECT_MAX_LENGTH:
        raise ValueError(f"event subject must be 1 to {_SUBJECT_MAX_LENGTH} characters")
    wire_data = json.loads(json.dumps(dict(data), cls=DjangoJSONEncoder))
    event_data_validate(event_type=type, data=wire_data)
    created_at = _creation_time()
    event = Event(
        id=str(uuid.uuid4()),
        type=type,
        source=settings.SERVICE_NAME,
        time=created_at.isoformat(timespec="microseconds"),
        subject=subject,
        data=wire_data,
        # The span of the work that records it, as the propagator writes it: the
        # relay's PRODUCER and every consumer's CONSUMER span continue it.
        trace=trace_context_inject(),
        dataschema=event_dataschema(type),
    )
    row = OutboxMessage.objects.using(using).create(
        id=event.id,
        type=event.type,
        subject=event.subject,
        envelope=event.to_dict(),
        created_at=created_at,
    )
    if not outbox_publish_on_commit([row], using=using):
        outbox_notify(using=using)
    return event


def outbox_notify(*, using: str = DEFAULT_DB_ALIAS) -> None:
    """Wake the relay when the current transaction commits (PostgreSQL; a no-op elsewhere).

    ``event_record`` calls it; a service writing its own ``OUTBOX_MODEL`` rows
    calls it in the same transaction.
    """
    statement = outbox_notify_statement(using=using)
    if statement is not None:
        with transaction.get_connection(using).cursor() as cursor:
            cursor.execute(*statement)


def outbox_notify_statement(*, using: str = DEFAULT_DB_ALIAS) -> tuple[str, list[str]] | None:
    """``outbox_notify``'s statement and parameters, for a caller that sends it with its own
    (one round trip: ``common.sql.statements_run``); None where there is none."""
    if settings.OUTBOX_PUBLISH_ON_COMMIT:
        return None  # the relay only sweeps, and polls for that
    if transaction.get_connection(using).vendor != "postgresql":
        return None
    # Delivered to listeners at commit, dropped on rollback; PostgreSQL folds
    # repeated identical notifications of one transaction.
    return "SELECT pg_notify(%s, '')", [notify_channel(settings.SERVICE_NAME)]


def outbox_model() -> type[OutboxRecord]:
    """The model named by ``OUTBOX_MODEL``: where this service's relay publishes from."""
    model = apps.get_model(settings.OUTBOX_MODEL)
    if not issubclass(model, OutboxRecord):
        raise ImproperlyConfigured(
            f"OUTBOX_MODEL {settings.OUTBOX_MODEL} must extend common.events.models.OutboxRecord."
        )
    return model
