"""The operator's view of a service's dead-letter queue: list, replay, purge.

Only plain queue operations are used (``basic_get``, ack, publish, purge),
so the same code serves RabbitMQ and the filesystem transport. Reading
without acknowledging and then closing the channel gives the messages back
to the queue: that is how ``list`` looks without taking. (On the filesystem
transport the order of the dead-letter queue is not kept by that; it does
not matter there.)

The same code serves both kinds of dead letters: events (``<service>.events.dlq``,
replayed to ``<service>.events``) and Celery commands and replies the worker
refused (``kind="commands"``: ``<service>.commands.dlq``, kept as the Celery
message they were and replayed to the service's command queue).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from kombu import Connection, Producer, Queue
from kombu.entity import PERSISTENT_DELIVERY_MODE
from kombu.message import Message

from common.events.broker import (
    HEADER_ATTEMPTS,
    HEADER_DEAD_AT,
    HEADER_REASON,
    HEADER_REPLAYS,
    HEADER_ROUTING_KEY,
    PUBLISH_TIMEOUT_SECONDS,
    broker_connect,
    broker_connection,
    command_queue_name,
    dead_letter_queue,
    dead_letter_queue_name,
    events_exchange,
    queue_name,
)
from common.quorum import connection_is_rabbitmq


@dataclass(frozen=True)
class DeadLetter:
    """What an operator needs to decide about one dead message."""

    id: str
    type: str
    reason: str
    attempts: int
    routing_key: str
    dead_lettered_at: str
    replays: int

    @classmethod
    def from_message(cls, message: Message) -> DeadLetter:
        headers = message.headers or {}
        envelope: dict[str, Any] = {}
        try:
            parsed = json.loads(message.body)
        except (UnicodeDecodeError, ValueError):
            parsed = None
        if isinstance(parsed, dict):
            envelope = parsed
        routing_key = str(headers.get(HEADER_ROUTING_KEY, ""))
        return cls(
            id=str((message.properties or {}).get("message_id") or envelope.get("id") or "-"),
            # A command's task name is a Celery header; an event's type is in its envelope.
            type=str(headers.get("task") or envelope.get("type") or routing_key or "-"),
            reason=str(headers.get(HEADER_REASON, "")),
            attempts=int(headers.get(HEADER_ATTEMPTS, 0)),
            routing_key=routing_key,
            dead_lettered_at=str(headers.get(HEADER_DEAD_AT, "")),
            replays=int(headers.get(HEADER_REPLAYS, 0)),
        )


class DeadLetterQueue:
    """``<service>.events.dlq`` (or ``<service>.commands.dlq``) on the service's broker."""

    def __init__(
        self,
        *,
        service: str | None = None,
        broker_url: str | None = None,
        transport_options: dict[str, Any] | None = None,
        kind: str = "events",
    ) -> None:
        self.service = service or settings.SERVICE_NAME
        self.broker_url = broker_url or settings.CELERY_BROKER_URL
        self.transport_options = transport_options
        self.kind = kind
        self.name = dead_letter_queue_name(self.service, kind=kind)

    def _queue(self, connection: Connection) -> Queue:
        """Declared as the consumer declares it (a quorum queue on RabbitMQ)."""
        return dead_letter_queue(
            self.service, rabbitmq=connection_is_rabbitmq(connection), kind=self.kind
        )

    def _home(self) -> str:
        """The queue a dead message is replayed to."""
        if self.kind == "commands":
            return command_queue_name(self.service)
        return queue_name(self.service)

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        connection = broker_connection(self.broker_url, transport_options=self.transport_options)
        try:
            broker_connect(connection)
            yield connection
        finally:
            connection.release()

    @contextmanager
    def _reader(self, connection: Connection) -> Iterator[Callable[[], Message | None]]:
        """A function taking the next message without ack; whatever is not acked
        goes back to the queue when the channel closes at the end of the block."""
        with connection.channel() as channel:
            queue = self._queue(connection)(channel)
            queue.declare()
            yield lambda: queue.get(no_ack=False)

    def size(self) -> int:
        with self._connection() as connection, connection.channel() as channel:
            _, count, _ = self._queue(connection)(channel).queue_declare()
            return int(count)

    def list(self, *, limit: int = 100) -> list[DeadLetter]:
        """The first ``limit`` dead messages, left in the queue."""
        found: list[DeadLetter] = []
        with self._connection() as connection, self._reader(connection) as take:
            while len(found) < limit and (message := take()) is not None:
                found.append(DeadLetter.from_message(message))
        return found

    @staticmethod
    def _take(
        take: Callable[[], Message | None],
        *,
        ids: Collection[str] | None,
        limit: int | None,
        act: Callable[[Message, DeadLetter], None] | None = None,
    ) -> list[DeadLetter]:
        """Ack (after ``act``) the messages with the given ids, or all; the rest stay."""
        wanted = set(ids) if ids else None
        done: list[DeadLetter] = []
        while (limit is None or len(done) < limit) and (message := take()) is not None:
            dead = DeadLetter.from_message(message)
            if wanted is not None and dead.id not in wanted:
                continue  # not acked: back to the queue when the channel closes
            if act is not None:
                act(message, dead)
            message.ack()
            done.append(dead)
        return done

    def replay(
        self,
        *,
        ids: Collection[str] | None = None,
        via_exchange: bool = False,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        """Send dead messages back for another try, then remove them from the DLQ.

        By default straight to this service's queue: the other services bound
        to the type handled it already (their inboxes would ignore it anyway).
        ``via_exchange`` re-publishes to the events exchange with the original
        routing key instead. Each message is removed only after the broker
        confirmed its copy, so a crash leaves at worst a duplicate, never a loss.
        """
        exchange = events_exchange()

        with self._connection() as connection:
            publish_channel = connection.channel()
            producer = Producer(publish_channel)
            if via_exchange and self.kind == "events":
                exchange(publish_channel).declare()

            def send(message: Message, dead: DeadLetter) -> None:
                headers = {
                    key: value
                    for key, value in (message.headers or {}).items()
                    if not key.startswith("x-dlq-")
                }
                headers[HEADER_REPLAYS] = dead.replays + 1
                target_exchange, routing_key = exchange.name, dead.routing_key
                if not via_exchange or not routing_key or self.kind == "commands":
                    # Through the queue's own exchange (queue_exchange), of its name.
                    target_exchange = routing_key = self._home()
                    # Straight to the queue the routing key is the queue's name:
                    # keep the original for the next dead-lettering.
                    headers[HEADER_ROUTING_KEY] = dead.routing_key
                extra: dict[str, Any] = {}
                if message_id := (message.properties or {}).get("message_id"):
                    extra["message_id"] = message_id
                producer.publish(
                    message.body,
                    exchange=target_exchange,
                    routing_key=routing_key,
                    content_type=message.content_type or "application/octet-stream",
                    content_encoding=message.content_encoding or "binary",
                    delivery_mode=PERSISTENT_DELIVERY_MODE,
                    headers=headers,
                    timeout=PUBLISH_TIMEOUT_SECONDS,
                    confirm_timeout=PUBLISH_TIMEOUT_SECONDS,
                    **extra,
                )

            with self._reader(connection) as take:
                return self._take(take, ids=ids, limit=limit, act=send)

    def purge(self, *, ids: Collection[str] | None = None) -> int:
        """Delete dead messages for good: all of them, or those with the given ids."""
        if ids:
            with self._connection() as connection, self._reader(connection) as take:
                return len(self._take(take, ids=ids, limit=None))
        with self._connection() as connection, connection.channel() as channel:
            return int(self._queue(connection)(channel).purge() or 0)
