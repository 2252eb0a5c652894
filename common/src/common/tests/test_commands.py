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
from typing import Any

import pytest
from celery import Celery, current_app
from django.db import transaction
from kombu import Connection
from opentelemetry import trace

from common.commands import broker_reachable, command_publish, command_send
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
