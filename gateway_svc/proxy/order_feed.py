"""The order events a gateway worker hears from the broker, handed to the streams it serves.

Each gateway worker process subscribes once, whatever the number of streams
it serves: a queue of its own (``<prefix>gateway.order-status.<host>-<pid>-<random>``)
bound to ``order.#`` on the events exchange, consumed by one thread (kombu is
synchronous), which hands every event to the worker's event loop, where
:class:`OrderEventHub` gives it to the streams of that order. A stream never
holds a thread: it waits on an ``asyncio.Queue``.

- On RabbitMQ the queue is exclusive and auto-delete (a classic queue: quorum
  queues can be neither), so it disappears with the worker's connection,
  however the worker ends; ``x-max-length`` bounds what a stalled worker can
  pile up (the oldest go first: a stream misses nothing by that, see below).
- On ``make run``'s embedded ``filesystem://`` broker the topic exchange is a
  shared table of bindings (``common.filesystem_broker``) and nothing is ever
  auto-deleted, so the worker deletes its queue when it stops, and a worker
  that starts deletes the queues of workers that died without doing so: each
  worker holds an ``flock`` on ``<broker>/subscribers/<queue>.lock`` for its
  life, which the kernel drops however the process ends (the same proof of
  life as the transport's own message owners).

An event here is a wake-up call, not the record: a stream that hears of its
order reads the order's history from orders_svc and sends what it has not
sent, by version. So an event lost (a broker restart, a dropped message) or
delivered out of order costs nothing but latency: streams also read the
history every few seconds while this feed is not connected, and now and then
even when it is. Messages are taken without acknowledgement for the same reason.

Events are read as every consumer reads them (``order_event_read``): the
signature first (``common.signing``: signed by orders, which alone may produce
``order.*``, ``EVENT_SOURCES``), then the envelope and the data; one that fails
goes to ``gateway.events.dlq`` with the reason (``manage.py dlq`` shows it),
never to a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from kombu import Connection, Consumer, Producer, Queue, binding
from kombu.message import Message

from common.backoff import Backoff
from common.contracts import consumer_events_register
from common.events import Event, EventError, event_data_validate
from common.events.broker import (
    broker_connect,
    broker_connection,
    broker_errors,
    dead_letter_publish,
    dead_letter_queue,
    dead_letter_queue_name,
    events_exchange,
    safe_url,
)
from common.quorum import CLASSIC, QUEUE_TYPE_ARGUMENT, connection_is_rabbitmq
from common.signing import MessageRefused, event_source_check, event_verify

logger = logging.getLogger(__name__)

SERVICE = "gateway"
BINDING = "order.#"
# What a stalled worker may hold on RabbitMQ before the oldest are dropped.
MAX_QUEUED = 10_000


def order_event_types_register() -> None:
    """What the feed relies on of orders' events, in the versions it accepts:
    ``contracts/consumers/gateway/`` (the envelope's subject, the order id, only)."""
    consumer_events_register(SERVICE)


def order_event_read(body: bytes | str, headers: Mapping[str, Any] | None) -> Event:
    """The event, checked as ``common.events.consumer`` checks one: who signed it, before
    its bytes are parsed; that its source is its signer and may produce its type; its data.

    Raises ``MessageRefused`` or ``EventError`` with the reason.
    """
    raw = body if isinstance(body, bytes) else body.encode()
    signer = event_verify(body=raw, headers=headers)
    event = Event.from_json(raw)
    event_source_check(event_type=event.type, source=event.source, signer=signer)
    event_data_validate(event_type=event.type, data=event.data, version=event.version)
    return event


def queue_prefix() -> str:
    return f"{settings.QUEUE_PREFIX or ''}{SERVICE}.order-status."


# Put in a stream's inbox when it should read its order whatever it heard.
WAKE = "wake"


class OrderEventHub:
    """The streams of one worker by order id; used on the event loop only."""

    def __init__(self) -> None:
        self._streams: dict[str, set[asyncio.Queue[Any]]] = {}

    def subscribe(self, order_id: str) -> asyncio.Queue[Any]:
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._streams.setdefault(order_id, set()).add(inbox)
        return inbox

    def unsubscribe(self, order_id: str, inbox: asyncio.Queue[Any]) -> None:
        streams = self._streams.get(order_id)
        if streams is not None:
            streams.discard(inbox)
            if not streams:
                del self._streams[order_id]

    def publish(self, event: Event) -> int:
        """Give the event to every stream of its order; returns how many got it."""
        streams = self._streams.get(event.subject, ())
        for inbox in streams:
            inbox.put_nowait(event)
        return len(streams)

    def wake_all(self) -> None:
        """Wake every stream (the subscription went down: they read their order now)."""
        for streams in self._streams.values():
            for inbox in streams:
                inbox.put_nowait(WAKE)

    @property
    def stream_count(self) -> int:
        return sum(len(streams) for streams in self._streams.values())


class OrderEventFeed:
    """One worker's subscription to order events: a thread feeding ``hub`` on ``loop``."""

    def __init__(
        self,
        *,
        hub: OrderEventHub,
        loop: asyncio.AbstractEventLoop,
        broker_url: str | None = None,
        transport_options: Mapping[str, Any] | None = None,
    ) -> None:
        order_event_types_register()
        self.hub = hub
        self.loop = loop
        self.broker_url = broker_url or settings.CELERY_BROKER_URL
        self.transport_options = dict(
            settings.CELERY_BROKER_TRANSPORT_OPTIONS
            if transport_options is None
            else transport_options
        )
        self.queue_name = (
            f"{queue_prefix()}{socket.gethostname()}-{os.getpid()}-" + (uuid.uuid4().hex[:8])
        )
        # Set on the loop while the queue is bound and consumed; streams poll meanwhile.
        self.ready = asyncio.Event()
        self.received = 0
        # True once a connection failed, until one succeeds: streams then read at once
        # instead of waiting for a subscription that is not coming soon.
        self.failing = False
        self.dead_lettered = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_file: Any = None
        self._backoff = Backoff(initial=0.2, maximum=settings.EVENT_RECONNECT_MAX_SECONDS)

    @property
    def embedded(self) -> bool:
        return self.broker_url.startswith("filesystem:")

    def start(self) -> None:
        """Start consuming (once); returns at once, ``ready`` tells when events flow."""
        if self._thread is not None:
            return
        if self.embedded:
            self._lock_file = self._subscriber_lock()
        self._thread = threading.Thread(target=self._run, name="order-event-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                self._lock_path(self.queue_name).unlink()
            self._lock_file.close()
            self._lock_file = None

    # --- the thread -----------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            connection = broker_connection(
                self.broker_url, transport_options=self.transport_options
            )
            try:
                self._session(connection)
            except broker_errors(connection) as error:
                self.failing = True
                delay = self._backoff.next()
                logger.warning(
                    "order event feed: broker %s: %r; streams poll orders meanwhile, "
                    "reconnecting in %.1fs",
                    safe_url(self.broker_url),
                    error,
                    delay,
                )
                self._stop.wait(delay)
            except Exception:
                self.failing = True
                # Never let the thread die: streams would poll forever without saying why.
                logger.exception("order event feed failed; starting again")
                self._stop.wait(self._backoff.next())
            finally:
                self._signal(self.ready.clear)
                self._signal(self.hub.wake_all)  # to polling, and a read for what was missed
                with contextlib.suppress(Exception):  # already broken: we only let go of it
                    connection.release()

    def _session(self, connection: Connection) -> None:
        broker_connect(connection)
        rabbitmq = connection_is_rabbitmq(connection)
        channel = connection.channel()
        dead_letter_queue(SERVICE, rabbitmq=rabbitmq)(channel).declare()
        if self.embedded:
            self._remove_dead_subscribers(channel)
        queue = self._queue(rabbitmq=rabbitmq)
        dead_letters = Producer(connection.channel())
        consumer = Consumer(
            channel,
            queues=[queue],
            on_message=lambda message: self._on_message(message, dead_letters),
            no_ack=True,
        )
        try:
            with consumer:  # declares the queue and its binding, then consumes
                self._backoff.reset()
                self.failing = False
                self._signal(self.ready.set)
                logger.info(
                    "order event feed on %s: queue %s bound to %s",
                    safe_url(self.broker_url),
                    self.queue_name,
                    BINDING,
                )
                while not self._stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        connection.drain_events(timeout=1.0)
        finally:
            if self.embedded and self._stop.is_set():
                with contextlib.suppress(Exception):
                    channel.queue_delete(self.queue_name)

    def _queue(self, *, rabbitmq: bool) -> Queue:
        if rabbitmq:
            return Queue(
                self.queue_name,
                bindings=[binding(events_exchange(), routing_key=BINDING)],
                durable=False,
                exclusive=True,
                auto_delete=True,
                queue_arguments={
                    QUEUE_TYPE_ARGUMENT: CLASSIC,
                    "x-max-length": MAX_QUEUED,
                    "x-overflow": "drop-head",
                },
            )
        return Queue(
            self.queue_name,
            bindings=[binding(events_exchange(), routing_key=BINDING)],
            durable=False,
            auto_delete=False,
        )

    def _on_message(self, message: Message, dead_letters: Producer) -> None:
        try:
            event = order_event_read(message.body, message.headers)
        except MessageRefused as error:
            self._dead_letter(message, dead_letters, f"refused event: {error}")
            return
        except EventError as error:
            self._dead_letter(
                message, dead_letters, f"invalid event: {type(error).__name__}: {error}"
            )
            return
        self.received += 1
        self._signal(self.hub.publish, event)

    def _dead_letter(self, message: Message, producer: Producer, reason: str) -> None:
        delivery = message.delivery_info or {}
        logger.error("order event dead-lettered to %s: %s", dead_letter_queue_name(SERVICE), reason)
        dead_letter_publish(
            producer,
            message.body if isinstance(message.body, bytes) else str(message.body),
            queue=dead_letter_queue_name(SERVICE),
            reason=reason,
            attempts=0,
            routing_key=delivery.get("routing_key", ""),
            exchange=delivery.get("exchange", ""),
            headers=message.headers or {},
            content_type=message.content_type,
            content_encoding=message.content_encoding,
        )
        self.dead_lettered += 1

    def _signal(self, callback: Any, *args: Any) -> None:
        """Run ``callback`` on the event loop (this is the feed's thread)."""
        with contextlib.suppress(RuntimeError):  # the loop closed: the worker is stopping
            self.loop.call_soon_threadsafe(callback, *args)

    # --- the embedded broker's leftovers ----------------------------------------

    def _subscribers_folder(self) -> Path:
        folder = Path(self.transport_options["data_folder_in"]).resolve().parent / "subscribers"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _lock_path(self, queue: str) -> Path:
        return self._subscribers_folder() / f"{queue}.lock"

    def _subscriber_lock(self) -> Any:
        """This worker's proof of life, held until it stops or dies."""
        handle = self._lock_path(self.queue_name).open("w")
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        return handle

    def _remove_dead_subscribers(self, channel: Any) -> None:
        """Delete the queues (and bindings) of gateway workers that died without doing so."""
        exchange = events_exchange()
        exchange(channel).declare()
        prefix = queue_prefix()
        for row in channel.get_table(exchange.name):
            queue = row.queue
            if not queue.startswith(prefix) or queue == self.queue_name:
                continue
            if self._subscriber_alive(queue):
                continue
            # Bound in this process's state first, so that queue_delete knows the binding.
            channel.queue_bind(queue, exchange=exchange.name, routing_key=row.routing_key)
            channel.queue_delete(queue)
            with contextlib.suppress(OSError):
                self._lock_path(queue).unlink()
            logger.info("order event feed: removed %s, left by a worker that died", queue)

    def _subscriber_alive(self, queue: str) -> bool:
        try:
            handle = self._lock_path(queue).open("r")
        except FileNotFoundError:
            return False
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
