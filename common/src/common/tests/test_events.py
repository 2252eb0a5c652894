"""The event backbone: envelope, outbox, relay, idempotent consumers and the DLQ.

Real PostgreSQL and RabbitMQ; most broker tests run on the filesystem
transport as well, to prove the same code works on the embedded broker.
Every test gets its own service name and exchange, so test runs sharing a
RabbitMQ never see each other's messages, and deletes what it declared.
"""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import environ
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection, transaction
from django.utils import timezone
from kombu import Connection, Exchange, Producer, Queue
from kombu.message import Message
from opentelemetry import trace

from common.events import (
    Event,
    InvalidEnvelope,
    InvalidEventData,
    OutboxError,
    UnknownEventType,
    event_parse,
    event_record,
    register_event_type,
)
from common.events.broker import dead_letter_queue_name, events_exchange, queue_name
from common.events.consumer import EventConsumer, Outcome, topic_matches
from common.events.dlq import DeadLetterQueue
from common.events.envelope import event_schema_uri
from common.events.models import InboxMessage, OutboxMessage
from common.events.outbox import outbox_model, outbox_notify_statement
from common.events.publish_on_commit import publish_on_commit_reset
from common.events.relay import CLAIM_SETTINGS, OutboxRelay, PublishFailed
from common.filesystem_broker import transport_for
from common.settings import broker_config
from common.signing import event_payload, event_verify, private_key_load, signature_headers
from common.testing.signing import signing_identity
from common.testing.tracing import traceparent_of
from common.tests import event_handlers
from common.tracing import tracer

TEST_BROKER_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")


@dataclass
class Broker:
    """One test's broker: its URL, transport options, service name and exchange."""

    kind: str
    url: str
    options: dict[str, Any]
    service: str
    exchange: str
    signing: Path
    declared_queues: list[str] = field(default_factory=list)

    def connection(self) -> Connection:
        return Connection(
            self.url, transport=transport_for(self.url), transport_options=self.options
        )

    def observe(self) -> Observer:
        """A queue bound to every routing key of the test exchange."""
        name = f"{self.service}.observer"
        self.declared_queues.append(name)
        with self.connection() as connection:
            Queue(name, Exchange(self.exchange, type="topic", durable=True), routing_key="#")(
                connection.default_channel
            ).declare()
        return Observer(self, name)

    def declare_consumer_queues(self) -> None:
        with self.connection() as connection:
            EventConsumer().declare(connection)

    def publish(
        self,
        body: bytes | str,
        *,
        routing_key: str,
        message_id: str | None = None,
        to_queue: bool = False,
        headers: dict[str, Any] | None = None,
    ) -> None:
        """A message as a producer would send it: to the exchange, or straight to our queue.

        Signed as the producer the test envelopes name (``elsewhere``) signs, unless
        ``headers`` says otherwise."""
        properties = {"message_id": message_id} if message_id else {}
        raw = body.encode() if isinstance(body, str) else body
        if headers is None:
            headers = event_sign_as(raw, PRODUCER, self.signing)
        with self.connection() as connection:
            channel = connection.default_channel
            exchange = Exchange(self.exchange, type="topic", durable=True)(channel)
            exchange.declare()
            Producer(channel).publish(
                raw,
                exchange="" if to_queue else self.exchange,
                routing_key=queue_name(self.service) if to_queue else routing_key,
                content_type="application/json",
                content_encoding="utf-8",
                headers=headers,
                **properties,
            )

    def queue_size(self, name: str) -> int:
        with self.connection() as connection:
            # Passive: it only reads, whatever the queue's type (quorum on RabbitMQ).
            _, count, _ = connection.default_channel.queue_declare(queue=name, passive=True)
            return int(count)

    def cleanup(self) -> None:
        if self.kind != "rabbitmq":
            return  # the tmp folder goes away with the test
        names = [queue_name(self.service), dead_letter_queue_name(self.service)]
        with self.connection() as connection:
            channel = connection.default_channel
            for name in [*names, *self.declared_queues]:
                channel.queue_delete(name)
            channel.exchange_delete(self.exchange)


class Observer:
    def __init__(self, broker: Broker, name: str) -> None:
        self.broker = broker
        self.name = name

    def messages(self, count: int, timeout: float = 5.0) -> list[Message]:
        """Wait for ``count`` messages (no more are expected), then a moment for extras."""
        found: list[Message] = []
        deadline = time.monotonic() + timeout
        with self.broker.connection() as connection:
            queue = Queue(self.name, durable=True)(connection.default_channel)
            while time.monotonic() < deadline:
                message = queue.get(no_ack=True)
                if message is not None:
                    found.append(message)
                    continue
                if len(found) >= count:
                    break
                time.sleep(0.01)
        return found


def filesystem_broker(monkeypatch: pytest.MonkeyPatch, folder: Any) -> tuple[str, dict[str, Any]]:
    """The settings' own filesystem configuration, pointed at a test folder."""
    monkeypatch.setenv("BROKER_URL", "filesystem://")
    monkeypatch.setenv("BROKER_FOLDER", str(folder))
    url, _, options = broker_config(env=environ.Env(), var_dir=folder)
    return url, options


def make_broker(kind: str, settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Broker:
    tag = uuid.uuid4().hex[:10]
    if kind == "rabbitmq":
        url, options = TEST_BROKER_URL, {}
    else:
        url, options = filesystem_broker(monkeypatch, tmp_path / "broker")
    settings.SERVICE_NAME = f"t{tag}"
    settings.EVENT_EXCHANGE = f"events-test-{tag}"
    # The test's service signs what its relay publishes; the test envelopes' producer
    # (PRODUCER) signs what the tests publish; the consumer believes both.
    signing = tmp_path / "signing"
    signing_identity(settings, signing, PRODUCER)
    signing_identity(settings, signing, settings.SERVICE_NAME)
    settings.EVENT_SOURCES = {"*": [PRODUCER, settings.SERVICE_NAME]}
    broker = Broker(
        kind=kind,
        url=url,
        options=options,
        service=settings.SERVICE_NAME,
        exchange=events_exchange().name,  # with QUEUE_PREFIX, if the run sets one
        signing=signing,
    )
    settings.CELERY_BROKER_URL = url
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = options
    settings.EVENT_HANDLERS = dict(event_handlers.HANDLERS)
    settings.EVENT_MAX_ATTEMPTS = 3
    settings.EVENT_RETRY_BACKOFF_SECONDS = 0.01
    settings.EVENT_RETRY_BACKOFF_MAX_SECONDS = 0.05
    settings.EVENT_RECONNECT_MAX_SECONDS = 0.2
    event_handlers.calls.clear()
    event_handlers.flaky_state["failures_left"] = 0
    event_handlers.boom_state["fixed"] = False
    return broker


@pytest.fixture(params=["rabbitmq", "filesystem"])
def broker(request, settings, monkeypatch, tmp_path) -> Iterator[Broker]:
    made = make_broker(request.param, settings, monkeypatch, tmp_path)
    yield made
    made.cleanup()


@pytest.fixture
def rabbitmq(settings, monkeypatch, tmp_path) -> Iterator[Broker]:
    made = make_broker("rabbitmq", settings, monkeypatch, tmp_path)
    yield made
    made.cleanup()


def record(event_type: str = "test.ping", subject: str = "s-1", **data: Any) -> Event:
    with transaction.atomic():
        return event_record(type=event_type, subject=subject, data=data or {"n": 1})


def relay_all(**options: Any) -> int:
    relay = OutboxRelay(**options)
    try:
        return relay.relay_pending()
    finally:
        relay.close()


def consume(**options: Any) -> EventConsumer:
    consumer = EventConsumer(**options)
    consumer.run(until_idle=0.2)  # everything is queued before it starts
    return consumer


PRODUCER = "elsewhere"  # the service the test envelopes come from


def event_sign_as(body: bytes, signer: str, folder: Path) -> dict[str, str]:
    """The headers ``signer``'s relay would send ``body`` with (its key in ``folder``)."""
    return signature_headers(
        signer=signer,
        payload=event_payload(body=body, signer=signer),
        private_key=private_key_load(folder / f"{signer}.pem"),
    )


def envelope(**overrides: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": "test.ping",
        "source": PRODUCER,
        "time": "2026-11-22T10:00:00+00:00",
        "subject": "s-1",
        "trace": {},
        "data": {"n": 3},
        **overrides,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- envelope and schemas -----------------------------------------------------------


def test_an_envelope_survives_the_wire_unchanged():
    event = Event(**envelope())
    assert event_parse(event.to_json()) == event


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (json.dumps([1, 2]), "not an object"),
        (json.dumps({"id": str(uuid.uuid4()), "type": "test.ping"}), "fields missing"),
        (json.dumps(envelope(id="nope")), "not a UUID"),
        (json.dumps(envelope(type="Test-Ping")), "is not like"),
        (json.dumps(envelope(time="yesterday")), "not ISO-8601"),
        (json.dumps(envelope(time="2026-11-22T10:00:00")), "no time zone"),
        (json.dumps(envelope(data=[])), "data must be an object"),
    ],
)
def test_a_malformed_envelope_is_refused_with_the_reason(body, reason):
    with pytest.raises(InvalidEnvelope, match=reason):
        event_parse(body)


def test_data_is_checked_against_its_type_schema():
    with pytest.raises(InvalidEventData, match=r"data\.n: -1 is less than the minimum"):
        event_parse(json.dumps(envelope(data={"n": -1})))
    with pytest.raises(UnknownEventType):
        event_parse(json.dumps(envelope(type="test.never_registered")))


def test_a_type_cannot_be_registered_with_two_different_schemas():
    register_event_type("test.ping", dict(event_handlers.PING_SCHEMA))
    with pytest.raises(ValueError, match="already registered differently"):
        register_event_type("test.ping", {"type": "object"})
    with pytest.raises(ValueError, match="not like"):
        register_event_type("ping", {"type": "object"})


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("order.approved", "order.approved", True),
        ("order.*", "order.approved", True),
        ("order.*", "order.approved.late", False),
        ("order.#", "order", True),
        ("order.#", "order.approved.late", True),
        ("#", "anything.at.all", True),
        ("*.approved", "order.approved", True),
        ("*.approved", "order.rejected", False),
    ],
)
def test_handler_patterns_match_like_amqp_topics(pattern, key, matches):
    assert topic_matches(pattern, key) is matches


# --- recording ----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_envelope_says_who_what_when_and_carries_the_trace(settings, spans):
    settings.SERVICE_NAME = "catalog"
    with tracer.start_as_current_span("work"):
        event = record(subject="p-7", n=2)

    row = OutboxMessage.objects.get(id=event.id)
    assert row.envelope == event.to_dict()
    assert (event.source, event.subject, event.type) == ("catalog", "p-7", "test.ping")
    assert event.trace == {"traceparent": traceparent_of(spans.named("work"))}
    assert event.time.endswith("+00:00")
    assert row.published_at is None


@pytest.mark.django_db
def test_an_event_recorded_outside_any_span_carries_no_trace():
    assert record().trace == {}


@pytest.mark.django_db
def test_a_producer_cannot_record_data_that_breaks_the_schema():
    with pytest.raises(InvalidEventData):
        record(n="three")
    with pytest.raises(UnknownEventType):
        record("test.never_registered")
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_recording_outside_a_transaction_is_refused():
    with pytest.raises(OutboxError, match=r"transaction\.atomic"):
        event_record(type="test.ping", subject="s-1", data={"n": 1})
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db
def test_an_event_recorded_in_a_rolled_back_transaction_leaves_nothing(rabbitmq):
    observer = rabbitmq.observe()

    def change_that_fails() -> None:
        with transaction.atomic():
            event_record(type="test.ping", subject="s-1", data={"n": 1})
            raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError):
        change_that_fails()

    assert not OutboxMessage.objects.exists()
    assert relay_all() == 0
    assert observer.messages(0, timeout=0.2) == []


# --- the relay ----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_relay_publishes_committed_rows_in_order_and_marks_them(broker):
    observer = broker.observe()
    events = [record(subject=f"s-{n}", n=n) for n in range(3)]

    assert relay_all() == 3

    received = observer.messages(3)
    assert [m.properties["message_id"] for m in received] == [e.id for e in events]
    assert [json.loads(m.body) for m in received] == [e.to_dict() for e in events]
    assert {m.delivery_info["routing_key"] for m in received} == {"test.ping"}
    assert {m.properties["delivery_mode"] for m in received} == {2}
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()
    assert relay_all() == 0  # marked: nothing goes out twice


def _plan_nodes(plan: dict[str, Any]) -> list[str]:
    return [plan["Node Type"], *(n for child in plan.get("Plans", []) for n in _plan_nodes(child))]


@pytest.mark.django_db
@pytest.mark.parametrize("sweep", [False, True], ids=["every row", "the sweep's"])
def test_the_claim_reads_the_unpublished_rows_by_index_scan_not_every_published_one(sweep):
    # A table never analyzed (a fresh deployment, or autovacuum off) where 3,000 rows
    # were published and 1 was not: the published ones are still in the index of
    # unpublished rows (until VACUUM). A bitmap scan would reread every one of them; an
    # index scan marks them dead for the claims after it.
    now = timezone.now()
    rows = OutboxMessage.objects.bulk_create(
        OutboxMessage(
            id=str(uuid.uuid4()), type="test.ping", subject="s", envelope={}, created_at=now
        )
        for _ in range(3_001)
    )
    OutboxMessage.objects.exclude(pk=rows[-1].pk).update(published_at=now)
    relay = OutboxRelay()
    claim = relay._claim_sql(sweep=sweep)
    relay.close()

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(CLAIM_SETTINGS)
        cursor.execute("EXPLAIN (FORMAT JSON) " + claim, [now, *([now] if sweep else []), 100])
        nodes = _plan_nodes(cursor.fetchone()[0][0]["Plan"])
        transaction.set_rollback(True)  # so that the SET LOCALs end here

    assert "Index Scan" in nodes
    assert not [node for node in nodes if node.startswith("Bitmap")]


@pytest.mark.django_db
def test_the_relay_works_in_batches(rabbitmq):
    observer = rabbitmq.observe()
    for n in range(5):
        record(n=n)

    relay = OutboxRelay(batch_size=2)
    try:
        assert relay.relay_once() == 2
        assert relay.relay_pending() == 3
    finally:
        relay.close()
    assert [json.loads(m.body)["data"]["n"] for m in observer.messages(5)] == [0, 1, 2, 3, 4]


@pytest.mark.django_db
def test_rows_wait_while_the_broker_is_unreachable_and_go_out_once_it_is_back(rabbitmq):
    observer = rabbitmq.observe()
    event = record()
    down = OutboxRelay(broker_url=f"amqp://guest:guest@127.0.0.1:{free_port()}//")

    with pytest.raises(PublishFailed, match="unreachable"):
        down.relay_once()

    assert OutboxMessage.objects.get(id=event.id).published_at is None
    assert relay_all() == 1
    assert [m.properties["message_id"] for m in observer.messages(1)] == [event.id]


@pytest.mark.django_db
def test_a_failed_publish_stops_the_batch_so_later_rows_never_overtake(rabbitmq, monkeypatch):
    observer = rabbitmq.observe()
    first, second, third = (record(n=n) for n in range(3))
    publish = OutboxRelay._publish

    def fail_on_second(relay, producer, row):
        if str(row.id) == second.id:
            raise ConnectionError("broker went away")
        publish(relay, producer, row)

    monkeypatch.setattr(OutboxRelay, "_publish", fail_on_second)
    with pytest.raises(PublishFailed, match="broker went away"):
        relay_all()

    rows = {str(row.id): row for row in OutboxMessage.objects.all()}
    assert rows[first.id].published_at is not None
    assert (rows[second.id].published_at, rows[second.id].attempts) == (None, 1)
    assert "broker went away" in rows[second.id].last_error
    assert rows[third.id].published_at is None
    monkeypatch.setattr(OutboxRelay, "_publish", publish)
    assert relay_all() == 2
    assert [m.properties["message_id"] for m in observer.messages(3)] == [
        first.id,
        second.id,
        third.id,
    ]


@pytest.mark.django_db(transaction=True)
def test_a_commit_wakes_the_relay_long_before_its_poll_interval(rabbitmq):
    observer = rabbitmq.observe()
    relay = OutboxRelay(poll_seconds=5.0)
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    try:
        assert relay.idle.wait(5), "the relay never got to wait for work"
        started = time.monotonic()
        event = record()
        received = observer.messages(1, timeout=3)
        elapsed = time.monotonic() - started
    finally:
        relay.request_stop()
        thread.join(10)

    assert [m.properties["message_id"] for m in received] == [event.id]
    assert elapsed < 1.0, f"published after {elapsed:.2f}s: NOTIFY did not wake the relay"
    assert OutboxMessage.objects.get(id=event.id).published_at is not None
    assert not thread.is_alive()


# --- publishing on commit -------------------------------------------------------------


@pytest.fixture
def on_commit(settings) -> Iterator[None]:
    """Events published by the process that records them, once it commits."""
    settings.OUTBOX_PUBLISH_ON_COMMIT = True
    publish_on_commit_reset()
    yield
    publish_on_commit_reset()


@pytest.mark.django_db
def test_a_writer_publishes_its_events_once_it_commits_and_marks_them(
    broker, on_commit, settings, django_capture_on_commit_callbacks
):
    observer = broker.observe()
    with django_capture_on_commit_callbacks() as waiting:
        events = [record(subject=f"s-{n}", n=n) for n in range(3)]
        assert observer.messages(0, timeout=0.2) == []  # nothing before the commit
    for publish in waiting:
        publish()  # what the commit runs

    received = observer.messages(3)
    assert [m.properties["message_id"] for m in received] == [e.id for e in events]
    assert [json.loads(m.body) for m in received] == [e.to_dict() for e in events]
    assert {m.properties["delivery_mode"] for m in received} == {2}
    assert {m.headers["x-signer"] for m in received} == {settings.SERVICE_NAME}
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()
    settings.OUTBOX_SWEEP_AFTER_SECONDS = 0
    assert relay_all() == 0  # marked: the relay's sweep sends nothing twice


@pytest.mark.django_db
def test_a_rolled_back_transaction_publishes_nothing_on_commit(
    rabbitmq, on_commit, django_capture_on_commit_callbacks
):
    observer = rabbitmq.observe()

    def change_that_fails() -> None:
        with transaction.atomic():
            event_record(type="test.ping", subject="s-1", data={"n": 1})
            raise RuntimeError("the change fails")

    with (
        django_capture_on_commit_callbacks(execute=True) as waiting,
        pytest.raises(RuntimeError),
    ):
        change_that_fails()

    assert waiting == []
    assert not OutboxMessage.objects.exists()
    assert observer.messages(0, timeout=0.2) == []


@pytest.mark.django_db
def test_what_a_writer_could_not_publish_the_relay_sweeps_once_it_is_old_enough(
    rabbitmq, on_commit, settings, django_capture_on_commit_callbacks, caplog
):
    observer = rabbitmq.observe()
    settings.CELERY_BROKER_URL = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    with django_capture_on_commit_callbacks(execute=True):
        event = record()  # committed; its publish fails (logged, never raised)
    assert "publishing on commit failed" in caplog.text
    assert OutboxMessage.objects.get(id=event.id).published_at is None

    settings.CELERY_BROKER_URL = rabbitmq.url
    with django_capture_on_commit_callbacks(execute=True):
        paused = record(subject="s-2")  # the broker failed a moment ago: left to the relay
    assert OutboxMessage.objects.get(id=paused.id).published_at is None

    settings.OUTBOX_SWEEP_AFTER_SECONDS = 3600
    assert relay_all() == 0  # too young: still its writer's to publish
    settings.OUTBOX_SWEEP_AFTER_SECONDS = 0
    assert relay_all() == 2
    received = observer.messages(2)
    assert [m.properties["message_id"] for m in received] == [event.id, paused.id]
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()


@pytest.mark.django_db
def test_with_publishing_on_commit_no_notify_goes_with_the_writes(on_commit, settings):
    assert outbox_notify_statement() is None
    settings.OUTBOX_PUBLISH_ON_COMMIT = False
    assert outbox_notify_statement() is not None


@pytest.mark.django_db(transaction=True)
def test_the_relay_loop_outlives_a_broker_outage(rabbitmq, settings):
    relay = OutboxRelay(broker_url=f"amqp://guest:guest@127.0.0.1:{free_port()}//")
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    try:
        event = record()
        time.sleep(0.5)  # several failed attempts with the 0.2 s backoff cap
        assert thread.is_alive()
        assert OutboxMessage.objects.get(id=event.id).published_at is None
    finally:
        relay.request_stop()
        thread.join(10)
    assert not thread.is_alive()
    assert relay_all() == 1


@pytest.mark.django_db
def test_outbox_relay_once_publishes_what_is_pending(broker):
    observer = broker.observe()
    event = record()
    out = io.StringIO()

    call_command("outbox_relay", "--once", stdout=out)

    assert "published 1 events" in out.getvalue()
    assert [m.properties["message_id"] for m in observer.messages(1)] == [event.id]


# --- consumers ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_recorded_event_reaches_its_handler_through_relay_and_queue(broker):
    broker.declare_consumer_queues()
    event = record(n=5)
    assert relay_all() == 1

    consumer = consume()

    assert event_handlers.calls == [("ping", event.id)]
    assert InboxMessage.objects.filter(message_id=event.id, consumer=consumer.queue_name).exists()
    pong = OutboxMessage.objects.get(type="test.pong")
    assert pong.envelope["data"] == {"ping": event.id}


@pytest.mark.django_db
def test_publishing_and_handling_are_spans_of_the_trace_that_recorded_the_event(rabbitmq, spans):
    rabbitmq.declare_consumer_queues()
    with tracer.start_as_current_span("work"):
        event = record(subject="p-7", n=5)
    relay_all()

    consume()

    work = spans.named("work")
    published, handled = spans.named("test.ping publish"), spans.named("test.ping process")
    assert published.kind == trace.SpanKind.PRODUCER
    assert published.parent.span_id == work.context.span_id
    assert handled.kind == trace.SpanKind.CONSUMER
    assert handled.parent.span_id == work.context.span_id  # the envelope's context
    assert [link.context.span_id for link in handled.links] == [published.context.span_id]
    assert handled.attributes["messaging.message.id"] == event.id
    assert handled.attributes["event.subject"] == "p-7"
    assert handled.attributes["event.outcome"] == "handled"
    # what the handler recorded continues the trace from the CONSUMER span
    pong = OutboxMessage.objects.get(type="test.pong")
    assert pong.envelope["trace"] == {"traceparent": traceparent_of(handled)}


@pytest.mark.django_db
def test_handler_patterns_may_use_topic_wildcards(broker, settings):
    settings.EVENT_HANDLERS = {"test.*": "common.tests.event_handlers.note"}
    broker.declare_consumer_queues()
    body = envelope(type="test.unhandled", data={})
    broker.publish(json.dumps(body), routing_key="test.unhandled", message_id=body["id"])

    consume()

    assert event_handlers.calls == [("note", body["id"])]


@pytest.mark.django_db
def test_an_event_delivered_twice_is_handled_once(broker):
    broker.declare_consumer_queues()
    body = json.dumps(envelope())
    event_id = json.loads(body)["id"]
    for _ in range(2):
        broker.publish(body, routing_key="test.ping", message_id=event_id)

    consumer = consume()

    assert consumer.processed == 2  # both acknowledged
    assert event_handlers.calls == [("ping", event_id)]
    assert OutboxMessage.objects.filter(type="test.pong", subject=event_id).count() == 1
    assert InboxMessage.objects.filter(message_id=event_id).count() == 1
    assert broker.queue_size(queue_name(broker.service)) == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (json.dumps({"id": str(uuid.uuid4()), "type": "test.ping"}), "fields missing"),
        (json.dumps(envelope(data={"n": "three"})), "is not of type 'integer'"),
        (json.dumps(envelope(type="test.never_registered")), "no schema is registered"),
        (
            json.dumps(envelope(dataschema=event_schema_uri("test.ping", 2))),
            "UnknownEventVersion: test.ping v2 is not known here (known: v1)",
        ),
        (
            json.dumps(envelope(dataschema=event_schema_uri("test.pong", 1))),
            "is not the schema of a 'test.ping' version",
        ),
    ],
    ids=["bad-json", "missing-fields", "schema", "unknown-type", "unknown-version", "other-schema"],
)
@pytest.mark.django_db
def test_a_malformed_message_is_dead_lettered_with_the_reason(broker, body, reason):
    broker.declare_consumer_queues()
    broker.publish(body, routing_key="test.ping", to_queue=True)

    consume()

    assert event_handlers.calls == []
    [dead] = DeadLetterQueue().list()
    assert reason in dead.reason
    assert dead.attempts == 0
    assert broker.queue_size(queue_name(broker.service)) == 0


def forged(broker: Broker, settings: Any, forgery: str) -> tuple[bytes, dict[str, str]]:
    """A test.ping event and headers that must not be believed, as ``forgery`` says."""
    body = json.dumps(envelope()).encode()
    if forgery == "unsigned":
        return body, {}
    if forgery == "bad signature":  # the consumer's own key, claiming to be the producer
        mine = event_sign_as(body, broker.service, broker.signing)
        return body, {
            **event_sign_as(body, PRODUCER, broker.signing),
            "x-signature": mine["x-signature"],
        }
    if forgery == "not allowed":  # signed, by a service that may not produce test.*
        signing_identity(settings, broker.signing, "intruder")
        body = json.dumps(envelope(source="intruder")).encode()
        return body, event_sign_as(body, "intruder", broker.signing)
    if forgery == "source is someone else":  # the test's service signs "elsewhere"'s event
        return body, event_sign_as(body, broker.service, broker.signing)
    if forgery == "another subject":  # a genuine signature, replayed on another event
        genuine = json.dumps(envelope(subject="order-a")).encode()
        return json.dumps(envelope(subject="order-b")).encode(), event_sign_as(
            genuine, PRODUCER, broker.signing
        )
    raise AssertionError(forgery)


@pytest.mark.parametrize(
    ("forgery", "reason"),
    [
        ("unsigned", "unsigned: no x-signer header"),
        ("bad signature", "bad signature"),
        ("not allowed", "'intruder' may not send 'test.ping'"),
        ("source is someone else", "envelope source 'elsewhere' but signed by"),
        ("another subject", "bad signature"),
    ],
)
@pytest.mark.django_db
def test_a_forged_event_is_dead_lettered_with_the_reason_and_never_handled(
    broker, settings, forgery, reason
):
    settings.EVENT_SOURCES = {"test.*": [PRODUCER]}
    broker.declare_consumer_queues()
    body, headers = forged(broker, settings, forgery)
    broker.publish(body, routing_key="test.ping", headers=headers)

    consume()

    assert event_handlers.calls == []
    assert InboxMessage.objects.count() == 0
    [dead] = DeadLetterQueue().list()
    assert reason in dead.reason
    assert dead.type == "test.ping"
    assert broker.queue_size(queue_name(broker.service)) == 0


@pytest.mark.django_db
def test_the_relay_signs_every_event_as_its_service(broker):
    observer = broker.observe()
    event = record()

    relay_all()

    [message] = observer.messages(1)
    body = message.body if isinstance(message.body, bytes) else message.body.encode()
    signer = event_verify(body=body, headers=message.headers)
    assert signer == broker.service == event.source


@pytest.mark.django_db
def test_a_failing_handler_is_retried_then_dead_lettered(broker):
    broker.declare_consumer_queues()
    body = envelope(type="test.boom", data={})
    broker.publish(json.dumps(body), routing_key="test.boom", message_id=body["id"])

    consume()

    assert event_handlers.calls == [("boom", body["id"])] * 3  # EVENT_MAX_ATTEMPTS
    [dead] = DeadLetterQueue().list()
    assert (dead.id, dead.type, dead.attempts, dead.routing_key) == (
        body["id"],
        "test.boom",
        3,
        "test.boom",
    )
    assert "RuntimeError: boom" in dead.reason
    assert not InboxMessage.objects.exists()  # every failed attempt rolled back


@pytest.mark.django_db
def test_a_handler_that_fails_briefly_succeeds_on_a_retry(broker):
    event_handlers.flaky_state["failures_left"] = 2
    broker.declare_consumer_queues()
    body = envelope(type="test.flaky", data={})
    broker.publish(json.dumps(body), routing_key="test.flaky", message_id=body["id"])

    consume()

    assert len(event_handlers.calls) == 3
    assert InboxMessage.objects.filter(message_id=body["id"]).exists()
    assert DeadLetterQueue().list() == []


@pytest.mark.django_db
def test_an_event_no_handler_wants_is_acknowledged_without_effect(rabbitmq):
    rabbitmq.declare_consumer_queues()
    body = envelope(type="test.unhandled", data={})
    rabbitmq.publish(json.dumps(body), routing_key="x", to_queue=True)

    consumer = EventConsumer()
    consumer.run(until_idle=0.3)

    assert consumer.processed == 1
    assert event_handlers.calls == []
    assert DeadLetterQueue().list() == []


def scripted_apply(*outcomes: BaseException | None):
    """A stand-in for EventConsumer._apply: raises or succeeds in the given order."""
    calls: list[None] = []

    def apply(event: Event, handlers: Any) -> bool:
        outcome = outcomes[min(len(calls), len(outcomes) - 1)]
        calls.append(None)
        if outcome is not None:
            raise outcome
        return True

    apply.calls = calls  # type: ignore[attr-defined]
    return apply


def signed_body(settings: Any, tmp_path: Path) -> tuple[bytes, dict[str, str]]:
    """A test envelope and the headers its producer signs it with (no broker involved)."""
    signing_identity(settings, tmp_path / "signing", PRODUCER)
    settings.EVENT_SOURCES = {"test.*": [PRODUCER]}
    body = json.dumps(envelope()).encode()
    return body, event_sign_as(body, PRODUCER, tmp_path / "signing")


def test_a_stop_request_mid_retry_leaves_the_message_unacknowledged(settings, tmp_path):
    settings.EVENT_HANDLERS = dict(event_handlers.HANDLERS)
    settings.EVENT_RETRY_BACKOFF_SECONDS = 10
    consumer = EventConsumer()
    consumer._apply = scripted_apply(RuntimeError("handler fails"))
    consumer._database_down = lambda: False
    threading.Timer(0.05, consumer.request_stop).start()
    body, headers = signed_body(settings, tmp_path)

    assert consumer.process(body, headers=headers) is Outcome.STOPPED


def test_a_database_outage_does_not_use_up_the_handler_attempts(settings, tmp_path):
    settings.EVENT_HANDLERS = dict(event_handlers.HANDLERS)
    settings.EVENT_MAX_ATTEMPTS = 1
    settings.EVENT_RECONNECT_MAX_SECONDS = 0.01
    down = iter([True, True, False])
    consumer = EventConsumer()
    consumer._apply = scripted_apply(OperationalError("gone"), OperationalError("gone"), None)
    consumer._database_down = lambda: next(down)
    body, headers = signed_body(settings, tmp_path)

    assert consumer.process(body, headers=headers) is Outcome.HANDLED
    assert len(consumer._apply.calls) == 3


@pytest.mark.django_db
def test_consume_events_drains_the_queue(broker):
    out = io.StringIO()
    call_command("consume_events", "--setup-only", stdout=out)
    body = envelope()
    broker.publish(json.dumps(body), routing_key="test.ping", message_id=body["id"])

    call_command("consume_events", "--drain", "--idle", "0.3", stdout=out)

    assert "handled 1 messages" in out.getvalue()
    assert event_handlers.calls == [("ping", body["id"])]


# --- the dead-letter queue ----------------------------------------------------------


def dlq(*args: str) -> str:
    out = io.StringIO()
    call_command("dlq", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_dlq_lists_replays_and_purges(broker):
    broker.declare_consumer_queues()
    boom = envelope(type="test.boom", data={})
    broker.publish(json.dumps(boom), routing_key="test.boom", message_id=boom["id"])
    broker.publish(b"{not json", routing_key="test.ping", to_queue=True)
    consume()

    listing = dlq("list")
    assert "2 dead messages" in listing
    assert f"{boom['id']}  test.boom  attempts=3" in listing
    assert "not JSON" in listing
    [listed] = [
        json.loads(line) for line in dlq("list", "--json").splitlines() if boom["id"] in line
    ]
    assert listed["reason"].startswith("handler failed: RuntimeError: boom")

    event_handlers.boom_state["fixed"] = True
    assert "replayed 1 messages" in dlq("replay", "--id", boom["id"])
    consume()
    assert InboxMessage.objects.filter(message_id=boom["id"]).exists()

    [left] = DeadLetterQueue().list()
    assert left.id == "-"
    assert "not JSON" in left.reason
    assert "purged 1 messages" in dlq("purge", "--yes")
    assert DeadLetterQueue().size() == 0


@pytest.mark.django_db
def test_dlq_replay_through_the_exchange_keeps_the_routing_key(broker):
    broker.declare_consumer_queues()
    observer = broker.observe()
    boom = envelope(type="test.boom", data={})
    broker.publish(json.dumps(boom), routing_key="test.boom", message_id=boom["id"])
    consume()
    observer.messages(1)  # the original delivery

    assert "replayed 1 messages" in dlq("replay", "--via-exchange")

    [again] = observer.messages(1)
    assert again.delivery_info["routing_key"] == "test.boom"
    assert again.headers["x-replays"] == 1
    assert json.loads(again.body)["id"] == boom["id"]


@pytest.mark.django_db
def test_a_message_that_dies_again_after_a_replay_keeps_its_history(rabbitmq):
    rabbitmq.declare_consumer_queues()
    boom = envelope(type="test.boom", data={})
    rabbitmq.publish(json.dumps(boom), routing_key="test.boom", message_id=boom["id"])
    consume()

    dlq("replay")
    consume()

    [dead] = DeadLetterQueue().list()
    assert (dead.routing_key, dead.replays, dead.attempts) == ("test.boom", 1, 3)


@pytest.mark.django_db
def test_dlq_purge_asks_first(rabbitmq, monkeypatch):
    rabbitmq.declare_consumer_queues()
    rabbitmq.publish(b"{not json", routing_key="x", to_queue=True)
    consume()
    monkeypatch.setattr("builtins.input", lambda prompt: "n")

    with pytest.raises(CommandError, match="nothing purged"):
        dlq("purge")

    assert DeadLetterQueue().size() == 1


@pytest.mark.django_db
def test_dlq_replay_of_an_unknown_id_says_so(rabbitmq):
    rabbitmq.declare_consumer_queues()
    with pytest.raises(CommandError, match="not in the DLQ"):
        dlq("replay", "--id", "no-such-id")


@pytest.mark.django_db(transaction=True)
def test_event_record_refuses_when_the_relay_publishes_from_another_table(settings):
    settings.OUTBOX_MODEL = "common.InboxMessage"
    with transaction.atomic(), pytest.raises(OutboxError, match="never be published"):
        event_record(type="test.ping", subject="s", data={"n": 1})
    assert not OutboxMessage.objects.exists()


def test_outbox_model_must_be_an_outbox_record(settings):
    settings.OUTBOX_MODEL = "common.InboxMessage"
    with pytest.raises(ImproperlyConfigured, match="OutboxRecord"):
        outbox_model()
    settings.OUTBOX_MODEL = "common.OutboxMessage"
    assert outbox_model() is OutboxMessage
