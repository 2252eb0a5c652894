"""The event store is the outbox: order events go to RabbitMQ as they were appended."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from django.db import transaction
from kombu import Connection, Exchange, Queue

from common.events import InvalidEventData, event_parse
from common.events.broker import events_exchange
from common.events.publish_on_commit import publish_on_commit_reset
from common.events.relay import OutboxRelay
from common.testing.tracing import traceparent_of
from common.tracing import tracer
from orders.models import OrderEvent, OrderEventType
from orders.selectors import order_get
from orders.services import LineRequest, order_append, order_place
from orders.tests.test_services import approve

BROKER_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture
def observed(settings):
    """A private exchange (through QUEUE_PREFIX) with a queue that sees every event on it."""
    settings.QUEUE_PREFIX = f"t{uuid.uuid4().hex[:8]}-"
    settings.CELERY_BROKER_URL = BROKER_URL
    queue_name = f"{settings.QUEUE_PREFIX}observer"
    with Connection(BROKER_URL) as connection:
        exchange = Exchange(events_exchange().name, type="topic", durable=True)
        queue = Queue(queue_name, exchange, routing_key="#", durable=True)
        queue(connection.default_channel).declare()
        yield lambda: _drain(connection, queue)
        queue(connection.default_channel).delete()
        exchange(connection.default_channel).delete()
        # Placing an order also sent the saga's first command to catalog's queue.
        Queue(f"{settings.QUEUE_PREFIX}catalog")(connection.default_channel).delete()


def _drain(connection: Connection, queue: Queue) -> list:
    bound = queue(connection.default_channel)
    messages = []
    while (message := bound.get(no_ack=True)) is not None:
        messages.append(message)
    return messages


@pytest.fixture(params=["on commit", "by the relay"])
def publishing(request, settings):
    """Who publishes: each writer once it commits (the default), or the relay alone."""
    settings.OUTBOX_PUBLISH_ON_COMMIT = request.param == "on commit"
    settings.OUTBOX_SWEEP_AFTER_SECONDS = 0  # the relay may take any row left unpublished
    publish_on_commit_reset()
    yield request.param
    publish_on_commit_reset()


def relay_pending() -> int:
    relay = OutboxRelay()
    try:
        return relay.relay_pending()
    finally:
        relay.close()


@pytest.mark.django_db(transaction=True)
def test_order_events_are_published_from_the_event_store_in_order(observed, settings, publishing):
    order, _ = order_place(customer_id="42", lines=[LineRequest(1, 2), LineRequest(7, 1)])
    approve(order_get(order_id=order.id))

    # Published at each commit, or by the relay; never twice (marked).
    assert relay_pending() == (0 if publishing == "on commit" else 4)
    assert relay_pending() == 0

    messages = observed()
    events = [event_parse(message.body) for message in messages]
    stored = list(OrderEvent.objects.filter(order_id=order.id).order_by("version"))
    assert [e.type for e in events] == [
        "order.placed",
        "order.stock_reserved",
        "order.credit_reserved",
        "order.approved",
    ]
    assert [e.id for e in events] == [str(row.event_id) for row in stored]
    assert [m.properties["message_id"] for m in messages] == [e.id for e in events]
    assert [m.delivery_info["routing_key"] for m in messages] == [e.type for e in events]
    assert {e.subject for e in events} == {str(order.id)}
    assert {e.source for e in events} == {"orders"}
    approved = events[-1]
    assert approved.data == {
        "customer_id": "42",
        "total": "25.50",
        "currency": settings.CURRENCY,
        "lines": [
            {"product_id": 1, "quantity": 2, "unit_price": "10.00"},
            {"product_id": 7, "quantity": 1, "unit_price": "5.50"},
        ],
    }
    assert all(row.published_at is not None for row in stored)


@pytest.mark.django_db(transaction=True)
def test_an_event_carries_the_trace_of_the_request_that_appended_it(observed, spans, publishing):
    with tracer.start_as_current_span("request"):
        order_place(customer_id="42", lines=[LineRequest(1, 1)])
    relay_pending()

    (message,) = observed()
    request, published = spans.named("request"), spans.named("order.placed publish")
    assert json.loads(message.body)["trace"] == {"traceparent": traceparent_of(request)}
    assert published.parent.span_id == request.context.span_id
    assert message.headers["traceparent"] == traceparent_of(published)


@pytest.mark.django_db
def test_an_event_breaking_the_published_contract_is_never_appended():
    order, _ = order_place(customer_id="42", lines=[LineRequest(1, 1)])

    with transaction.atomic(), pytest.raises(InvalidEventData, match="customer_id"):
        order_append(order=order, type=OrderEventType.APPROVED, data={"total": "1.00"})
    assert OrderEvent.objects.filter(order_id=order.id).count() == 1
