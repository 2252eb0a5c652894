"""A transaction's events published by the process that recorded them, once it commits.

With ``OUTBOX_PUBLISH_ON_COMMIT`` (the default), the process that writes outbox rows
publishes them itself right after its transaction commits, the relay's way (signed,
traced, publisher confirms: ``OutboxRelay.rows_publish``), and marks them published.
The relay then only sweeps: it takes rows older than ``OUTBOX_SWEEP_AFTER_SECONDS``,
which are the ones this could not publish (the broker down, the process killed between
its commit and the publish), and nothing wakes it at each commit.

Why (issue #16, bench/README.md): woken twice an order, the relay spent 3.1 ms of CPU
an order on 4 events, 0.77 ms an event where a warm loop publishes one in 0.27 ms;
29 % of it went to claiming and reading back rows the writer had in memory a moment
before. Side by side with the relay alone: 22.80 → 21.05 ms of CPU an order for the
whole shop, event delivery p50 4.5 → 3.1 ms.

What stays as it was: at least once (a row is marked only after its publish was
confirmed; a process that dies before marking leaves it to the sweep, which publishes
it again: consumers are idempotent), nothing for a rolled-back transaction (on-commit
hooks run only after a commit), signatures and traces. What changes: an event this
could not publish goes out with the sweep, after events recorded later; consumers
order an order's events by their version, not by arrival. A request or task never
fails for it (the hook is robust: errors are logged), and after a failed publish the
process leaves publishing to the relay for ``PAUSE_AFTER_FAILURE_SECONDS`` rather than
have every request wait on an unreachable broker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from common.sql import prepared

if TYPE_CHECKING:
    from common.events.models import OutboxRecord
    from common.events.relay import OutboxRelay

logger = logging.getLogger(__name__)

PAUSE_AFTER_FAILURE_SECONDS = 5.0
# A request waits for its events' confirms: a broker that blocks publishers (a memory
# or disk alarm) costs it this at most, once per pause; the relay waits longer.
PUBLISH_TIMEOUT_SECONDS = 2.0

# One broker connection per process, for every thread: a publish takes a fraction of a
# millisecond, and kombu's connections are not to be shared between threads at once.
_lock = threading.Lock()
_relays: dict[tuple[type, str, str], OutboxRelay] = {}
_paused_until = 0.0


def outbox_publish_on_commit(
    rows: Sequence[OutboxRecord], *, using: str = DEFAULT_DB_ALIAS
) -> bool:
    """Publish these outbox rows once the current transaction commits; True if arranged.

    Nothing is arranged (False) with ``OUTBOX_PUBLISH_ON_COMMIT`` off or outside a
    transaction, where there is no commit to wait for: the relay publishes them.
    """
    if not rows or not settings.OUTBOX_PUBLISH_ON_COMMIT:
        return False
    if not transaction.get_connection(using).in_atomic_block:
        return False
    transaction.on_commit(partial(_publish_committed, list(rows), using), using=using, robust=True)
    return True


def _publish_committed(rows: list[OutboxRecord], using: str) -> None:
    global _paused_until
    if time.monotonic() < _paused_until:
        return  # the broker failed a moment ago: the relay's sweep has these
    with _lock:
        relay = _relay(type(rows[0]), using)
        published, failure = relay.rows_publish(rows)
        if failure is not None:
            _paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_SECONDS
            logger.warning(
                "publishing on commit failed (%r); the outbox relay sends the rest, and "
                "whatever this process records in the next %.0f s",
                failure,
                PAUSE_AFTER_FAILURE_SECONDS,
            )
    if published:
        rows_mark_published(published, using=using)


def _relay(model: type[OutboxRecord], using: str) -> OutboxRelay:
    from common.events.relay import OutboxRelay  # kombu: only where events are published

    key = (model, using, settings.CELERY_BROKER_URL)
    if key not in _relays:
        _relays[key] = OutboxRelay(
            model=model, using=using, publish_timeout=PUBLISH_TIMEOUT_SECONDS
        )
    return _relays[key]


def publish_on_commit_reset() -> None:
    """Close this process's connections for publishing on commit and forget a failure
    (tests, which change brokers and settings between them)."""
    global _paused_until
    with _lock:
        for relay in _relays.values():
            relay.close()
        _relays.clear()
        _paused_until = 0.0


def rows_mark_published(rows: Sequence[OutboxRecord], *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Mark published outbox rows in one statement (those not marked already)."""
    model = type(rows[0])
    connection = connections[using]
    meta = model._meta
    key = meta.pk if model.outbox_key == "pk" else meta.get_field(model.outbox_key)
    published_at = meta.get_field("published_at")
    quote = connection.ops.quote_name
    # Names from the model's own meta, quoted; values are parameters.
    statement = (
        f"UPDATE {quote(meta.db_table)} SET {quote(published_at.column)} = %s "  # noqa: S608
        f"WHERE {quote(key.column)} IN ({', '.join(['%s'] * len(rows))}) "
        f"AND {quote(published_at.column)} IS NULL"
    )
    params: list[Any] = [published_at.get_db_prep_save(timezone.now(), connection)]
    params += [key.get_db_prep_save(getattr(row, key.attname), connection) for row in rows]
    with connection.cursor() as cursor:
        cursor.execute(prepared(cursor, statement), params)
