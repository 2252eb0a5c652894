"""Quorum queues on RabbitMQ, asked of the broker itself; no queue arguments elsewhere.

A passive declare answers the same for any queue type (it ignores arguments),
and the test servers have no management plugin. So the broker is asked the
one way AMQP offers: a queue that exists is declared again with
``x-queue-type: classic``. A classic queue takes that as the same queue (a
no-op); a quorum queue refuses it with PRECONDITION_FAILED, naming its type.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import amqp
import environ
import pytest
from celery import Celery
from celery.utils.quorum_queues import detect_quorum_queues
from kombu import Connection

from common.broker_access import celery_routing_settings
from common.celery import make_celery_app
from common.events.broker import dead_letter_queue_name, queue_name
from common.events.consumer import EventConsumer
from common.events.dlq import DeadLetterQueue
from common.quorum import broker_is_rabbitmq, celery_queue_settings, connection_is_rabbitmq
from common.settings import broker_config, service_defaults

TEST_BROKER_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")


def queue_type(name: str, url: str = TEST_BROKER_URL) -> str:
    """``quorum`` or ``classic``, as the RabbitMQ at ``url`` says; the queue must exist."""
    with Connection(url, connect_timeout=5) as connection:
        channel = connection.channel()
        channel.queue_declare(queue=name, passive=True)  # raises NOT_FOUND: nothing created
        try:
            channel.queue_declare(
                queue=name,
                durable=True,
                auto_delete=False,
                arguments={"x-queue-type": "classic"},
            )
        except amqp.PreconditionFailed as refused:
            # "inequivalent arg 'x-queue-type' ...: received 'classic' but current is 'quorum'"
            if "'x-queue-type'" in str(refused) and "current is 'quorum'" in str(refused):
                return "quorum"
            raise
        return "classic"


def queues_delete(*names: str) -> None:
    with Connection(TEST_BROKER_URL, connect_timeout=5) as connection:
        for name in names:
            connection.channel().queue_delete(name)


# --- which broker ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "rabbitmq"),
    [
        ("amqp://guest:guest@127.0.0.1:5672//", True),
        ("amqps://u:p@broker.example:5671/shop", True),
        ("pyamqp://localhost//", True),
        ("amqp://a//;amqp://b//", True),
        ("filesystem://", False),
        ("memory://", False),
        ("redis://localhost:6379/0", False),
    ],
)
def test_only_amqp_urls_count_as_rabbitmq(url, rabbitmq):
    assert broker_is_rabbitmq(url) is rabbitmq


def test_celery_task_queues_are_quorum_on_rabbitmq_and_classic_elsewhere():
    assert celery_queue_settings("amqp://guest:guest@rabbitmq:5672//") == {
        "CELERY_TASK_DEFAULT_QUEUE_TYPE": "quorum",
        "CELERY_TASK_CREATE_MISSING_QUEUE_TYPE": "quorum",
        "CELERY_WORKER_DETECT_QUORUM_QUEUES": True,
    }
    for url in ("filesystem://", "memory://"):
        assert celery_queue_settings(url)["CELERY_TASK_DEFAULT_QUEUE_TYPE"] == "classic"
        assert celery_queue_settings(url)["CELERY_TASK_CREATE_MISSING_QUEUE_TYPE"] == "classic"


@pytest.mark.parametrize(
    ("broker_url", "queue_type_setting"),
    [("amqp://guest:guest@rabbitmq:5672//", "quorum"), ("", "classic")],
)
def test_every_service_gets_the_queue_type_from_its_settings(
    monkeypatch, tmp_path, broker_url, queue_type_setting
):
    if broker_url:
        monkeypatch.setenv("BROKER_URL", broker_url)
    else:
        monkeypatch.delenv("BROKER_URL", raising=False)  # the embedded default
    monkeypatch.setenv("VAR_DIR", str(tmp_path))

    defaults = service_defaults(service="probe", base_dir=Path(__file__).resolve().parents[3])

    assert defaults["CELERY_TASK_DEFAULT_QUEUE_TYPE"] == queue_type_setting
    assert defaults["CELERY_TASK_CREATE_MISSING_QUEUE_TYPE"] == queue_type_setting


# --- Celery's task queues on RabbitMQ ---------------------------------------------


@pytest.fixture
def service_app(settings: Any) -> Iterator[Celery]:
    """A service's Celery app as common.celery makes it, on the test RabbitMQ."""
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    settings.QUEUE_PREFIX = prefix
    settings.CELERY_BROKER_URL = TEST_BROKER_URL
    settings.CELERY_BROKER_TRANSPORT = None
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    settings.CELERY_TASK_DEFAULT_QUEUE = f"{prefix}svc"
    for key, value in {
        **celery_queue_settings(TEST_BROKER_URL),
        **celery_routing_settings(service="svc", prefix=prefix, broker_url=TEST_BROKER_URL),
    }.items():
        setattr(settings, key, value)
    app = make_celery_app(service="svc", settings_module="common.tests.settings")
    try:
        yield app
    finally:
        app.close()
        queues_delete(f"{prefix}svc", f"{prefix}other")


def test_a_workers_own_task_queue_is_a_quorum_queue(service_app):
    name = service_app.conf.task_default_queue
    with service_app.connection_for_write() as connection:
        # What the worker declares on start for ``-Q <its queue>``.
        service_app.amqp.queues.select([name])
        [queue] = service_app.amqp.queues.consume_from.values()
        queue(connection.default_channel).declare()

    assert queue_type(name) == "quorum"


def test_the_worker_sees_its_quorum_queue_and_so_uses_no_global_qos(service_app):
    # Celery's worker asks this before its basic.qos; RabbitMQ refuses a consumer on
    # a quorum queue from a channel with global QoS (NOT_IMPLEMENTED).
    using_quorum_queues, first = detect_quorum_queues(service_app, "amqp")
    assert using_quorum_queues is True
    assert first in service_app.amqp.queues


def test_a_command_to_another_service_declares_its_queue_as_a_quorum_queue(service_app, settings):
    other = f"{settings.QUEUE_PREFIX}other"

    service_app.send_task("other.do", kwargs={"n": 1}, queue=other)

    assert queue_type(other) == "quorum"
    with Connection(TEST_BROKER_URL, connect_timeout=5) as connection:
        message = connection.default_channel.basic_get(other, no_ack=True)
    assert message is not None
    assert message.headers["task"] == "other.do"


def test_a_command_reaches_a_quorum_queue_its_receiver_declared_first(service_app, settings):
    name = service_app.conf.task_default_queue
    with service_app.connection_for_write() as connection:
        service_app.amqp.queues[name](connection.default_channel).declare()

    # Another service's app, configured the same, sends to it: its declare agrees.
    settings.CELERY_TASK_DEFAULT_QUEUE = f"{settings.QUEUE_PREFIX}sender"
    sender = make_celery_app(service="sender", settings_module="common.tests.settings")
    try:
        sender.send_task("svc.do", kwargs={}, queue=name)
    finally:
        sender.close()

    assert queue_type(name) == "quorum"


# --- the event queues -------------------------------------------------------------


@pytest.fixture
def event_service(settings: Any) -> Iterator[str]:
    tag = uuid.uuid4().hex[:10]
    settings.CELERY_BROKER_URL = TEST_BROKER_URL
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    settings.SERVICE_NAME = f"t{tag}"
    settings.EVENT_EXCHANGE = f"events-test-{tag}"
    settings.EVENT_HANDLERS = {"test.ping": "common.tests.event_handlers.ping"}
    yield settings.SERVICE_NAME
    queues_delete(queue_name(), dead_letter_queue_name())
    with Connection(TEST_BROKER_URL, connect_timeout=5) as connection:
        connection.default_channel.exchange_delete(
            f"{settings.QUEUE_PREFIX}{settings.EVENT_EXCHANGE}"
        )


def test_the_event_queue_and_its_dead_letter_queue_are_quorum_queues(event_service):
    with Connection(TEST_BROKER_URL, connect_timeout=5) as connection:
        EventConsumer().declare(connection)  # what `consume_events --setup-only` does

    assert queue_type(queue_name()) == "quorum"
    assert queue_type(dead_letter_queue_name()) == "quorum"


def test_declaring_the_event_queues_again_is_accepted(event_service):
    with Connection(TEST_BROKER_URL, connect_timeout=5) as connection:
        EventConsumer().declare(connection)
        EventConsumer().declare(connection)  # every consumer start declares them

    assert DeadLetterQueue().size() == 0  # the dlq command declares the DLQ as well


def test_a_classic_queue_of_the_same_name_is_refused_not_silently_kept(event_service):
    # A broker that still has the queues from before (classic) refuses the quorum
    # declare: the operator deletes them once, or uses a new QUEUE_PREFIX.
    with Connection(TEST_BROKER_URL, connect_timeout=5) as connection:
        connection.default_channel.queue_declare(
            queue=queue_name(), durable=True, auto_delete=False
        )
        assert queue_type(queue_name()) == "classic"  # the probe tells the types apart
        with pytest.raises(amqp.PreconditionFailed, match="x-queue-type"):
            EventConsumer().declare(connection)


# --- everywhere else: no arguments ---------------------------------------------------


def test_the_embedded_broker_declares_the_event_queues_without_arguments(
    settings, monkeypatch, tmp_path
):
    monkeypatch.setenv("BROKER_URL", "filesystem://")
    monkeypatch.setenv("BROKER_FOLDER", str(tmp_path / "broker"))
    url, transport, options = broker_config(env=environ.Env(), var_dir=tmp_path)
    settings.CELERY_BROKER_URL = url
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = options
    settings.SERVICE_NAME = "svc"
    settings.EVENT_HANDLERS = {"test.ping": "common.tests.event_handlers.ping"}

    with Connection(url, transport=transport, transport_options=options) as connection:
        assert not connection_is_rabbitmq(connection)
        EventConsumer().declare(connection)

    assert (tmp_path / "broker" / "queues" / queue_name()).is_dir()
    assert DeadLetterQueue().size() == 0


def test_the_memory_transport_is_not_rabbitmq():
    with Connection("memory://") as connection:
        assert not connection_is_rabbitmq(connection)
