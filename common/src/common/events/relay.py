"""The outbox relay: publish committed outbox rows to the broker, then mark them.

Guarantees, and how:

- At least once. A row's mark is committed only after the broker confirmed
  it (publisher confirms on RabbitMQ). On PostgreSQL the batch is marked as
  it is claimed (one ``UPDATE ... RETURNING``), in the transaction that
  commits after the publishes; rows that did not go out are unmarked before
  it commits. A crash between the publish and the commit publishes the row
  again on the next run; consumers are idempotent.
- In order of creation. Rows go out oldest first (``created_at``, which
  ``event_record`` keeps strictly increasing per process); a batch stops at
  the first row that fails, so a later row never overtakes an earlier one.
  With ``OUTBOX_PUBLISH_ON_COMMIT`` (the default) each writer publishes its own
  rows once it commits (``common.events.publish_on_commit``) and the relay only
  sweeps rows older than ``OUTBOX_SWEEP_AFTER_SECONDS``, those a writer could not
  publish: such a row goes out after rows written later.
- No double publishing at once. A batch is locked with ``FOR UPDATE SKIP
  LOCKED`` (SQLite: the write lock of its IMMEDIATE
  transactions), so a second relay of the service takes other rows. Two
  relays keep order within a batch only; run one per service for strict order
  and a second one as a standby if you like.
- Prompt. Without publishing on commit, on PostgreSQL ``event_record`` NOTIFYs
  ``outbox_<service>`` and the relay LISTENs, so a commit wakes it at once;
  ``OUTBOX_POLL_SECONDS`` is the fallback (and the only mechanism on SQLite, and
  for the sweep).
- Signed. Each body is signed with the service's key (``common.signing``, the
  ``x-signer`` and ``x-signature`` headers); consumers act only on events their
  allowed producer signed, and dead-letter the rest.
- Broker outages. The broker connection is made before any row is locked;
  while it is down the relay backs off (up to ``EVENT_RECONNECT_MAX_SECONDS``)
  and rows simply wait. A row that fails to publish gets ``attempts`` and
  ``last_error`` so the lag is visible in the database.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import threading
from datetime import datetime, timedelta
from typing import Any

import psycopg2
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F
from django.utils import timezone
from kombu import Connection, Producer
from kombu.entity import PERSISTENT_DELIVERY_MODE
from opentelemetry import trace
from psycopg2 import sql

from common.backoff import Backoff
from common.db import connection_proved, connection_tidy
from common.events.broker import (
    PUBLISH_TIMEOUT_SECONDS,
    broker_connect,
    broker_connection,
    events_exchange,
    safe_url,
)
from common.events.models import OutboxRecord
from common.events.outbox import notify_channel, outbox_model
from common.signing import event_sign
from common.sql import columns, prepared, rows_read
from common.tracing import trace_context_extract, trace_context_inject, tracer

logger = logging.getLogger(__name__)

# Django wraps errors of its own connections; the LISTEN connection is used raw.
_DATABASE_ERRORS = (DatabaseError, psycopg2.Error)


# Sent with the claim, in one round trip, for its transaction only:
# - Losing the marks in a database crash only means publishing the rows again
#   (consumers are idempotent), so the commit need not wait for its WAL flush.
# - No bitmap scan. Marking a row leaves its entry in the index of unpublished rows
#   until VACUUM; a plain index scan flags such entries dead as it passes them, so the
#   next claim skips them, while a bitmap scan (the plan PostgreSQL picks for a table
#   not analyzed yet) flags nothing and rereads every row published since the last
#   VACUUM. Measured (issue #16, autovacuum off): 14,000 events in, a claim took 1.3 ms
#   and 292 buffers, and the relay's PostgreSQL backend 4.1 ms of CPU an order at 20/s,
#   growing with the table; with the index scan 1.7 ms, flat over 6,000 claims.
CLAIM_SETTINGS = "SET LOCAL synchronous_commit TO OFF; SET LOCAL enable_bitmapscan TO OFF; "


class PublishFailed(Exception):
    """The broker could not be reached or did not confirm a message; rows wait."""


class _PostgresListener:
    """A dedicated autocommit connection LISTENing on the service's outbox channel."""

    def __init__(self, *, using: str, channel: str) -> None:
        self.using = using
        self.channel = channel
        self._wrapper: BaseDatabaseWrapper | None = None

    def ensure(self) -> bool:
        """Connect and LISTEN if not already; True when (re)connected.

        After a reconnect, notifications sent meanwhile are lost, so the
        caller must look at the table once before waiting again.
        """
        if self._wrapper is not None and not self._wrapper.connection.closed:
            return False
        self.close()
        wrapper = connections.create_connection(self.using)
        wrapper.ensure_connection()
        raw = wrapper.connection
        raw.autocommit = True
        with raw.cursor() as cursor:
            cursor.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        self._wrapper = wrapper
        return True

    def fileno(self) -> int:
        if self._wrapper is None:
            raise ValueError("not listening")
        return self._wrapper.connection.fileno()

    def drain(self) -> None:
        """Consume pending notifications; their content does not matter, only that they came."""
        if self._wrapper is None:
            return
        raw = self._wrapper.connection
        raw.poll()
        raw.notifies.clear()

    def close(self) -> None:
        if self._wrapper is not None:
            with contextlib.suppress(_DATABASE_ERRORS):
                self._wrapper.close()
            self._wrapper = None


class OutboxRelay:
    """One relay: one persistent broker connection, one database, one service's outbox.

    ``relay_once()`` publishes one batch and is what tests and ``--once``
    call; ``run()`` is the long-running loop of ``manage.py outbox_relay``.
    """

    def __init__(
        self,
        *,
        broker_url: str | None = None,
        transport_options: dict[str, Any] | None = None,
        batch_size: int | None = None,
        poll_seconds: float | None = None,
        using: str = DEFAULT_DB_ALIAS,
        model: type[OutboxRecord] | None = None,
        publish_timeout: float = PUBLISH_TIMEOUT_SECONDS,
    ) -> None:
        self.model = model or outbox_model()
        self.publish_timeout = publish_timeout
        # Chaos testing: every event published twice, to show consumers shrug it off.
        self.copies = 2 if settings.CHAOS_DUPLICATE_DELIVERY else 1
        self.broker_url = broker_url or settings.CELERY_BROKER_URL
        self.transport_options = transport_options
        self.batch_size = batch_size or settings.OUTBOX_BATCH_SIZE
        self.poll_seconds = (
            poll_seconds if poll_seconds is not None else settings.OUTBOX_POLL_SECONDS
        )
        self.using = using
        self.backoff = Backoff(initial=0.2, maximum=settings.EVENT_RECONNECT_MAX_SECONDS)
        self.idle = threading.Event()  # set while waiting for work (tests and status)
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        self._claims: dict[bool, str] = {}

    # --- broker ---------------------------------------------------------------

    def _producer_ready(self) -> Producer:
        if self._producer is None:
            connection = broker_connection(
                self.broker_url, transport_options=self.transport_options
            )
            try:
                broker_connect(connection)
                channel = connection.channel()
                exchange = events_exchange()(channel)
                exchange.declare()
            except Exception as exc:
                connection.release()
                raise PublishFailed(
                    f"broker {safe_url(self.broker_url)} unreachable: {exc!r}"
                ) from exc
            self._connection = connection
            self._producer = Producer(channel, exchange=exchange)
            logger.info("outbox relay connected to %s", safe_url(self.broker_url))
        return self._producer

    def _broker_reset(self) -> None:
        """Drop the connection after any failure: the next attempt starts clean."""
        if self._connection is not None:
            with contextlib.suppress(Exception):  # it is already broken: we only let go of it
                self._connection.release()
        self._connection = None
        self._producer = None

    def _publish(self, producer: Producer, row: OutboxRecord) -> None:
        """Publish one row under a PRODUCER span in the trace of the work that recorded it.

        The span's parent is the envelope's ``trace`` (the recording transaction's
        span, so the publish shows in that trace however late the relay runs); the
        message's headers carry the PRODUCER span itself, which consumers link to.
        """
        envelope = row.outbox_envelope()
        body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
        # Signed as published (common.signing): consumers believe it only from its producer.
        signature = event_sign(body=body.encode())
        with tracer.start_as_current_span(
            f"{envelope['type']} publish",
            context=trace_context_extract(envelope.get("trace")),
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "send",
                "messaging.destination.name": settings.EVENT_EXCHANGE,
                "messaging.rabbitmq.destination.routing_key": envelope["type"],
                "messaging.message.id": envelope["id"],
                "event.type": envelope["type"],
                "event.subject": envelope.get("subject", ""),
            },
        ):
            headers = {**trace_context_inject(), **signature}
            for _ in range(self.copies):
                producer.publish(
                    body,
                    routing_key=envelope["type"],
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=PERSISTENT_DELIVERY_MODE,
                    message_id=envelope["id"],
                    type=envelope["type"],
                    app_id=envelope.get("source", ""),
                    headers=headers,
                    timeout=self.publish_timeout,
                    confirm_timeout=self.publish_timeout,
                )

    def rows_publish(self, rows: list[OutboxRecord]) -> tuple[list[OutboxRecord], Exception | None]:
        """Publish rows in order until one fails: (the rows published, the failure or None).

        For ``common.events.publish_on_commit``, which marks them itself; after a
        failure the connection is dropped, as ``relay_once`` does.
        """
        published: list[OutboxRecord] = []
        try:
            producer = self._producer_ready()
            for row in rows:
                self._publish(producer, row)
                published.append(row)
        except Exception as exc:
            self._broker_reset()
            return published, exc
        return published, None

    # --- one batch --------------------------------------------------------------

    def _sweep_cutoff(self) -> datetime | None:
        """With publishing on commit, rows written after this are their writer's to publish."""
        if not settings.OUTBOX_PUBLISH_ON_COMMIT:
            return None
        return timezone.now() - timedelta(seconds=settings.OUTBOX_SWEEP_AFTER_SECONDS)

    def _claim_sql(self, *, sweep: bool) -> str:
        """PostgreSQL: lock, mark and read a batch of unpublished rows in one statement
        (``sweep``: only rows written before a cutoff)."""
        if sweep not in self._claims:
            meta = self.model._meta
            quote = connections[self.using].ops.quote_name
            table, pk = quote(meta.db_table), quote(meta.pk.column)
            order = ", ".join(
                quote(meta.pk.column if name == "pk" else meta.get_field(name).column)
                for name in self.model.outbox_ordering
            )
            written = quote(meta.get_field(self.model.outbox_time_field).column)
            older = f"AND {written} < %s " if sweep else ""
            # Names from the model's own meta, quoted; values are parameters.
            self._claims[sweep] = (
                f"UPDATE {table} SET published_at = %s WHERE {pk} IN ("  # noqa: S608
                f"SELECT {pk} FROM {table} WHERE published_at IS NULL {older}"
                f"ORDER BY {order} LIMIT %s FOR UPDATE SKIP LOCKED) "
                f"RETURNING {columns(self.model, using=self.using)}"
            )
        return self._claims[sweep]

    def _claimed_batch(self, rows_of: Any, *, postgres: bool) -> list[OutboxRecord]:
        """The oldest unpublished rows, locked for this transaction (and, on PostgreSQL, marked).

        On PostgreSQL one ``UPDATE ... RETURNING`` locks (``SKIP LOCKED``),
        marks and reads the batch: the relay's cost per event is mostly its
        statements, and this is one instead of a read and a write. Rows that
        fail to go out are unmarked again before the commit.
        """
        cutoff = self._sweep_cutoff()
        if not postgres:
            pending = self._pending(rows_of, cutoff).select_for_update(skip_locked=True)
            return list(pending.order_by(*self.model.outbox_ordering)[: self.batch_size])
        with connections[self.using].cursor() as cursor:
            cursor.execute(
                CLAIM_SETTINGS + prepared(cursor, self._claim_sql(sweep=cutoff is not None)),
                [timezone.now(), *([cutoff] if cutoff is not None else []), self.batch_size],
            )
            # common.sql, not a RawQuerySet: that was a quarter of the relay's CPU.
            rows = rows_read(self.model, cursor, using=self.using)
        ordering = self.model.outbox_ordering  # RETURNING keeps no order
        rows.sort(key=lambda row: tuple(getattr(row, name) for name in ordering))
        return rows

    def _pending(self, rows_of: Any, cutoff: datetime | None) -> Any:
        pending = rows_of.filter(published_at__isnull=True)
        if cutoff is not None:
            pending = pending.filter(**{f"{self.model.outbox_time_field}__lt": cutoff})
        return pending

    def relay_once(self) -> int:
        """Publish the oldest unpublished rows (one batch); return how many were published.

        Raises ``PublishFailed`` when the broker is unreachable or a publish
        was not confirmed; the rows published before it stay marked.
        """
        rows_of = self.model._default_manager.using(self.using)
        postgres = connections[self.using].vendor == "postgresql"
        if not postgres and not self._pending(rows_of, self._sweep_cutoff()).exists():
            # A plain read first: on SQLite every transaction takes the write
            # lock, and an idle relay polling ten times a second should not.
            return 0
        producer = self._producer_ready()  # before locking rows: never hold locks while connecting
        published: list[Any] = []
        failure: tuple[OutboxRecord, Exception] | None = None
        with transaction.atomic(using=self.using):
            rows = self._claimed_batch(rows_of, postgres=postgres)
            for row in rows:
                try:
                    self._publish(producer, row)
                except Exception as exc:
                    failure = (row, exc)
                    break
                published.append(row.pk)
            if postgres:
                if failure is not None:  # marked in advance: take the marks of the rest back
                    rows_of.filter(pk__in=[row.pk for row in rows[len(published) :]]).update(
                        published_at=None
                    )
            elif published:
                rows_of.filter(pk__in=published, published_at__isnull=True).update(
                    published_at=timezone.now()
                )
            if failure is not None:
                row, exc = failure
                rows_of.filter(pk=row.pk).update(
                    attempts=F("attempts") + 1, last_error=repr(exc)[:2000]
                )
        if failure is not None:
            self._broker_reset()
            row, exc = failure
            name = self.model.__name__
            raise PublishFailed(f"publishing {name} {row.pk} failed: {exc!r}") from exc
        return len(published)

    def relay_pending(self) -> int:
        """Publish batches until none is left; return the total."""
        total = 0
        while not self._stop.is_set():
            count = self.relay_once()
            total += count
            if count < self.batch_size:
                break
        return total

    # --- the loop ----------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask ``run()`` to return after the current batch (safe from a signal handler)."""
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _wait(self, timeout: float, listener: _PostgresListener | None) -> None:
        """Sleep until a NOTIFY, a stop request or the timeout, whichever comes first."""
        sources: list[Any] = [self._wake_r]
        if listener is not None:
            sources.append(listener)
        readable, _, _ = select.select(sources, [], [], timeout)
        if self._wake_r in readable:
            os.read(self._wake_r, 1024)
        if listener is not None and listener in readable:
            listener.drain()

    def run(self) -> None:
        """Relay until ``request_stop()``; survives broker and database outages."""
        connection = connections[self.using]
        listener = (
            _PostgresListener(using=self.using, channel=notify_channel(settings.SERVICE_NAME))
            if connection.vendor == "postgresql" and not settings.OUTBOX_PUBLISH_ON_COMMIT
            else None
        )
        logger.info(
            "outbox relay started (%s, poll %.2fs, batch %d)",
            "LISTEN/NOTIFY"
            if listener
            else (
                f"sweeping rows older than {settings.OUTBOX_SWEEP_AFTER_SECONDS:g}s"
                if settings.OUTBOX_PUBLISH_ON_COMMIT
                else "polling"
            ),
            self.poll_seconds,
            self.batch_size,
        )
        try:
            while not self._stop.is_set():
                try:
                    if listener is not None:
                        listener.ensure()  # LISTEN before looking, so no commit slips between
                    connection_tidy(connection)
                    count = self.relay_pending()
                    connection_proved(connection)
                    if count:
                        logger.debug("outbox relay published %d events", count)
                    self.backoff.reset()
                except PublishFailed as exc:
                    delay = self.backoff.next()
                    logger.warning("outbox relay: %s; retrying in %.1fs", exc, delay)
                    self._wait(delay, None)
                    continue
                except _DATABASE_ERRORS as exc:
                    delay = self.backoff.next()
                    logger.warning("outbox relay: database error %r; retrying in %.1fs", exc, delay)
                    connection.close()
                    if listener is not None:
                        listener.close()
                    self._wait(delay, None)
                    continue
                self.idle.set()
                try:
                    self._wait(self.poll_seconds, listener)
                except _DATABASE_ERRORS:
                    if listener is not None:
                        listener.close()  # reconnected (and the table looked at) next round
                finally:
                    self.idle.clear()
        finally:
            if listener is not None:
                listener.close()
            self.close()
            connection.close()
            logger.info("outbox relay stopped")

    def close(self) -> None:
        self._broker_reset()

    def __del__(self) -> None:
        for fd in (getattr(self, "_wake_r", -1), getattr(self, "_wake_w", -1)):
            with contextlib.suppress(OSError):
                os.close(fd)
