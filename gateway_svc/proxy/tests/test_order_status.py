"""The push channel's pure pieces and its broker subscription on the embedded broker.

The whole channel through real services is in tests/test_order_push.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid

import httpx
import pytest
from httpx_sse import EventSource
from kombu import Connection, Exchange, Producer, Queue

from common.events import Event
from common.events.envelope import event_schema_uri
from common.filesystem_broker import Transport, transport_for
from common.signing import event_payload, key_pair_generate, private_key_load, signature_headers
from proxy.order_feed import OrderEventFeed, OrderEventHub, queue_prefix
from proxy.order_status import (
    OPENAPI_PATH,
    openapi_operation,
    order_settled,
    order_status_events,
    sse_comment,
    sse_events,
    sse_retry,
    version_parse,
)


def history(*types: str) -> list[dict[str, str]]:
    return [{"type": kind, "at": f"2026-12-06T10:00:0{n}Z"} for n, kind in enumerate(types)]


APPROVED = history(
    "order.placed", "order.stock_reserved", "order.credit_reserved", "order.approved"
)


def test_each_event_carries_its_version_and_the_status_it_left():
    order = {"id": "o1", "status": "APPROVED", "history": APPROVED}

    events = order_status_events(order)

    assert [e.version for e in events] == [1, 2, 3, 4]
    assert [e.status for e in events] == ["PENDING", "PENDING", "PENDING", "APPROVED"]
    assert [e.final for e in events] == [False, False, False, True]


def test_events_after_a_version_are_the_rest_only():
    order = {"id": "o1", "status": "APPROVED", "history": APPROVED}

    assert [e.version for e in order_status_events(order, after=2)] == [3, 4]
    assert order_status_events(order, after=4) == []


def test_an_approved_order_with_a_cancellation_pending_is_not_final():
    order = {
        "id": "o1",
        "status": "APPROVED",
        "cancel_requested": True,
        "history": [*APPROVED, {"type": "order.cancel_requested", "at": "t"}],
    }

    events = order_status_events(order)

    assert not order_settled(order)
    assert not any(e.final for e in events)
    assert events[-1].status == "APPROVED"


def test_a_rejection_carries_its_reason_and_is_final():
    order = {
        "id": "o1",
        "status": "REJECTED",
        "rejection_reason": "out_of_stock",
        "history": history("order.placed", "order.stock_refused", "order.rejected"),
    }

    last = order_status_events(order)[-1]

    assert (last.status, last.final, last.rejection_reason) == ("REJECTED", True, "out_of_stock")
    assert order_status_events(order)[0].rejection_reason == ""


@pytest.mark.parametrize(("text", "version"), [("0", 0), ("7", 7), (b" 12 ", 12)])
def test_versions_parse(text, version):
    assert version_parse(text) == version


@pytest.mark.parametrize("text", ["", "-1", "1.5", "abc", "١٢", "9" * 13, "0x10"])
def test_anything_but_a_version_is_refused(text):
    with pytest.raises(ValueError, match="not an event version"):
        version_parse(text)


def test_the_stream_reads_back_as_server_sent_events():
    order = {"id": "o1", "status": "APPROVED", "history": APPROVED}
    body = sse_retry(2000) + sse_events(order_status_events(order)) + sse_comment()
    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    blocks = list(EventSource(response).iter_sse())
    received = [event for event in blocks if event.data]

    assert blocks[0].retry == 2000
    assert [event.id for event in received] == ["1", "2", "3", "4"]
    assert received[-1].json()["status"] == "APPROVED"


def test_the_operation_documents_the_stream_and_its_problems():
    operation = openapi_operation()

    assert OPENAPI_PATH == "/api/orders/{order_id}/events/"
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert {"400", "404", "405"} <= set(operation["responses"])
    assert {"bearerAuth": []} in operation["security"]


def test_the_hub_gives_an_event_to_the_streams_of_its_order_only():
    async def scenario() -> tuple[int, int, int]:
        hub = OrderEventHub()
        mine, other = hub.subscribe("a"), hub.subscribe("b")
        delivered = hub.publish(event_of("a"))
        hub.unsubscribe("a", mine)
        return delivered, mine.qsize(), other.qsize() + hub.publish(event_of("a"))

    assert asyncio.run(scenario()) == (1, 1, 0)


def event_of(order_id: str, event_type: str = "order.approved") -> Event:
    return Event(
        id=str(uuid.uuid4()),
        type=event_type,
        source="orders",
        time="2026-12-06T10:00:00+00:00",
        subject=order_id,
        data={},
    )


# --- the subscription, on a real embedded broker ---------------------------------------


@pytest.fixture
def embedded_broker(settings, tmp_path):
    """A ``filesystem://`` broker of this test's own, and orders' signing key."""
    queues, control = tmp_path / "broker" / "queues", tmp_path / "broker" / "control"
    for folder in (queues, control):
        folder.mkdir(parents=True)
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(queues),
        "data_folder_out": str(queues),
        "control_folder": str(control),
        "store_processed": False,
        "polling_interval": 0.01,
        "unreadable_queue": "gateway.events.dlq",
    }
    settings.QUEUE_PREFIX = ""
    keys = tmp_path / "signing"
    key_pair_generate(
        private_key_file=keys / "orders.pem", public_key_file=keys / "public" / "orders.pem"
    )
    settings.MESSAGE_SIGNING = {
        "KEY": str(keys / "gateway.pem"),
        "PUBLIC_KEYS": str(keys / "public"),
    }
    settings.EVENT_SOURCES = {"order.*": ["orders"]}
    # kombu keeps the bindings it declared per process, not per folder: another test's
    # would be taken for this folder's, and never written to it.
    Transport.global_state.clear()
    yield keys / "orders.pem"
    Transport.global_state.clear()


def broker() -> Connection:
    from django.conf import settings

    url = settings.CELERY_BROKER_URL
    return Connection(
        url,
        transport=transport_for(url),
        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    )


def publish(event: Event, headers: dict[str, str]) -> None:
    body = event.to_json()
    with broker() as connection:
        Producer(connection.channel()).publish(
            body.encode(),
            exchange=Exchange("events", type="topic", durable=True),
            routing_key=event.type,
            content_type="application/json",
            content_encoding="utf-8",
            headers=headers,
            declare=[Exchange("events", type="topic", durable=True)],
        )


def signed_by_orders(event: Event, key_file) -> dict[str, str]:
    payload = event_payload(body=event.to_json().encode(), signer="orders")
    return signature_headers(
        signer="orders", payload=payload, private_key=private_key_load(key_file)
    )


def dead_letters() -> list[str]:
    reasons = []
    with broker() as connection:
        queue = Queue("gateway.events.dlq", durable=True)(connection.channel())
        while (message := queue.get(no_ack=True)) is not None:
            reasons.append(message.headers["x-dlq-reason"])
    return reasons


def run_feed(scenario):
    """Start a feed on this loop, run ``scenario(feed, hub)``, stop the feed."""

    async def main():
        hub = OrderEventHub()
        feed = OrderEventFeed(hub=hub, loop=asyncio.get_running_loop())
        feed.start()
        try:
            await asyncio.wait_for(feed.ready.wait(), 10)
            return await scenario(feed, hub)
        finally:
            await asyncio.to_thread(feed.stop)

    return asyncio.run(main())


def test_a_signed_order_event_reaches_the_streams_of_its_order(embedded_broker):
    event = event_of("order-1")

    async def scenario(feed, hub):
        inbox = hub.subscribe("order-1")
        await asyncio.to_thread(publish, event, signed_by_orders(event, embedded_broker))
        return await asyncio.wait_for(inbox.get(), 10)

    assert run_feed(scenario).id == event.id


def test_an_unsigned_order_event_is_dead_lettered_never_streamed(embedded_broker):
    forged = event_of("order-1")

    async def scenario(feed, hub):
        inbox = hub.subscribe("order-1")
        await asyncio.to_thread(publish, forged, {})
        deadline = time.monotonic() + 60  # a loaded machine: what is waited on is the feed
        while not (feed.dead_lettered or feed.received) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return feed.dead_lettered, inbox.qsize()

    assert run_feed(scenario) == (1, 0)
    assert [reason.startswith("refused event: unsigned") for reason in dead_letters()] == [True]


def test_an_order_event_of_a_version_the_gateway_does_not_know_is_dead_lettered(embedded_broker):
    # contracts/consumers/gateway/: the feed accepts v1 of orders' events only.
    newer = dataclasses.replace(
        event_of("order-1"), dataschema=event_schema_uri("order.approved", 2)
    )

    async def scenario(feed, hub):
        inbox = hub.subscribe("order-1")
        await asyncio.to_thread(publish, newer, signed_by_orders(newer, embedded_broker))
        deadline = time.monotonic() + 60  # a loaded machine: what is waited on is the feed
        while not (feed.dead_lettered or feed.received) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return feed.dead_lettered, inbox.qsize()

    assert run_feed(scenario) == (1, 0)
    assert dead_letters() == [
        "invalid event: UnknownEventVersion: order.approved v2 is not known here (known: v1)"
    ]


def test_a_dead_workers_queue_is_removed_and_a_stopped_ones_too(embedded_broker):
    exchange = Exchange("events", type="topic", durable=True)
    dead = f"{queue_prefix()}host-1-dead"
    with broker() as connection:
        Queue(dead, exchange=exchange, routing_key="order.#")(connection.channel()).declare()

    def bound() -> set[str]:
        with broker() as connection:
            return {row.queue for row in connection.channel().get_table("events")}

    async def scenario(feed, hub):
        return bound(), feed.queue_name

    during, own = run_feed(scenario)

    assert dead not in during
    assert own in during
    assert own not in bound()
    assert json.dumps(sorted(bound())) == "[]"
