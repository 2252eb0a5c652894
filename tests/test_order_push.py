"""The order status push channel (``GET /api/orders/{id}/events/``, SSE) with every
process real: the gateway hears orders' events from the broker (RabbitMQ, and the
embedded ``filesystem://`` broker of ``make run``) and streams them to the client.

The streams' fallback reads are pushed out of reach (``GATEWAY_PUSH_POLL_SECONDS`` and
``..._RESYNC_SECONDS`` of 10 minutes), so an event that arrives while a stream is open
came through the broker. To have events happen while a stream is open, the orders
service's worker and outbox relay are stopped while the order is placed and started
again once the stream has its first event.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from tests.harness import RunningService, ServiceLauncher, shop_start
from tests.test_saga import Shop, customer, place, settled

pytestmark = pytest.mark.system

FAR = "600"
PUSH_ENV = {
    "GATEWAY_RATE_LIMIT_AUTHENTICATED": "100000/min",
    "LOGIN_RATE_PER_IP": "100000/min",
    "GATEWAY_PUSH_POLL_SECONDS": FAR,
    "GATEWAY_PUSH_RESYNC_SECONDS": FAR,
}
STREAM_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
# Stopping orders' processes mid-saga may leave a command unanswered: the watchdog resends.
SAGA_WATCHED = {"orders_env": {"SAGA_STEP_TIMEOUT_SECONDS": "5"}, "watchdog": True}


@pytest.fixture(scope="module")
def shop(module_services: ServiceLauncher) -> Shop:
    return Shop(**shop_start(module_services, gateway_env=PUSH_ENV, **SAGA_WATCHED))


@pytest.fixture(scope="module")
def embedded_shop(
    module_services: ServiceLauncher, tmp_path_factory: pytest.TempPathFactory
) -> Shop:
    """The same shop on the embedded broker, as `make run` has it (one folder for all)."""
    broker = {
        "BROKER_URL": "filesystem://",
        "BROKER_FOLDER": str(tmp_path_factory.mktemp("broker")),
    }
    return Shop(**shop_start(module_services, env=broker, gateway_env=PUSH_ENV, **SAGA_WATCHED))


def stream(
    shop: Shop,
    order_id: str,
    headers: dict[str, str],
    on_open: Callable[[], None] | None = None,
) -> Iterator[ServerSentEvent]:
    """The stream's events (``on_open`` runs once it answered, before the first is read)."""
    with (
        httpx.Client(timeout=STREAM_TIMEOUT) as client,
        connect_sse(
            client,
            "GET",
            shop.url(f"/api/orders/{order_id}/events/"),
            headers=dict(headers),  # connect_sse adds its Accept to the dict it is given
        ) as source,
    ):
        assert source.response.status_code == 200, source.response.read()
        assert source.response.headers["content-type"].startswith("text/event-stream")
        if on_open is not None:
            on_open()
        # What a browser dispatches: a block with data (not the opening "retry:" alone).
        yield from (event for event in source.iter_sse() if event.data)


def orders_paused(orders: RunningService) -> None:
    """Stop orders' worker, relay and watchdog: the saga waits, and nothing is published."""
    orders.stop_workers()


def orders_resumed(orders: RunningService) -> None:
    orders.start_worker()
    orders.start_manage("outbox_relay")
    orders.start_manage("saga_watchdog")


def history_types(shop: Shop, headers: dict[str, str], order_id: str) -> list[str]:
    order = httpx.get(shop.url(f"/api/orders/{order_id}/"), headers=headers).json()
    return [entry["type"] for entry in order["history"]]


@pytest.mark.parametrize("broker", ["rabbitmq", "filesystem"])
def test_an_orders_events_arrive_in_order_ending_with_its_final_status(request, broker):
    shop = request.getfixturevalue("shop" if broker == "rabbitmq" else "embedded_shop")
    headers = customer(shop)
    orders_paused(shop.orders)
    try:
        order_id = place(shop, headers, [{"product_id": 3, "quantity": 1}])
        received = []
        for event in stream(shop, order_id, headers):
            received.append(event)
            if len(received) == 1:
                orders_resumed(shop.orders)  # the rest happens while the stream is open
            if event.json()["final"]:
                break
    finally:
        if not shop.orders.extra.get("workers"):
            orders_resumed(shop.orders)

    payloads = [event.json() for event in received]
    assert [event.id for event in received] == [str(n) for n in range(1, len(received) + 1)]
    assert [p["type"] for p in payloads] == history_types(shop, headers, order_id)
    assert payloads[0]["status"] == "PENDING"
    assert payloads[-1]["type"] == "order.approved"
    assert payloads[-1]["status"] == "APPROVED"
    assert payloads[-1]["final"] is True
    assert {p["order_id"] for p in payloads} == {order_id}


def test_a_reconnect_with_last_event_id_resumes_without_loss_or_duplicates(shop):
    headers = customer(shop)
    orders_paused(shop.orders)
    try:
        order_id = place(shop, headers, [{"product_id": 4, "quantity": 1}])
        first = next(stream(shop, order_id, headers))  # then the connection is dropped
        rest = []
        # Back with nothing new yet; the saga goes on once the stream is open again.
        resumed = stream(
            shop,
            order_id,
            {**headers, "Last-Event-ID": first.id},
            on_open=lambda: orders_resumed(shop.orders),
        )
        for event in resumed:
            rest.append(event)
            if event.json()["final"]:
                break
    finally:
        if not shop.orders.extra.get("workers"):
            orders_resumed(shop.orders)
    after_final = httpx.get(
        shop.url(f"/api/orders/{order_id}/events/"),
        headers={**headers, "Last-Event-ID": rest[-1].id},
        timeout=STREAM_TIMEOUT,
    )

    versions = [int(first.id)] + [int(event.id) for event in rest]
    assert versions == list(range(1, len(versions) + 1))
    assert [first.json()["type"]] + [e.json()["type"] for e in rest] == history_types(
        shop, headers, order_id
    )
    assert after_final.status_code == 204  # all sent: EventSource stops reconnecting


def test_another_customers_order_is_refused(shop):
    owner = customer(shop)
    stranger = customer(shop)
    order_id = place(shop, owner, [{"product_id": 1, "quantity": 1}])

    refused = httpx.get(shop.url(f"/api/orders/{order_id}/events/"), headers=stranger)
    unknown = httpx.get(shop.url(f"/api/orders/{uuid.uuid4()}/events/"), headers=owner)

    assert refused.status_code == 404
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 404
    assert unknown.status_code == 404


def test_a_stream_without_credentials_is_401(shop):
    owner = customer(shop)
    order_id = place(shop, owner, [{"product_id": 1, "quantity": 1}])

    anonymous = httpx.get(shop.url(f"/api/orders/{order_id}/events/"))
    forged = httpx.get(
        shop.url(f"/api/orders/{order_id}/events/"), headers={"Authorization": "Bearer nope"}
    )

    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.json()["code"] == "not_authenticated"
    assert forged.status_code == 401
    assert forged.json()["code"] == "authentication_failed"


def storefront_session(shop: Shop, headers: dict[str, str]) -> dict[str, str]:
    """A browser's cookie for a storefront session holding this customer's access token,
    as the storefront keeps it after a sign-in (storefront/auth.py)."""
    token = headers["Authorization"].removeprefix("Bearer ")
    session_key = (
        shop.gateway.manage(
            "shell",
            "-c",
            "from django.contrib.sessions.backends.db import SessionStore; "
            "from storefront.auth import SESSION_TOKENS; s = SessionStore(); "
            f"s[SESSION_TOKENS] = {{'access': {token!r}, 'refresh': '', "
            "'expires_at': 4102444800, 'user': {}}; s.create(); print(s.session_key)",
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    return {"Cookie": f"sessionid={session_key}"}


def test_a_browser_reads_the_stream_with_its_storefront_session(shop):
    owner = customer(shop)
    order_id = place(shop, owner, [{"product_id": 2, "quantity": 1}])
    settled(shop, owner, order_id)

    events = list(stream(shop, order_id, storefront_session(shop, owner)))
    strangers = httpx.get(
        shop.url(f"/api/orders/{order_id}/events/"),
        headers=storefront_session(shop, customer(shop)),
    )

    assert [event.id for event in events] == [str(n) for n in range(1, len(events) + 1)]
    assert events[-1].json()["final"] is True
    assert strangers.status_code == 404


def test_a_stream_that_hears_no_event_still_ends_with_the_final_status(shop, module_services):
    """The fallback: a gateway whose subscription hears nothing (its own QUEUE_PREFIX, so
    its exchange is one nobody publishes to) reads the order every second instead."""
    keys = shop.gateway.var_dir / "jwt"
    deaf = module_services.start(
        "gateway",
        instance_of=shop.gateway,
        env={
            "CATALOG_URL": shop.catalog.url,
            "USERS_URL": shop.users.url,
            "ORDERS_URL": shop.orders.url,
            "JWT_PRIVATE_KEY": str(keys / "private.pem"),
            "JWT_PUBLIC_KEY": str(keys / "public.pem"),
            "QUEUE_PREFIX": f"deaf-{uuid.uuid4().hex[:6]}-",
            "GATEWAY_PUSH_RESYNC_SECONDS": "1",
            "GATEWAY_PUSH_POLL_SECONDS": "1",
        },
    )
    deaf_shop = Shop(gateway=deaf, catalog=shop.catalog, users=shop.users, orders=shop.orders)
    headers = customer(shop)
    orders_paused(shop.orders)
    try:
        order_id = place(shop, headers, [{"product_id": 5, "quantity": 1}])
        received = []
        for event in stream(deaf_shop, order_id, headers):
            received.append(event)
            if len(received) == 1:
                orders_resumed(shop.orders)
            if event.json()["final"]:
                break
    finally:
        if not shop.orders.extra.get("workers"):
            orders_resumed(shop.orders)

    assert [event.id for event in received] == [str(n) for n in range(1, len(received) + 1)]
    assert [e.json()["type"] for e in received] == history_types(shop, headers, order_id)
    assert received[-1].json()["final"] is True
