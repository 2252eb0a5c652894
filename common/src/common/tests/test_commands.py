"""Commands between services: sent after commit, never failing the sender, twice on request.

Real PostgreSQL and RabbitMQ. Each test has its own queue prefix (so runs
sharing a broker never see each other's commands) and deletes its queue; a
"down" broker is a loopback port nobody listens on.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from celery import Celery, current_app
from celery.app.trace import build_tracer
from django.db import transaction
from kombu import Connection, Exchange, Queue
from opentelemetry import trace

from common.commands import broker_reachable, command_publish, command_send
from common.events.broker import dead_letter_queue_name
from common.events.dlq import DeadLetter, DeadLetterQueue
from common.signing import (
    HEADER_SIGNATURE,
    HEADER_SIGNER,
    MessageRefused,
    command_payload,
    command_verify,
    private_key_load,
    signature_headers,
)
from common.testing.tracing import traceparent_of
from common.tracing import tracer

TEST_BROKER_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")

pytestmark = pytest.mark.django_db


def closed_port_url() -> str:
    """A broker URL that refuses connections, as a stopped broker does."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"amqp://guest:guest@127.0.0.1:{port}//"


@pytest.fixture
def queue(settings: Any) -> Iterator[str]:
    """The queue ``command_send(service="svc", ...)`` reaches, deleted afterwards."""
    settings.QUEUE_PREFIX = f"t{uuid.uuid4().hex[:8]}-"
    name = settings.QUEUE_PREFIX + "svc"
    yield name
    with Connection(TEST_BROKER_URL, connect_timeout=5) as connection:
        connection.default_channel.queue_delete(name)


@contextmanager
def celery_on(broker_url: str) -> Iterator[Celery]:
    """Celery's current app on ``broker_url`` (the services' apps read it from settings)."""
    previous = current_app._get_current_object()
    app = Celery("commands-test", broker=broker_url, set_as_current=True)
    try:
        yield app
    finally:
        previous.set_current()
        app.close()


@pytest.fixture
def celery_up() -> Iterator[Celery]:
    with celery_on(TEST_BROKER_URL) as app:
        yield app


@pytest.fixture
def celery_down() -> Iterator[Celery]:
    with celery_on(closed_port_url()) as app:
        yield app


def received(
    queue: str, wait: float = 2.0, *, headers: list[dict] | None = None
) -> list[tuple[str, dict]]:
    """Every command waiting on ``queue``: (task name, kwargs), in order; taken off it.

    ``headers``, when given, receives each message's headers.
    """
    commands: list[tuple[str, dict]] = []
    deadline = time.monotonic() + wait
    with Connection(TEST_BROKER_URL, connect_timeout=5) as connection:
        channel = connection.default_channel
        while time.monotonic() < deadline:
            try:
                message = channel.basic_get(queue, no_ack=True)
            except Exception:  # not declared yet: nothing was sent
                channel = connection.channel()
                message = None
            if message is None:
                if commands:
                    break
                time.sleep(0.05)
                continue
            _args, kwargs, _embed = connection.default_channel.message_to_python(message).decode()
            commands.append((message.headers["task"], kwargs))
            if headers is not None:
                headers.append(dict(message.headers))
    return commands


@pytest.mark.django_db(transaction=True)
def test_a_command_reaches_the_receivers_queue_once_its_transaction_commits(
    queue, celery_up, settings
):
    settings.CHAOS_DUPLICATE_DELIVERY = False
    with transaction.atomic():
        command_send(service="svc", task="svc.do", order_id="o-1", lines=[1, 2])
        before_commit = received(queue, wait=0.3)

    assert before_commit == []
    assert received(queue) == [("svc.do", {"order_id": "o-1", "lines": [1, 2]})]


@pytest.mark.django_db(transaction=True)
def test_a_command_is_sent_in_a_producer_span_of_the_work_that_asked_for_it(
    queue, celery_up, settings, spans
):
    settings.CHAOS_DUPLICATE_DELIVERY = False
    with transaction.atomic(), tracer.start_as_current_span("work"):
        command_send(service="svc", task="svc.do", order_id="o-1")
    # committed (and sent) after the work's span ended, as the saga's watchdog does
    headers: list[dict] = []

    assert received(queue, headers=headers) == [("svc.do", {"order_id": "o-1"})]
    work, sent = spans.named("work"), spans.named("svc.do send")
    assert sent.kind == trace.SpanKind.PRODUCER
    assert sent.parent.span_id == work.context.span_id
    assert headers[0]["traceparent"] == traceparent_of(sent)


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_sends_nothing(queue, celery_up):
    def change_that_fails() -> None:
        with transaction.atomic():
            command_send(service="svc", task="svc.do", order_id="o-1")
            raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError):
        change_that_fails()

    assert received(queue, wait=0.5) == []


@pytest.mark.django_db(transaction=True)
def test_with_duplicate_delivery_every_command_is_sent_twice(queue, celery_up, settings):
    settings.CHAOS_DUPLICATE_DELIVERY = True
    with transaction.atomic():
        command_send(service="svc", task="svc.do", order_id="o-2")

    assert received(queue) == [("svc.do", {"order_id": "o-2"})] * 2


@pytest.mark.django_db(transaction=True)
def test_a_send_the_broker_refuses_after_commit_does_not_fail_the_sender(
    celery_down, settings, caplog
):
    settings.QUEUE_PREFIX = "t-"
    started = time.monotonic()
    with transaction.atomic():  # commits, then sends: nothing may escape from here
        command_send(service="svc", task="svc.do", order_id="o-3")

    assert time.monotonic() - started < 1.0  # bounded: no Celery default retries
    assert "Broker did not take svc.do for t-svc" in caplog.text


def test_publish_reports_whether_the_broker_took_the_command(queue, settings):
    settings.CHAOS_DUPLICATE_DELIVERY = False
    with celery_on(closed_port_url()):
        refused = command_publish(task="svc.do", queue=queue, kwargs={})
    with celery_on(TEST_BROKER_URL):
        taken = command_publish(task="svc.do", queue=queue, kwargs={})

    assert (refused, taken) == (False, True)
    assert received(queue) == [("svc.do", {})]


def test_the_broker_is_reachable_when_it_takes_connections(settings):
    settings.CELERY_BROKER_URL = TEST_BROKER_URL
    assert broker_reachable() is True


def test_a_broker_refusing_connections_is_unreachable_at_once(settings):
    settings.CELERY_BROKER_URL = closed_port_url()
    started = time.monotonic()
    assert broker_reachable() is False
    assert time.monotonic() - started < 1.0


# --- signed commands: VerifiedTask, the base of every service's tasks ---------------


@pytest.fixture
def verifying(settings, queue, signing_keys) -> Iterator[tuple[Celery, list[dict]]]:
    """A service "svc" whose tasks only orders may send, its worker's task ``svc.do``
    (recording what it was asked), and its dead-letter queue deleted afterwards."""
    settings.SERVICE_NAME = "svc"
    settings.CELERY_BROKER_URL = TEST_BROKER_URL
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    settings.COMMAND_SENDERS = {"svc.*": ["orders"]}
    settings.MESSAGE_SIGNING = {
        "KEY": str(signing_keys / "orders.pem"),  # the tests send as orders
        "PUBLIC_KEYS": str(signing_keys / "public"),
    }
    done: list[dict] = []
    app = Celery("svc", task_cls="common.commands:VerifiedTask", set_as_current=False)

    @app.task(name="svc.do", bind=True, shared=False)
    def do(self, order_id: str, refuse: bool = False) -> None:
        if refuse:
            raise MessageRefused("the body looked and said no")
        done.append({"order_id": order_id, "signed_by": self.request.signed_by})

    yield app, done
    app.close()
    with Connection(TEST_BROKER_URL, connect_timeout=5) as connection:
        channel = connection.default_channel
        channel.queue_delete(dead_letter_queue_name(kind="commands"))
        channel.exchange_delete(dead_letter_queue_name(kind="commands"))


def deliver(app: Celery, task_id: str, headers: dict, **kwargs: Any) -> None:
    """Run ``svc.do`` as a worker runs a message with these headers (Celery's own tracer)."""
    run = build_tracer("svc.do", app.tasks["svc.do"], app=app, eager=False)
    run(task_id, (), kwargs, request={"id": task_id, "task": "svc.do", **headers})


def signed_as(signer_key: Path, signer: str, task_id: str, **kwargs: Any) -> dict:
    """The headers of ``svc.do(**kwargs)`` signed with ``signer_key``, naming ``signer``."""
    payload = command_payload(task="svc.do", task_id=task_id, args=(), kwargs=kwargs, signer=signer)
    return signature_headers(
        signer=signer, payload=payload, private_key=private_key_load(signer_key)
    )


def dead_letters() -> list[DeadLetter]:
    return DeadLetterQueue(kind="commands").list()


def test_a_command_is_sent_signed_by_the_sending_service(queue, celery_up, settings):
    settings.CHAOS_DUPLICATE_DELIVERY = False
    settings.COMMAND_SENDERS = {"svc.*": [settings.SERVICE_NAME]}
    headers: list[dict] = []
    command_publish(task="svc.do", queue=queue, kwargs={"order_id": "o-1"})

    assert received(queue, headers=headers) == [("svc.do", {"order_id": "o-1"})]
    signer = command_verify(
        task="svc.do",
        task_id=headers[0]["id"],
        args=(),
        kwargs={"order_id": "o-1"},
        headers=headers[0],
    )
    assert signer == headers[0][HEADER_SIGNER] == settings.SERVICE_NAME


@pytest.mark.django_db(transaction=True)
def test_monitors_see_a_commands_argument_names_and_order_id_not_its_contents(
    queue, celery_up, settings
):
    settings.CHAOS_DUPLICATE_DELIVERY = False
    headers: list[dict] = []
    grant = {"signer": "orders", "signature": "c2VjcmV0"}
    command_publish(task="svc.do", queue=queue, kwargs={"order_id": "o-1", "grant": grant})

    assert received(queue, headers=headers) == [("svc.do", {"order_id": "o-1", "grant": grant})]
    assert (headers[0]["argsrepr"], headers[0]["kwargsrepr"]) == (
        "()",
        "{'order_id': 'o-1', 'grant': ...}",
    )


def raw_messages(queue: str, count: int) -> list[Any]:
    """The next ``count`` messages on ``queue`` as the broker holds them, taken off it."""
    messages: list[Any] = []
    deadline = time.monotonic() + 5
    with Connection(TEST_BROKER_URL, connect_timeout=5) as connection:
        channel = connection.default_channel
        while len(messages) < count and time.monotonic() < deadline:
            message = channel.basic_get(queue, no_ack=True)
            if message is None:
                time.sleep(0.02)
            else:
                messages.append(message)
    return messages


def test_a_command_is_the_message_celerys_send_task_would_publish(queue, celery_up, settings):
    """common.commands publishes Celery's message without send_task (its cost); nothing else
    may differ but the task id and what follows from it."""
    settings.CHAOS_DUPLICATE_DELIVERY = False
    kwargs = {"order_id": "o-1", "lines": [{"product_id": 1, "quantity": 2}]}
    command_publish(task="svc.do", queue=queue, kwargs=kwargs)
    ours = raw_messages(queue, 1)[0]
    celery_up.send_task(
        "svc.do",
        kwargs=kwargs,
        queue=queue,
        headers={
            name: ours.headers[name]
            for name in (HEADER_SIGNER, HEADER_SIGNATURE, "traceparent", "tracestate")
            if name in ours.headers
        },
        argsrepr="()",
        kwargsrepr=ours.headers["kwargsrepr"],
    )
    theirs = raw_messages(queue, 1)[0]

    def without_ids(headers: dict[str, Any]) -> dict[str, Any]:
        return {name: value for name, value in headers.items() if name not in ("id", "root_id")}

    assert without_ids(ours.headers) == without_ids(theirs.headers)
    assert ours.headers["root_id"] == ours.headers["id"]
    assert ours.body == theirs.body
    assert ours.delivery_info["routing_key"] == theirs.delivery_info["routing_key"] == queue
    assert ours.delivery_info["exchange"] == theirs.delivery_info["exchange"]
    properties = ("content_type", "content_encoding", "delivery_mode", "priority", "reply_to")
    assert {name: ours.properties.get(name) for name in properties} == {
        name: theirs.properties.get(name) for name in properties
    }
    assert ours.properties["correlation_id"] == ours.headers["id"]


def test_a_command_signed_by_an_allowed_sender_runs_and_knows_who_sent_it(verifying, signing_keys):
    app, done = verifying
    task_id = str(uuid.uuid4())

    deliver(
        app,
        task_id,
        signed_as(signing_keys / "orders.pem", "orders", task_id, order_id="o-1"),
        order_id="o-1",
    )

    assert done == [{"order_id": "o-1", "signed_by": "orders"}]
    assert dead_letters() == []


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        ("unsigned", "unsigned: no x-signer header"),
        ("bad signature", "bad signature"),
        ("not allowed", "'users' may not send 'svc.do' (only orders may)"),
        ("another order", "bad signature"),
    ],
)
def test_a_forged_command_is_dead_lettered_with_the_reason_and_not_run(
    verifying, signing_keys, forge, reason
):
    app, done = verifying
    task_id = str(uuid.uuid4())
    headers = {
        "unsigned": {},
        # users' key, claiming to be orders
        "bad signature": signed_as(signing_keys / "users.pem", "orders", task_id, order_id="o-1"),
        # a valid signature of a service that may not send svc.do
        "not allowed": signed_as(signing_keys / "users.pem", "users", task_id, order_id="o-1"),
        # orders' genuine signature of this command for another order, replayed for o-1
        "another order": signed_as(signing_keys / "orders.pem", "orders", task_id, order_id="o-2"),
    }[forge]

    deliver(app, task_id, headers, order_id="o-1")

    assert done == []
    (dead,) = dead_letters()
    assert (dead.id, dead.type) == (task_id, "svc.do")
    assert reason in dead.reason


def test_a_command_its_task_refuses_is_dead_lettered_too(verifying, signing_keys):
    app, done = verifying
    task_id = str(uuid.uuid4())
    kwargs = {"order_id": "o-1", "refuse": True}

    deliver(
        app, task_id, signed_as(signing_keys / "orders.pem", "orders", task_id, **kwargs), **kwargs
    )

    assert done == []
    assert [dead.reason for dead in dead_letters()] == ["the body looked and said no"]


def test_a_dead_command_replayed_is_the_same_signed_message_on_its_queue(
    verifying, signing_keys, queue
):
    app, _ = verifying
    with Connection(TEST_BROKER_URL, connect_timeout=5) as connection:
        # The worker's queue, as Celery declares it: an exchange of its name in front.
        Queue(queue, Exchange(queue, type="direct"), routing_key=queue)(
            connection.default_channel
        ).declare()
    task_id = str(uuid.uuid4())
    kwargs = {"order_id": "o-1", "refuse": True}
    headers = signed_as(signing_keys / "orders.pem", "orders", task_id, **kwargs)
    deliver(app, task_id, headers, **kwargs)
    seen: list[dict] = []

    replayed = DeadLetterQueue(kind="commands").replay()

    assert [dead.id for dead in replayed] == [task_id]
    assert received(queue, headers=seen) == [("svc.do", kwargs)]
    assert (seen[0]["id"], seen[0][HEADER_SIGNATURE]) == (task_id, headers[HEADER_SIGNATURE])
    assert dead_letters() == []
