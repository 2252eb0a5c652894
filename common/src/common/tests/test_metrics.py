"""``/metrics``: scrape-time collectors, in single- and multiprocess mode; the outbox lag."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta

import environ
import pytest
from django.db import OperationalError, transaction
from django.utils import timezone
from kombu import Connection, Queue
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from common.events import event_record
from common.events.broker import dead_letter_queue_name, queue_name
from common.events.metrics import QueueCollector
from common.events.models import OutboxMessage
from common.filesystem_broker import transport_for
from common.metrics import DatabaseCollector
from common.quorum import connection_is_rabbitmq, quorum_queue_arguments
from common.settings import broker_config
from common.tests import event_handlers  # noqa: F401 - registers the test.ping event type

TEST_BROKER_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")


def scrape(client) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
        if not sample.labels
    }


@pytest.fixture(params=["single", "multiprocess"])
def mode(request, tmp_path, monkeypatch):
    if request.param == "multiprocess":
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    else:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    return request.param


@pytest.mark.django_db
def test_the_outbox_lag_is_the_age_of_the_oldest_unpublished_event(client, mode):
    assert scrape(client)["outbox_unpublished_events"] == 0
    assert scrape(client)["outbox_oldest_unpublished_age_seconds"] == 0

    with transaction.atomic():
        older = event_record(type="test.ping", subject="s-1", data={"n": 1})
        event_record(type="test.ping", subject="s-2", data={"n": 2})
    OutboxMessage.objects.filter(id=older.id).update(
        created_at=timezone.now() - timedelta(seconds=90)
    )
    metrics = scrape(client)

    assert metrics["outbox_unpublished_events"] == 2
    assert 90 <= metrics["outbox_oldest_unpublished_age_seconds"] < 120
    assert metrics["outbox_scrape_ok"] == 1

    OutboxMessage.objects.filter(id=older.id).update(published_at=timezone.now())
    metrics = scrape(client)

    assert metrics["outbox_unpublished_events"] == 1
    assert metrics["outbox_oldest_unpublished_age_seconds"] < 90


class _Unreachable(DatabaseCollector):
    prefix = "unreachable"

    def families(self):
        return [GaugeMetricFamily("unreachable_things", "Never read.", labels=[])]

    def fill(self, families):
        raise OperationalError("connection refused")


def test_a_database_that_does_not_answer_costs_only_its_figures():
    collected = {family.name: family for family in _Unreachable().collect()}

    assert [sample.value for sample in collected["unreachable_scrape_ok"].samples] == [0]
    assert "unreachable_things" not in collected


def test_registration_runs_no_query():
    # describe() alone: registering at start-up must not touch a database
    # that may not be there yet (no django_db mark: a query would fail here).
    names = [family.name for family in _Unreachable().describe()]
    assert names == ["unreachable_scrape_ok", "unreachable_things"]


@pytest.fixture(params=["rabbitmq", "filesystem"])
def service_queues(request, settings, monkeypatch, tmp_path) -> Iterator[dict[str, str]]:
    """This service's command, event and dead-letter queues on a real broker, deleted after
    (``broker`` says which: RabbitMQ or the filesystem transport)."""
    if request.param == "rabbitmq":
        url, options = TEST_BROKER_URL, {}
    else:
        monkeypatch.setenv("BROKER_URL", "filesystem://")
        monkeypatch.setenv("BROKER_FOLDER", str(tmp_path / "broker"))
        url, _, options = broker_config(env=environ.Env(), var_dir=tmp_path)
    settings.CELERY_BROKER_URL = url
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = options
    settings.QUEUE_PREFIX = f"t{uuid.uuid4().hex[:8]}-"
    settings.CELERY_TASK_DEFAULT_QUEUE = settings.QUEUE_PREFIX + "svc"
    settings.EVENT_HANDLERS = {"test.ping": "common.tests.event_handlers.ping"}
    names = {
        "commands": settings.CELERY_TASK_DEFAULT_QUEUE,
        "events": queue_name(),
        "dead_letters": dead_letter_queue_name(),
    }
    yield {**names, "broker": request.param}
    if request.param == "rabbitmq":
        with Connection(url, connect_timeout=5) as connection:
            for name in names.values():
                connection.default_channel.queue_delete(name)


def fill_queue(name: str, count: int) -> None:
    from django.conf import settings

    with Connection(
        settings.CELERY_BROKER_URL,
        transport=transport_for(settings.CELERY_BROKER_URL),
        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    ) as connection:
        # As the services declare them: quorum queues on RabbitMQ.
        arguments = quorum_queue_arguments(rabbitmq=connection_is_rabbitmq(connection))
        queue = Queue(name, durable=True, auto_delete=False, queue_arguments=arguments)
        producer = connection.Producer()
        for n in range(count):
            producer.publish({"n": n}, routing_key=name, declare=[queue])


def queue_metrics() -> dict[str, float]:
    collected = {family.name: family for family in QueueCollector().collect()}
    return {
        sample.labels.get("kind", sample.name): sample.value
        for family in collected.values()
        for sample in family.samples
    }


def test_the_service_queues_show_how_much_waits_in_them(service_queues):
    fill_queue(service_queues["commands"], 3)
    fill_queue(service_queues["events"], 1)
    fill_queue(service_queues["dead_letters"], 2)

    metrics = queue_metrics()

    assert metrics == {"broker_scrape_ok": 1, "commands": 3, "events": 1, "dead_letters": 2}


def test_queues_not_declared_yet_are_left_out_or_empty(service_queues):
    fill_queue(service_queues["dead_letters"], 1)

    metrics = queue_metrics()

    # On both brokers: the embedded one has a folder per declared queue.
    assert metrics == {"broker_scrape_ok": 1, "dead_letters": 1}


def test_a_broker_that_does_not_answer_costs_only_the_queue_figures(settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.CELERY_BROKER_URL = f"amqp://guest:guest@127.0.0.1:{port}//"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}

    assert queue_metrics() == {"broker_scrape_ok": 0}
