"""The broker users' map against the names the code really uses, and Celery's routing.

What RabbitMQ does with the map (the users, each allowed or refused) is shown on a
broker in tests/test_broker_access.py and in the compose stack (tests/test_containers.py).
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import threading

import pytest
from django.core.management import CommandError, call_command
from kombu import Queue

from common.broker_access import (
    ACCESS,
    NOTHING,
    celery_routing_settings,
    command_queue,
    definitions,
    password_hash,
    permissions,
    route_to_queue_exchange,
    topic_permissions,
)
from common.celery import Consumer, make_celery_app
from common.events.broker import (
    command_queue_name,
    dead_letter_queue,
    dead_letter_queue_name,
    events_exchange,
    events_queue,
    queue_name,
    queue_sizes,
)
from common.events.consumer import EventConsumer
from common.settings import service_defaults

SERVICES = tuple(ACCESS)


def allowed(expression: str, name: str) -> bool:
    """As RabbitMQ matches a permission: anywhere in the name, so ours are anchored."""
    return re.search(expression, name) is not None


def own_names(service: str) -> list[str]:
    """Every queue and exchange a service's processes declare for themselves."""
    queues = [
        command_queue_name(service),
        queue_name(service),
        dead_letter_queue_name(service),
        dead_letter_queue_name(service, kind="commands"),
    ]
    exchanges = [
        queue.exchange.name
        for queue in (
            dead_letter_queue(service, rabbitmq=True),
            dead_letter_queue(service, rabbitmq=True, kind="commands"),
        )
    ] + [
        b.exchange.name for b in events_queue(service=service, patterns=[], rabbitmq=True).bindings
    ]
    return [*queues, *exchanges]


@pytest.fixture(params=["", "run7-"], ids=["no prefix", "prefix"])
def prefix(request, settings, monkeypatch) -> str:
    settings.QUEUE_PREFIX = request.param
    monkeypatch.setenv("QUEUE_PREFIX", request.param)  # for service_defaults()
    return request.param


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_has_every_right_on_its_own_queues_and_exchanges(service, prefix, settings):
    rights = permissions(service, prefix=prefix, event_exchange=settings.EVENT_EXCHANGE)
    event_exchange = service_defaults(service=service, base_dir=settings.BASE_DIR)[
        "CELERY_EVENT_EXCHANGE"
    ]
    for name in [*own_names(service), event_exchange]:
        assert name.startswith(prefix + service)
        for kind in ("configure", "write", "read"):
            assert allowed(rights[kind], name), f"{service} may not {kind} {name}"


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_may_not_read_or_configure_anything_of_another(service, prefix, settings):
    rights = permissions(service, prefix=prefix, event_exchange=settings.EVENT_EXCHANGE)
    for other in set(ACCESS) - {service}:
        for name in own_names(other):
            assert not allowed(rights["configure"], name), f"{service} configures {name}"
            assert not allowed(rights["read"], name), f"{service} reads {name}"
        # Another's queue is written to only through its command exchange, if called.
        called = other in ACCESS[service].commands_to
        assert allowed(rights["write"], command_queue_name(other)) is called, other
        for name in set(own_names(other)) - {command_queue_name(other)}:
            assert not allowed(rights["write"], name), f"{service} writes {name}"
    # Nor the default exchange (every queue through it), nor Celery's shared ones.
    for name in ("amq.default", "", "celery_delayed_delivery", "celery_delayed_0", "celeryev"):
        for kind in ("configure", "write", "read"):
            assert not allowed(rights[kind], name), f"{service} may {kind} {name!r}"


def test_only_the_producer_writes_to_the_events_exchange_and_only_its_types(prefix, settings):
    exchange = events_exchange().name
    for service, access in ACCESS.items():
        rights = permissions(service, prefix=prefix, event_exchange=settings.EVENT_EXCHANGE)
        assert allowed(rights["write"], exchange) is bool(access.events_produced), service
        assert allowed(rights["read"], exchange) is bool(access.events_consumed), service
    orders = topic_permissions("orders")
    assert allowed(orders["write"], "order.approved")
    assert not allowed(orders["write"], "product.updated")
    assert not allowed(orders["write"], "xorder.approved")
    catalog = topic_permissions("catalog")
    assert allowed(catalog["read"], "order.cancelled")
    assert not allowed(catalog["read"], "#")
    assert catalog["write"] == NOTHING


def test_the_gateway_hears_order_events_and_sends_nothing_to_anyone():
    rights = permissions("gateway")
    assert allowed(rights["read"], "events")
    assert not allowed(rights["write"], "events")
    for service in ("catalog", "users", "orders"):
        assert not allowed(rights["write"], service)
    assert topic_permissions("gateway") == {"write": NOTHING, "read": r"^(order\.)"}


def test_a_task_goes_to_its_queues_own_exchange_and_only_the_own_queue_is_declared(settings):
    routing = celery_routing_settings(service="orders", prefix="t-", broker_url="amqp://x//")
    queues = {queue.name: queue for queue in routing["CELERY_TASK_QUEUES"]}
    assert set(queues) == {"t-catalog", "t-users", "t-orders"}  # the services with a worker
    assert [name for name, queue in queues.items() if not queue.no_declare] == ["t-orders"]
    for name, queue in queues.items():
        assert (queue.exchange.name, queue.exchange.type, queue.routing_key) == (
            name,
            "direct",
            name,
        )
        assert queue.queue_arguments == {"x-queue-type": "quorum"}
    route = route_to_queue_exchange(
        "catalog.stock_reserve", (), {}, {"queue": queues["t-catalog"]}, task=None
    )
    assert route == {"exchange": "t-catalog", "routing_key": "t-catalog"}
    # No queue of ours: Celery's own routing (nothing of ours to say).
    assert route_to_queue_exchange("x", (), {}, {}) is None
    assert routing["CELERY_WORKER_ENABLE_REMOTE_CONTROL"] is False
    assert routing["CELERY_EVENT_EXCHANGE"] == "t-orders.celeryev"
    # make run's filesystem broker has no users: Celery's own routing, as before.
    assert celery_routing_settings(service="orders", prefix="", broker_url="filesystem://") == {}


def test_the_celery_app_sends_a_command_to_the_receivers_exchange(settings):
    app = make_celery_app(service="common", settings_module="common.tests.settings")
    router = app.amqp.router
    options = router.route({"queue": settings.QUEUE_PREFIX + "orders"}, "orders.saga_reply", ())
    assert options["exchange"] == settings.QUEUE_PREFIX + "orders"
    assert options["routing_key"] == settings.QUEUE_PREFIX + "orders"
    assert isinstance(options["queue"], Queue)
    assert options["queue"].no_declare is True


def test_the_workers_consumer_sets_up_no_shared_delayed_delivery():
    steps = Consumer.Blueprint.default_steps
    assert not [step for step in steps if "delayed_delivery" in step]
    assert "celery.worker.consumer.tasks:Tasks" in steps


def test_the_password_hash_is_rabbitmqs_salted_sha256():
    salt = bytes.fromhex("908dc60a")
    stored = password_hash("test12", salt=salt)
    decoded = base64.b64decode(stored)
    assert decoded[:4] == salt
    assert decoded[4:] == hashlib.sha256(salt + b"test12").digest()
    assert password_hash("test12") != password_hash("test12")  # a new salt each time


def test_the_definitions_declare_the_command_queues_as_the_workers_do():
    passwords = {service: f"pw-{service}" for service in ACCESS}
    document = definitions(passwords, admin_password="admin", prefix="p-")
    assert {user["name"] for user in document["users"]} == {*ACCESS, "eshop"}
    assert not [u for u in document["users"] if "password" in u]
    for service in (name for name, access in ACCESS.items() if access.has_worker):
        declared = command_queue(service, prefix="p-", own=True)
        (queue,) = [q for q in document["queues"] if q["name"] == declared.name]
        assert queue["arguments"] == declared.queue_arguments
        assert queue["durable"] is declared.durable
        assert queue["auto_delete"] is declared.auto_delete
        (exchange,) = [e for e in document["exchanges"] if e["name"] == declared.exchange.name]
        assert exchange["type"] == declared.exchange.type
        assert {
            (b["source"], b["destination"], b["routing_key"])
            for b in document["bindings"]
            if b["destination"] == declared.name
        } == {(declared.exchange.name, declared.name, declared.routing_key)}


@pytest.mark.parametrize("kind", ["rabbitmq", "filesystem"])
def test_the_relays_wait_declares_nothing_and_ends_once_the_consumer_declared(
    kind, settings, monkeypatch, tmp_path
):
    """k8s's relay pod waits for each consumer's queue (``queues --wait``): its broker user
    may not declare another service's queues, so the consumer declares them itself."""
    from common.tests.test_events import make_broker

    broker = make_broker(kind, settings, monkeypatch, tmp_path)
    try:
        consumer = EventConsumer()
        names = [consumer.queue_name, consumer.dead_letter_queue_name]
        out = io.StringIO()
        waiting = threading.Thread(
            target=call_command,
            args=("consume_events", "--setup-only", "--wait"),
            kwargs={"stdout": out},
        )
        waiting.start()
        try:
            assert waiting.is_alive()
            assert queue_sizes(names) == {}  # it declares nothing itself
            call_command("consume_events", "--setup-only", stdout=io.StringIO())  # the consumer
        finally:
            waiting.join(timeout=60)
        assert not waiting.is_alive()
        assert "declared by their consumer" in out.getvalue()
        with pytest.raises(CommandError, match="--wait goes with --setup-only"):
            call_command("consume_events", "--wait")
    finally:
        broker.cleanup()
