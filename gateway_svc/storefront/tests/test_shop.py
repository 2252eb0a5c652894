"""storefront.shop against a real HTTP server on loopback, through the proxy's upstreams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from proxy.client import UpstreamClient
from proxy.routes import routes_from_settings
from proxy.runtime import Runtime, StatusCollector
from proxy.upstreams import Upstream

from common.discovery.static import StaticDiscovery
from storefront import shop
from storefront.errors import ShopUnavailable

Handler = Callable[[bytes, bytes, asyncio.StreamWriter], Awaitable[None]]


def respond(status: str, body: Any) -> bytes:
    payload = json.dumps(body).encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


async def with_upstream(settings, handler: Handler, scenario: Callable[[], Awaitable[None]]):
    """Serve ``handler`` as every service, with a runtime (one breaker per instance, the
    routes' timeouts) as the gateway's worker has it, then run ``scenario``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await handler(head, await reader.readexactly(length), writer)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    config = {
        **settings.GATEWAY,
        "ROUTE_DEFAULTS": {**settings.GATEWAY["ROUTE_DEFAULTS"], "read_timeout": 0.3},
        "REDIS_URL": "",
    }
    routes = routes_from_settings(config)
    discovery = StaticDiscovery(urls={service: [url] for service in routes})
    runtime = Runtime(routes=routes, discovery=discovery, config=config, num_proxies=0)
    runtime.http = UpstreamClient()
    for name in routes:
        runtime.upstreams[name] = Upstream(
            name,
            discovery=discovery,
            http=runtime.http,
            bulkhead_limit=10,
            breaker_fail_max=5,
            breaker_reset_timeout=10,
        )
    previous, StatusCollector.current = StatusCollector.current, runtime
    try:
        async with server:
            await scenario()
    finally:
        StatusCollector.current = previous
        runtime.http.close()


def test_a_call_carries_the_customers_token_and_the_idempotency_key(settings):
    seen: list[bytes] = []

    async def handler(head, body, writer):
        seen.append(head + body)
        writer.write(respond("202 Accepted", {"id": "o-1", "status": "PENDING"}))

    async def scenario():
        answer = await shop.shop_call(
            "POST", "/api/orders/", access="tok", body={"lines": []}, idempotency_key="k-1"
        )
        assert answer.status == 202
        assert answer.body == {"id": "o-1", "status": "PENDING"}

    asyncio.run(with_upstream(settings, handler, scenario))

    (request,) = seen
    assert request.startswith(b"POST /api/orders/ HTTP/1.1")
    assert b"Authorization: Bearer tok\r\n" in request
    assert b"Idempotency-Key: k-1\r\n" in request
    assert request.endswith(b'{"lines": []}')


def test_a_query_is_encoded_into_the_target(settings):
    seen: list[bytes] = []

    async def handler(head, body, writer):
        seen.append(head)
        writer.write(respond("200 OK", {"count": 0, "results": []}))

    async def scenario():
        await shop.shop_call("GET", "/api/catalog/products/", query={"search": "a b", "page": 2})

    asyncio.run(with_upstream(settings, handler, scenario))

    assert seen[0].startswith(b"GET /api/catalog/products/?search=a+b&page=2 HTTP/1.1")


def test_a_service_that_does_not_answer_in_time_is_a_timeout_in_words(settings):
    async def handler(head, body, writer):
        await asyncio.sleep(1)  # past the route's read timeout (0.3 s)

    async def scenario():
        with pytest.raises(ShopUnavailable) as raised:
            await shop.shop_call("POST", "/api/orders/", access="tok", body={"lines": []})
        assert raised.value.kind == "timeout"
        assert raised.value.message.startswith("The shop took too long to answer.")

    asyncio.run(with_upstream(settings, handler, scenario))


def test_a_failing_service_is_unavailable_and_never_shown_as_its_answer(settings):
    async def handler(head, body, writer):
        writer.write(respond("500 Internal Server Error", {"code": "server_error"}))

    async def scenario():
        with pytest.raises(ShopUnavailable) as raised:
            await shop.shop_call("POST", "/api/orders/", access="tok", body={"lines": []})
        assert raised.value.kind == "unavailable"
        assert "server_error" not in raised.value.message

    asyncio.run(with_upstream(settings, handler, scenario))


def test_without_the_proxys_runtime_the_shop_is_unavailable(monkeypatch):
    monkeypatch.setattr(StatusCollector, "current", None)

    with pytest.raises(ShopUnavailable) as raised:
        asyncio.run(shop.shop_call("GET", "/api/catalog/products/"))

    assert raised.value.kind == "unavailable"
