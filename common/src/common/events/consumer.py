"""Idempotent event consumers: one queue per service, handlers from ``EVENT_HANDLERS``.

For every message: parse and validate the envelope and the data schema; then,
in one database transaction, insert the inbox row (consumer, event id) and
call the handlers; acknowledge only after that transaction committed. A
redelivered event finds its inbox row, changes nothing and is acknowledged.

Retries happen here, in the consumer, with exponential backoff
(``EVENT_MAX_ATTEMPTS``, ``EVENT_RETRY_BACKOFF_SECONDS``), before the next
message is taken; then the message goes to ``<service>.events.dlq`` with
headers saying why. Chosen over republishing with an attempts header because
it behaves identically on RabbitMQ and the filesystem transport (neither TTL
nor dead-letter exchanges are needed), keeps events of one queue in order,
and costs nothing when handlers succeed. The price is that a failing message
holds its queue for the backoff (about 7 s with the defaults), and a consumer
that dies mid-retry starts the count again on redelivery. A database that is
down does not use up attempts: the consumer waits for it, since dead-lettering
every message during an outage would only make work for the operator.

A message that is not a valid event (not JSON, envelope fields missing, data
against its schema, a type or a version of it with no registered schema) is
never retried and never dropped: it goes to the dead-letter queue at once with
the reason. So
does, before anything else is looked at, one that is not signed by the
service its envelope names as ``source``, or whose source may not produce its
type (``EVENT_SOURCES``; ``common.signing``).

Unacknowledged messages go back to the queue when the consumer stops or dies,
on RabbitMQ and on the embedded broker alike (``common.filesystem_broker``).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connections, transaction
from django.utils.module_loading import import_string
from kombu import Connection, Consumer, Producer
from kombu.message import Message
from opentelemetry import trace

from common.backoff import Backoff, backoff_delay
from common.events.broker import (
    HEADER_ROUTING_KEY,
    broker_connect,
    broker_connection,
    broker_errors,
    dead_letter_publish,
    dead_letter_queue,
    dead_letter_queue_name,
    events_exchange,
    events_queue,
    queue_name,
    safe_url,
)
from common.events.envelope import Event, EventError, event_data_validate
from common.events.models import InboxMessage
from common.quorum import connection_is_rabbitmq
from common.signing import MessageRefused, event_source_check, event_verify
from common.tracing import trace_context_extract, tracer

logger = logging.getLogger(__name__)

Handler = Callable[[Event], None]


class Outcome(enum.Enum):
    HANDLED = "handled"
    DUPLICATE = "duplicate"  # already in the inbox: acked, nothing done
    IGNORED = "ignored"  # no handler matches its type (a stale binding): acked, logged
    DEAD_LETTERED = "dead_lettered"
    STOPPED = "stopped"  # asked to stop mid-retry: not acked, the broker redelivers it


@functools.lru_cache(maxsize=1024)
def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: ``*`` is exactly one word, ``#`` zero or more."""

    def match(words: tuple[str, ...], keys: tuple[str, ...]) -> bool:
        if not words:
            return not keys
        if words[0] == "#":
            return any(match(words[1:], keys[index:]) for index in range(len(keys) + 1))
        return bool(keys) and words[0] in ("*", keys[0]) and match(words[1:], keys[1:])

    return match(tuple(pattern.split(".")), tuple(routing_key.split(".")))


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


class EventConsumer:
    """The consumer of one service's queue (``manage.py consume_events``)."""

    def __init__(
        self,
        *,
        service: str | None = None,
        handlers: Mapping[str, str | Handler] | None = None,
        broker_url: str | None = None,
        transport_options: dict[str, Any] | None = None,
        max_attempts: int | None = None,
        retry_backoff: float | None = None,
        retry_backoff_max: float | None = None,
        using: str = DEFAULT_DB_ALIAS,
    ) -> None:
        self.service = service or settings.SERVICE_NAME
        self.queue_name = queue_name(self.service)
        self.dead_letter_queue_name = dead_letter_queue_name(self.service)
        self.broker_url = broker_url or settings.CELERY_BROKER_URL
        self.transport_options = transport_options
        self.max_attempts = max(1, max_attempts or settings.EVENT_MAX_ATTEMPTS)
        self.retry_backoff = (
            settings.EVENT_RETRY_BACKOFF_SECONDS if retry_backoff is None else retry_backoff
        )
        self.retry_backoff_max = (
            settings.EVENT_RETRY_BACKOFF_MAX_SECONDS
            if retry_backoff_max is None
            else retry_backoff_max
        )
        self.using = using
        configured = settings.EVENT_HANDLERS if handlers is None else handlers
        # Imported now, so a mistyped path stops the process at start, not at the first event.
        self.routes: list[tuple[str, Handler]] = [
            (pattern, import_string(target) if isinstance(target, str) else target)
            for pattern, target in configured.items()
        ]
        self.reconnect_backoff = Backoff(initial=0.2, maximum=settings.EVENT_RECONNECT_MAX_SECONDS)
        self.processed = 0  # messages acknowledged (any outcome but STOPPED)
        self._stop = threading.Event()
        self._dead_letter_producer: Producer | None = None

    @property
    def patterns(self) -> list[str]:
        return [pattern for pattern, _ in self.routes]

    def handlers_for(self, event_type: str) -> list[Handler]:
        return [handler for pattern, handler in self.routes if topic_matches(pattern, event_type)]

    # --- broker topology ------------------------------------------------------

    def declare(self, connection: Connection) -> None:
        """Create the queue, its bindings and the dead-letter queue (idempotent).

        Events published before a service's queue exists are not kept for it,
        so run this (``consume_events --setup-only``) before producers start
        when deploying a new consumer.
        """
        rabbitmq = connection_is_rabbitmq(connection)  # quorum queues there
        with connection.channel() as channel:
            events_queue(service=self.service, patterns=self.patterns, rabbitmq=rabbitmq)(
                channel
            ).declare()
            dead_letter_queue(self.service, rabbitmq=rabbitmq)(channel).declare()

    # --- one message ------------------------------------------------------------

    def process(
        self,
        body: bytes | str,
        *,
        routing_key: str = "",
        exchange: str = "",
        properties: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
    ) -> Outcome:
        """Handle one message body; the caller acks unless the outcome is ``STOPPED``."""

        def dead_letter(reason: str, attempts: int) -> Outcome:
            self._dead_letter(
                body,
                reason=reason,
                attempts=attempts,
                routing_key=routing_key,
                exchange=exchange,
                properties=properties or {},
                headers=headers or {},
                content_type=content_type,
                content_encoding=content_encoding,
            )
            return Outcome.DEAD_LETTERED

        raw = body if isinstance(body, bytes) else body.encode()
        try:
            # Who signed it, before its bytes are even parsed; then that the envelope
            # says the same producer and that it may produce this type.
            signer = event_verify(body=raw, headers=headers)
            event = Event.from_json(raw)
            event_source_check(event_type=event.type, source=event.source, signer=signer)
        except MessageRefused as exc:
            logger.error("refused event on %s dead-lettered: %s", self.queue_name, exc)
            return dead_letter(f"refused event: {exc}"[:2000], 0)
        except EventError as exc:
            logger.error("invalid event on %s dead-lettered: %s", self.queue_name, exc)
            return dead_letter(f"invalid event: {_reason(exc)}", 0)
        if exchange == events_exchange().name and not self.handlers_for(event.type):
            # Through a binding left from an older EVENT_HANDLERS (RabbitMQ keeps a durable
            # queue's bindings): signed by its producer, so no forgery; nothing here reads
            # it, so there is no schema of ours to check it against either. (Anything else
            # of a type nobody here handles is checked, and dead-lettered as unknown.)
            logger.warning(
                "no handler for %s on %s (a binding left from an older EVENT_HANDLERS?); "
                "acknowledged without effect",
                event.type,
                self.queue_name,
                extra={"event_id": event.id},
            )
            return Outcome.IGNORED
        try:
            event_data_validate(event_type=event.type, data=event.data, version=event.version)
        except EventError as exc:
            logger.error("invalid event on %s dead-lettered: %s", self.queue_name, exc)
            return dead_letter(f"invalid event: {_reason(exc)}", 0)
        with self._span(event, headers) as span:
            outcome = self._handle(event, dead_letter)
            span.set_attribute("event.outcome", outcome.value)
            if outcome is Outcome.DEAD_LETTERED:
                span.set_status(trace.StatusCode.ERROR, "dead-lettered")
            return outcome

    def _span(self, event: Event, headers: Mapping[str, Any] | None) -> Any:
        """The CONSUMER span handling ``event``: a child of the span that recorded it.

        Its parent is the envelope's ``trace``, so the handler's work (and every
        event or command it sends) joins the trace of the change that caused the
        event; it links to the relay's PRODUCER span that the message headers name.
        """
        published = trace.get_current_span(
            trace_context_extract(
                {key: value for key, value in (headers or {}).items() if isinstance(value, str)}
            )
        ).get_span_context()
        return tracer.start_as_current_span(
            f"{event.type} process",
            context=trace_context_extract(event.trace),
            kind=trace.SpanKind.CONSUMER,
            links=[trace.Link(published)] if published.is_valid else None,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "process",
                "messaging.destination.name": self.queue_name,
                "messaging.message.id": event.id,
                "event.type": event.type,
                "event.subject": event.subject,
                "event.source": event.source,
            },
        )

    def _handle(self, event: Event, dead_letter: Callable[[str, int], Outcome]) -> Outcome:
        """Run the handlers with retries; the event is valid and its span is current."""
        handlers = self.handlers_for(event.type)
        attempt = 0
        database_backoff = Backoff(initial=0.2, maximum=settings.EVENT_RECONNECT_MAX_SECONDS)
        while True:
            attempt += 1
            try:
                done = self._apply(event, handlers)
            except Exception as exc:
                if self._database_down():
                    attempt -= 1  # the handler never had a chance: not its attempt
                    delay = database_backoff.next()
                    logger.warning(
                        "database unavailable while handling %s %s; waiting %.1fs",
                        event.type,
                        event.id,
                        delay,
                    )
                elif attempt >= self.max_attempts:
                    logger.exception(
                        "handling %s %s failed %d times; dead-lettered",
                        event.type,
                        event.id,
                        attempt,
                        extra={"event_id": event.id},
                    )
                    return dead_letter(f"handler failed: {_reason(exc)}", attempt)
                else:
                    delay = backoff_delay(
                        attempt - 1,
                        base=self.retry_backoff,
                        cap=self.retry_backoff_max,
                        jitter=False,
                    )
                    logger.warning(
                        "handling %s %s failed (attempt %d of %d): %s; retrying in %.2fs",
                        event.type,
                        event.id,
                        attempt,
                        self.max_attempts,
                        _reason(exc),
                        delay,
                    )
                if self._stop.wait(delay):
                    return Outcome.STOPPED
                continue
            return Outcome.HANDLED if done else Outcome.DUPLICATE

    def _apply(self, event: Event, handlers: list[Handler]) -> bool:
        """Inbox row and handlers in one transaction; False if the event was handled before."""
        inserted = False
        try:
            with transaction.atomic(using=self.using):
                InboxMessage.objects.using(self.using).create(
                    consumer=self.queue_name, message_id=event.id, type=event.type
                )
                inserted = True
                for handler in handlers:
                    handler(event)
        except IntegrityError:
            if inserted:
                raise  # the handler's own integrity error: a failure like any other
            return False  # the unique (consumer, message_id) row exists: already handled
        return True

    def _database_down(self) -> bool:
        """Whether the last failure was the database being unreachable; reconnects if it is back."""
        connection = connections[self.using]
        if connection.in_atomic_block:
            return False  # inside an outer transaction (tests): nothing to reconnect
        try:
            if connection.connection is not None and not connection.is_usable():
                connection.close()
            connection.ensure_connection()
        except DatabaseError:
            connection.close()
            return True
        return False

    def _dead_letter(
        self,
        body: bytes | str,
        *,
        reason: str,
        attempts: int,
        routing_key: str,
        exchange: str,
        properties: Mapping[str, Any],
        headers: Mapping[str, Any],
        content_type: str | None,
        content_encoding: str | None,
    ) -> None:
        """Publish the original body to the DLQ with why; confirmed before the caller acks."""
        if self._dead_letter_producer is None:
            raise RuntimeError("dead-lettering needs a broker connection (run() or session())")
        if exchange in ("", self.queue_name):
            # Published straight to the queue (a replay, through the queue's own
            # exchange): the routing key is the queue's name, and the event's own
            # one travels in a header.
            routing_key = str(headers.get(HEADER_ROUTING_KEY) or routing_key)
        dead_letter_publish(
            self._dead_letter_producer,
            body,
            queue=self.dead_letter_queue_name,
            reason=reason,
            attempts=attempts,
            routing_key=routing_key,
            exchange=exchange,
            headers=headers,
            content_type=content_type,
            content_encoding=content_encoding,
            message_id=properties.get("message_id"),
        )

    def _on_message(self, message: Message) -> None:
        delivery = message.delivery_info or {}
        outcome = self.process(
            message.body,
            routing_key=delivery.get("routing_key", ""),
            exchange=delivery.get("exchange", ""),
            properties=message.properties,
            headers=message.headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
        )
        if outcome is Outcome.STOPPED:
            return  # unacked: the broker gets it back when the channel closes
        message.ack()
        self.processed += 1

    # --- the loop ---------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the current message (or leave it unacked mid-retry), then return from run()."""
        self._stop.set()

    def run(self, *, until_idle: float | None = None) -> int:
        """Consume until ``request_stop()``; with ``until_idle``, also once the queue
        has been empty that many seconds (then a broker that cannot be reached is an
        error rather than something to wait out). Returns messages acknowledged."""
        while not self._stop.is_set():
            connection = broker_connection(
                self.broker_url, transport_options=self.transport_options
            )
            errors = broker_errors(connection)
            try:
                self._session(connection, until_idle=until_idle)
                break
            except errors as exc:
                if until_idle is not None:
                    raise
                delay = self.reconnect_backoff.next()
                logger.warning(
                    "event consumer %s: broker %s: %r; reconnecting in %.1fs",
                    self.queue_name,
                    safe_url(self.broker_url),
                    exc,
                    delay,
                )
                self._stop.wait(delay)
            finally:
                self._dead_letter_producer = None
                with contextlib.suppress(Exception):  # already broken: we only let go of it
                    connection.release()
        logger.info("event consumer %s stopped after %d messages", self.queue_name, self.processed)
        return self.processed

    def _session(self, connection: Connection, *, until_idle: float | None) -> None:
        broker_connect(connection)
        self.declare(connection)
        self._dead_letter_producer = Producer(connection.channel())
        channel = connection.channel()
        # One unacknowledged message at a time: keeps order, and nothing is
        # delivered to us while we wait for a dead-letter publish confirm.
        consumer = Consumer(
            channel,
            queues=[
                events_queue(
                    service=self.service,
                    patterns=self.patterns,
                    rabbitmq=connection_is_rabbitmq(connection),
                )
            ],
            on_message=self._on_message,
            prefetch_count=1,
            no_ack=False,
        )
        self.reconnect_backoff.reset()
        logger.info(
            "event consumer %s on %s, patterns %s",
            self.queue_name,
            safe_url(self.broker_url),
            ", ".join(self.patterns) or "(none)",
        )
        last_message = time.monotonic()
        tick = 1.0 if until_idle is None else min(1.0, until_idle)
        with consumer:
            while not self._stop.is_set():
                before = self.processed
                with contextlib.suppress(TimeoutError):
                    connection.drain_events(timeout=tick)
                if self.processed != before:
                    last_message = time.monotonic()
                    continue
                if until_idle is not None and time.monotonic() - last_message >= until_idle:
                    return
                if not connections[self.using].in_atomic_block:
                    # Idle: drop a database connection that broke or outlived
                    # CONN_MAX_AGE, as Django does between requests.
                    connections[self.using].close_if_unusable_or_obsolete()
