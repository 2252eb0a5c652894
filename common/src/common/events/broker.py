"""Names, connections and backoff shared by the relay, the consumers and ``manage.py dlq``.

Everything here works the same on RabbitMQ and on kombu's ``filesystem://``
transport: only a durable topic exchange, durable queues, the default
exchange and publisher confirms where the transport has them. No
RabbitMQ-only feature (per-message TTL, dead-letter exchanges, delayed
messages) is used, so retries and dead-lettering are done by our own code.
On RabbitMQ the queues are quorum queues (``x-queue-type``, see
``common.quorum``); other transports get no queue arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from kombu import Connection, Exchange, Producer, Queue, binding
from kombu.entity import PERSISTENT_DELIVERY_MODE

from common.filesystem_broker import transport_for
from common.quorum import quorum_queue_arguments

# Long enough for a loaded broker, short enough that a relay holding row
# locks, or a consumer about to ack, does not hang on a dead one.
PUBLISH_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0

# Headers a dead-lettered message carries (kept short: they show in RabbitMQ's UI too).
HEADER_REASON = "x-dlq-reason"
HEADER_ATTEMPTS = "x-dlq-attempts"
HEADER_ROUTING_KEY = "x-dlq-original-routing-key"
HEADER_EXCHANGE = "x-dlq-original-exchange"
HEADER_DEAD_AT = "x-dlq-dead-lettered-at"
HEADER_REPLAYS = "x-replays"  # not x-dlq-: it survives dying again


def service_name(service: str | None = None) -> str:
    return service or settings.SERVICE_NAME


def _prefix() -> str:
    """``QUEUE_PREFIX`` (if the settings have it) keeps deployments or test runs that
    share a broker apart: it prefixes the exchange as well as the queues, since a
    shared exchange would route one deployment's events into the other's queues."""
    return str(getattr(settings, "QUEUE_PREFIX", "") or "")


def queue_name(service: str | None = None) -> str:
    """The durable queue a service consumes events from."""
    return f"{_prefix()}{service_name(service)}.events"


def command_queue_name(service: str | None = None) -> str:
    """The Celery queue of a service's commands and replies (its ``CELERY_TASK_DEFAULT_QUEUE``)."""
    return f"{_prefix()}{service_name(service)}"


DEAD_LETTER_KINDS = ("events", "commands")


def dead_letter_queue_name(service: str | None = None, *, kind: str = "events") -> str:
    """``<service>.events.dlq`` for events, ``<service>.commands.dlq`` for Celery commands
    and replies refused by the worker (unsigned, forged, not allowed, inconsistent)."""
    if kind not in DEAD_LETTER_KINDS:
        raise ValueError(f"dead letters are {' or '.join(DEAD_LETTER_KINDS)}, not {kind!r}")
    if kind == "commands":
        return f"{command_queue_name(service)}.commands.dlq"
    return f"{queue_name(service)}.dlq"


def events_exchange() -> Exchange:
    """The durable topic exchange every service publishes to (routing key = event type)."""
    return Exchange(f"{_prefix()}{settings.EVENT_EXCHANGE}", type="topic", durable=True)


def queue_exchange(queue: str) -> Exchange:
    """The direct exchange named after one of our queues, bound to it with its name as the
    key: how a message goes straight to that queue (a dead letter, a replay).

    Never through the default exchange: on RabbitMQ the right to write to it is the
    right to write to every queue of the virtual host, so each service's broker user
    (``common.broker_access``) may write only to exchanges of its own, to the command
    exchanges of the services it calls and to the events exchange it produces to.
    Celery's task queues follow the same rule (an exchange per queue, of its name).
    """
    return Exchange(queue, type="direct", durable=True)


def events_queue(*, service: str | None = None, patterns: list[str], rabbitmq: bool) -> Queue:
    """The service's queue, bound to the exchange with every pattern it handles.

    ``rabbitmq`` (``connection_is_rabbitmq(connection)``) makes it a quorum queue;
    required, since a declare that says otherwise is refused by RabbitMQ.
    """
    exchange = events_exchange()
    name = queue_name(service)
    return Queue(
        name,
        bindings=[
            *(binding(exchange, routing_key=pattern) for pattern in patterns),
            # Replays go straight to this queue through its own exchange (queue_exchange).
            binding(queue_exchange(name), routing_key=name),
        ],
        durable=True,
        auto_delete=False,
        queue_arguments=quorum_queue_arguments(rabbitmq=rabbitmq),
    )


def dead_letter_queue(service: str | None = None, *, rabbitmq: bool, kind: str = "events") -> Queue:
    """Reached through its own exchange only (``queue_exchange``): nothing is routed
    here by accident."""
    name = dead_letter_queue_name(service, kind=kind)
    return Queue(
        name,
        exchange=queue_exchange(name),
        routing_key=name,
        durable=True,
        auto_delete=False,
        queue_arguments=quorum_queue_arguments(rabbitmq=rabbitmq),
    )


def broker_connection(
    url: str | None = None, *, transport_options: Mapping[str, Any] | None = None
) -> Connection:
    """A connection to the service's broker with publisher confirms where they exist.

    ``confirm_publish`` makes every publish on pyamqp wait for the broker's
    ack (a nack or a lost connection raises), which is what lets the relay
    mark a row published and the consumer ack after dead-lettering. Other
    transports ignore the option; their publish returns once the message is
    stored (the filesystem transport renames the written file into its queue).
    """
    options = dict(
        settings.CELERY_BROKER_TRANSPORT_OPTIONS if transport_options is None else transport_options
    )
    options["confirm_publish"] = True
    url = url or settings.CELERY_BROKER_URL
    return Connection(
        url,
        transport=transport_for(url),
        transport_options=options,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        # No heartbeats: a handler may legitimately hold the thread (retry
        # backoff) longer than a heartbeat interval, and nothing would answer.
        heartbeat=0,
    )


def broker_connect(connection: Connection) -> Connection:
    """Connect now, trying each broker URL once, or raise at once.

    kombu's ``connect()`` sleeps two seconds before its one retry; our
    callers have backoff loops of their own and should hear of a dead broker
    immediately.
    """
    connection.ensure_connection(
        max_retries=max(len(connection.alt), 1) - 1,
        interval_start=0,
        reraise_as_library_errors=False,
    )
    return connection


class BrokerUnavailable(ConnectionError):
    """The broker did not answer."""


def queue_sizes(names: list[str], *, connect_timeout: float = 2.0) -> dict[str, int]:
    """Messages ready in each named queue; queues not declared yet are left out.

    A passive declare creates nothing. Raises ``BrokerUnavailable`` when the
    broker does not answer within ``connect_timeout`` (callers such as a
    metrics scrape must not hang on a dead one).
    """
    connection = broker_connection()
    connection.connect_timeout = connect_timeout
    sizes: dict[str, int] = {}
    try:
        broker_connect(connection)
        for name in names:
            try:
                with connection.channel() as channel:
                    _, count, _ = channel.queue_declare(queue=name, passive=True)
            except connection.channel_errors:  # not declared (yet): nothing waits in it
                continue
            sizes[name] = int(count)
    except broker_errors(connection) as error:
        raise BrokerUnavailable(f"The broker did not answer: {error}") from error
    finally:
        connection.release()
    return sizes


def broker_errors(connection: Connection) -> tuple[type[BaseException], ...]:
    """What a broken or refused broker raises on this transport."""
    return (*connection.connection_errors, *connection.channel_errors, OSError)


def safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def dead_letter_publish(
    producer: Producer,
    body: bytes | str,
    *,
    queue: str,
    reason: str,
    attempts: int,
    routing_key: str,
    exchange: str,
    headers: Mapping[str, Any],
    content_type: str | None,
    content_encoding: str | None,
    message_id: str | None = None,
) -> None:
    """Publish a refused message to the dead-letter ``queue`` with why, confirmed by the
    broker before the caller acknowledges the original (a broker error propagates).

    Through the queue's own exchange (``queue_exchange``), never the default one. The
    body goes as it came; its headers too, but for an earlier death's ``x-dlq-*`` ones,
    replaced by this one's: the reason (at most 2,000 characters), the attempts made,
    where it was going (``routing_key``, ``exchange``) and when it died.
    """
    kept = {key: value for key, value in headers.items() if not key.startswith("x-dlq-")}
    extra = {"message_id": message_id} if message_id else {}
    producer.publish(
        body if isinstance(body, bytes) else body.encode(),
        exchange=queue,
        routing_key=queue,
        content_type=content_type or "application/octet-stream",
        content_encoding=content_encoding or "binary",
        delivery_mode=PERSISTENT_DELIVERY_MODE,
        headers={
            **kept,
            HEADER_REASON: reason[:2000],
            HEADER_ATTEMPTS: attempts,
            HEADER_ROUTING_KEY: routing_key,
            HEADER_EXCHANGE: exchange,
            HEADER_DEAD_AT: datetime.now(UTC).isoformat(timespec="seconds"),
        },
        timeout=PUBLISH_TIMEOUT_SECONDS,
        confirm_timeout=PUBLISH_TIMEOUT_SECONDS,
        **extra,
    )
