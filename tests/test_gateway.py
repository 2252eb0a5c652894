"""The gateway as the single entry point, with real processes behind it.

catalog and users are the real services; ``orders`` is a ControlledUpstream (a
real HTTP server the test steers) wherever a test needs slowness, chosen
status codes, a huge body or a request count that no real service gives on
demand.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
import uuid
from dataclasses import dataclass

import httpx
import pytest

from tests.harness import REDIS_URL, RunningService, ServiceLauncher, free_port
from tests.upstream import ControlledUpstream

pytestmark = pytest.mark.system

PASSWORD = "correct horse battery"


@dataclass
class Stack:
    gateway: RunningService
    users: RunningService
    catalog: RunningService
    orders: ControlledUpstream

    def url(self, path: str) -> str:
        return f"{self.gateway.url}{path}"


def start_stack(launcher: ServiceLauncher, orders: ControlledUpstream, **gateway_env: str) -> Stack:
    gateway_port = free_port()
    verifier = {"JWT_JWKS_URL": f"http://127.0.0.1:{gateway_port}/.well-known/jwks.json"}
    users = launcher.start("users", env=verifier)
    catalog = launcher.start("catalog", seed=True, env=verifier)
    gateway = launcher.start(
        "gateway",
        port=gateway_port,
        env={
            "CATALOG_URL": catalog.url,
            "USERS_URL": users.url,
            "ORDERS_URL": orders.url,
            "LOGIN_RATE_PER_IP": "1000/min",
            "GATEWAY_RATE_LIMIT_ANONYMOUS": "1000/min",
            "GATEWAY_RATE_LIMIT_AUTHENTICATED": "1000/min",
            "GATEWAY_SCHEMA_TTL_SECONDS": "0.5",
            **gateway_env,
        },
    )
    return Stack(gateway=gateway, users=users, catalog=catalog, orders=orders)


@pytest.fixture(scope="module")
def orders() -> ControlledUpstream:
    upstream = ControlledUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def stack(module_services: ServiceLauncher, orders: ControlledUpstream) -> Stack:
    return start_stack(
        module_services,
        orders,
        GATEWAY_ROUTE_OVERRIDES=json.dumps({"orders": {"read_timeout": 0.5}}),
        GATEWAY_MAX_BODY_BYTES="10000",
        # Nothing exports here; asked for a sampler, the gateway traces all the same
        # (ids, no recording), which the trace-context tests below follow.
        OTEL_TRACES_SAMPLER="parentbased_always_off",
        # The failure tests here make orders fail on purpose, more than five times
        # in a row; with the default the breaker would stay open for the tests
        # after them (for as long as the reset timeout, however fast they run).
        # Breakers are tested on stacks of their own.
        GATEWAY_BREAKER_FAIL_MAX="1000",
        GATEWAY_UPSTREAM_MAX_REQUESTS="3",
    )


def customer_token(stack: Stack) -> tuple[str, str]:
    """A new customer's access token and id, registered and logged in through the gateway."""
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    registered = httpx.post(
        stack.url("/api/users/register/"), json={"email": email, "password": PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    login = httpx.post(stack.url("/api/auth/token/"), json={"email": email, "password": PASSWORD})
    return login.json()["access"], str(registered.json()["id"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- every route through the gateway ----------------------------------------------------------


def test_catalog_reads_pass_through_unchanged(stack):
    via_gateway = httpx.get(stack.url("/api/catalog/products/"), params={"search": "kettle"})
    direct = httpx.get(f"{stack.catalog.url}/api/catalog/products/", params={"search": "kettle"})

    assert via_gateway.status_code == 200
    assert via_gateway.json()["results"] == direct.json()["results"]
    assert via_gateway.json()["count"] == 1


def test_conditional_get_works_through_the_gateway(stack):
    first = httpx.get(stack.url("/api/catalog/products/1/"))
    again = httpx.get(
        stack.url("/api/catalog/products/1/"), headers={"If-None-Match": first.headers["etag"]}
    )
    assert first.headers["etag"]
    assert again.status_code == 304
    assert again.content == b""


def test_register_login_and_me_through_the_gateway(stack):
    token, user_id = customer_token(stack)
    me = httpx.get(stack.url("/api/users/me/"), headers=bearer(token))
    assert me.status_code == 200
    assert str(me.json()["id"]) == user_id


def test_staff_writes_reach_the_catalog_and_customers_are_refused_there(stack):
    stack.users.manage("ensure_admin", "--email", "boss@example.com", "--password", PASSWORD)
    staff = httpx.post(
        stack.url("/api/auth/token/"), json={"email": "boss@example.com", "password": PASSWORD}
    ).json()["access"]
    customer, _ = customer_token(stack)

    as_staff = httpx.post(
        stack.url("/api/catalog/products/2/stock/"), json={"delta": 3}, headers=bearer(staff)
    )
    as_customer = httpx.post(
        stack.url("/api/catalog/products/2/stock/"), json={"delta": 3}, headers=bearer(customer)
    )

    assert as_staff.status_code == 200
    assert as_customer.status_code == 403
    assert as_customer.headers["content-type"] == "application/problem+json"


def test_the_orders_route_needs_a_token(stack):
    response = httpx.get(stack.url("/api/orders/"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["code"] == "not_authenticated"


def test_a_bad_token_is_refused_at_the_edge(stack):
    before = len(stack.orders.received)
    response = httpx.get(stack.url("/api/orders/"), headers=bearer("not.a.token"))
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert len(stack.orders.received) == before  # never reached the upstream


def test_an_unknown_prefix_is_404_problem(stack):
    response = httpx.get(stack.url("/api/nowhere/x/"))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


# --- what is forwarded ------------------------------------------------------------------------


def test_methods_bodies_queries_and_statuses_pass_through(stack):
    token, _ = customer_token(stack)
    body = bytes(range(256)) * 4
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = httpx.request(
            method,
            stack.url("/api/orders/echo/a%2Fb/?x=1&y=%C3%A9"),
            content=body if method != "DELETE" else b"",
            headers={**bearer(token), "Content-Type": "application/octet-stream"},
        )
        echo = response.json()
        assert response.status_code == 200
        assert echo["method"] == method
        assert echo["target"] == "/api/orders/echo/a%2Fb/?x=1&y=%C3%A9"
        if method != "DELETE":
            assert echo["body"].encode("latin-1") == body
    teapot = httpx.get(stack.url("/api/orders/status/418/"), headers=bearer(token))
    assert teapot.status_code == 418


def test_headers_are_forwarded_without_hop_by_hop_ones(stack):
    token, _ = customer_token(stack)
    response = httpx.get(
        stack.url("/api/orders/echo/headers/"),
        headers={
            **bearer(token),
            "X-Custom": "kept",
            "Connection": "keep-alive, X-Private-Hop",
            "X-Private-Hop": "dropped",
            "Keep-Alive": "timeout=5",
            "X-Request-ID": "trace-me-123",
            "X-Forwarded-For": "203.0.113.7",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        },
    )
    sent = response.json()["headers"]

    assert sent["x-custom"] == "kept"
    assert sent["accept-encoding"] == response.request.headers["accept-encoding"]
    assert sent["authorization"] == f"Bearer {token}"  # services verify again
    assert "x-private-hop" not in sent
    assert "keep-alive" not in sent
    assert sent["x-request-id"] == "trace-me-123"
    assert sent["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-host"] == stack.gateway.url.removeprefix("http://")
    # The client's trace, continued by a span of the gateway's own.
    assert sent["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert sent["traceparent"] != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert response.headers["x-request-id"] == "trace-me-123"
    assert response.headers["x-echo"] == "yes"  # upstream response headers come back


def test_the_gateway_adds_no_headers_of_its_http_clients_own(stack):
    token, _ = customer_token(stack)
    # A raw request: httpx, like most clients, would send Accept and Accept-Encoding itself.
    host, port = stack.gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(
            f"GET /api/orders/echo/negotiation/ HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n".encode()
        )
        raw = b""
        while chunk := connection.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    sent = json.loads(body)["headers"]
    # Else an upstream that compresses would answer gzip to a client that never asked for it.
    assert "accept-encoding" not in sent
    assert "accept" not in sent

    # Nor a Content-Type the client did not send (aiohttp's default is application/octet-stream).
    posted = httpx.post(
        stack.url("/api/orders/echo/negotiation/"), content=b"raw bytes", headers=bearer(token)
    )
    assert posted.json()["body"] == "raw bytes"
    assert "content-type" not in posted.json()["headers"]
    typed = httpx.post(
        stack.url("/api/orders/echo/negotiation/"),
        content=b"a,b\n1,2\n",
        headers={**bearer(token), "Content-Type": "text/csv; charset=utf-8"},
    )
    assert typed.json()["headers"]["content-type"] == "text/csv; charset=utf-8"


def test_pooled_upstream_connections_are_retired_after_their_quota_of_requests(stack):
    token, _ = customer_token(stack)
    marker = uuid.uuid4().hex
    with httpx.Client(headers=bearer(token)) as client:
        for _ in range(9):
            assert client.get(stack.url(f"/api/orders/echo/{marker}/")).status_code == 200
    ports = [r.peer_port for r in stack.orders.received if marker in r.target]
    assert len(ports) == 9
    # GATEWAY_UPSTREAM_MAX_REQUESTS=3: no connection carries more, so 9 need at least 3.
    assert max(ports.count(port) for port in ports) <= 3
    assert len(set(ports)) >= 3


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from a /metrics page, 0 when it is not there yet."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(wanted)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def metric_growth(before: str, after: str, name: str, **labels: str) -> float:
    return metric(after, name, **labels) - metric(before, name, **labels)


def test_proxied_requests_are_counted_and_timed_on_metrics(stack):
    before = httpx.get(stack.url("/metrics")).text
    for _ in range(3):
        assert httpx.get(stack.url("/api/catalog/products/")).status_code == 200
    after = httpx.get(stack.url("/metrics")).text

    def grew(name: str, **labels: str) -> float:
        return metric_growth(before, after, name, **labels)

    assert grew("gateway_proxied_requests_total", status="200", upstream="catalog") == 3
    assert grew("gateway_proxied_request_duration_seconds_count", upstream="catalog") == 3
    assert grew("gateway_proxied_request_duration_seconds_sum", upstream="catalog") > 0
    within_timeout = grew(
        "gateway_proxied_request_duration_seconds_bucket", le="10.0", upstream="catalog"
    )
    assert within_timeout == 3


def test_a_request_id_is_made_when_the_client_sends_none(stack):
    token, _ = customer_token(stack)
    response = httpx.get(stack.url("/api/orders/echo/id/"), headers=bearer(token))
    made = response.headers["x-request-id"]
    assert len(made) == 32
    assert response.json()["headers"]["x-request-id"] == made
    assert made in stack.gateway.log_path.read_text()  # in the gateway's log line
    started = response.json()["headers"]["traceparent"]  # and a trace is started
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", started)
    assert started[3:35] in stack.gateway.log_path.read_text()


def test_large_responses_stream_through_whole(stack):
    token, _ = customer_token(stack)
    with httpx.stream("GET", stack.url("/api/orders/big/"), headers=bearer(token)) as response:
        size = sum(len(chunk) for chunk in response.iter_bytes())
    assert response.status_code == 200
    assert size == stack.orders.big_size


def test_a_body_over_the_limit_gets_413(stack):
    token, _ = customer_token(stack)
    response = httpx.post(stack.url("/api/orders/"), content=b"x" * 20_000, headers=bearer(token))
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_responses_carry_rate_limit_headers(stack):
    response = httpx.get(stack.url("/api/catalog/categories/"))
    assert response.headers["ratelimit-limit"] == "1000"
    assert int(response.headers["ratelimit-remaining"]) < 1000
    assert int(response.headers["ratelimit-reset"]) > 0


# --- failures ---------------------------------------------------------------------------------


def test_a_slow_upstream_gets_504_at_the_timeout(stack):
    token, _ = customer_token(stack)
    stack.orders.delay = 2.0
    try:
        started = time.monotonic()
        response = httpx.get(stack.url("/api/orders/slow/"), headers=bearer(token), timeout=10)
        elapsed = time.monotonic() - started
    finally:
        stack.orders.delay = 0.0
    assert response.status_code == 504
    assert response.json()["code"] == "gateway_timeout"
    assert 0.4 < elapsed < 1.5


def test_post_is_never_retried_but_get_is(stack):
    token, _ = customer_token(stack)
    stack.orders.status_by_method = {"POST": 503, "GET": 503}
    marker = uuid.uuid4().hex
    try:
        post = httpx.post(stack.url(f"/api/orders/echo/{marker}/"), json={}, headers=bearer(token))
        get = httpx.get(stack.url(f"/api/orders/echo/{marker}/"), headers=bearer(token))
    finally:
        stack.orders.status_by_method = {}
    assert post.status_code == 503
    assert stack.orders.count("POST", f"/api/orders/echo/{marker}/") == 1
    assert get.status_code == 503
    assert stack.orders.count("GET", f"/api/orders/echo/{marker}/") == 3  # 1 + 2 retries


def test_a_dead_upstream_is_cut_off_by_its_breaker(services):
    dead = ControlledUpstream().start()
    dead.stop()  # its port now refuses connections
    gateway = services.start(
        "gateway",
        env={
            "ORDERS_URL": dead.url,
            "GATEWAY_BREAKER_FAIL_MAX": "3",
            "GATEWAY_BREAKER_RESET_TIMEOUT": "30",
            "GATEWAY_RATE_LIMIT_AUTHENTICATED": "1000/min",
        },
    )
    token = gateway.manage("issue_service_token", "tester").stdout.strip()
    with httpx.Client(base_url=gateway.url, headers=bearer(token)) as client:
        first = client.get("/api/orders/")
        timings, answers = [], []
        for _ in range(5):
            started = time.monotonic()
            answers.append(client.get("/api/orders/"))
            timings.append(time.monotonic() - started)

    assert first.status_code == 502  # refused three times (two retries): the breaker trips
    assert [answer.status_code for answer in answers] == [503] * 5
    assert answers[0].json()["code"] == "service_unavailable"
    assert int(answers[0].headers["retry-after"]) > 0
    assert max(timings) < 0.1, timings
    status = gateway.manage("gateway_status", "--url", gateway.url).stdout
    assert "open" in status


# --- composition and docs ---------------------------------------------------------------------


def test_order_details_join_the_order_its_products_and_the_customer(stack):
    token, user_id = customer_token(stack)
    order_id = uuid.uuid4().hex
    stack.orders.documents[order_id] = {
        "id": order_id,
        "customer_id": user_id,
        "status": "APPROVED",
        "lines": [
            {"product_id": 1, "quantity": 2, "unit_price": "549.00"},
            {"product_id": 999999, "quantity": 1, "unit_price": "1.00"},
        ],
    }

    response = httpx.get(stack.url(f"/api/orders/{order_id}/details/"), headers=bearer(token))
    body = response.json()

    assert response.status_code == 200
    assert body["order"]["id"] == order_id
    assert body["lines"][0]["product"]["sku"] == "DEMO-02001"
    assert body["lines"][1]["product"] is None  # a part that fails is null...
    assert any("999999" in warning for warning in body["warnings"])  # ...with a warning
    assert str(body["customer"]["id"]) == user_id
    sent = stack.orders.received[-1]
    assert sent.headers["authorization"] == f"Bearer {token}"  # orders decides who may see it


def test_order_details_of_an_unknown_order_is_404_logged_and_counted(stack):
    token, _ = customer_token(stack)
    before = httpx.get(stack.url("/metrics")).text
    request_id = f"details-{uuid.uuid4().hex}"
    response = httpx.get(
        stack.url("/api/orders/nope/details/"),
        headers={**bearer(token), "X-Request-ID": request_id},
    )
    assert response.status_code == 404
    assert response.headers["x-request-id"] == request_id

    # Like every proxied request: an access line with the request id, and the metrics.
    lines = [
        json.loads(line)
        for line in stack.gateway.log_path.read_text().splitlines()
        if request_id in line and line.startswith("{")
    ]
    access = [line for line in lines if line.get("logger") == "gateway.access"]
    assert len(access) == 1
    assert access[0]["status"] == 404
    assert access[0]["upstream"] == "composition"
    assert access[0]["path"] == "/api/orders/nope/details/"
    after = httpx.get(stack.url("/metrics")).text
    counted = metric_growth(
        before, after, "gateway_proxied_requests_total", status="404", upstream="composition"
    )
    assert counted == 1


def test_one_document_describes_the_whole_system_and_follows_changes(stack):
    stack.orders.schema = {
        "openapi": "3.0.3",
        "paths": {"/api/orders/v1/": {"get": {"operationId": "v1"}}},
    }
    first = httpx.get(
        stack.url("/api/schema/"), headers={"Accept": "application/vnd.oai.openapi+json"}
    ).json()
    stack.orders.schema = {
        "openapi": "3.0.3",
        "paths": {"/api/orders/v2/": {"get": {"operationId": "v2"}}},
    }
    time.sleep(0.6)
    second = httpx.get(
        stack.url("/api/schema/"), headers={"Accept": "application/vnd.oai.openapi+json"}
    ).json()
    docs = httpx.get(stack.url("/api/docs/"))

    assert {"/api/auth/token/", "/api/catalog/products/", "/api/users/register/"} <= set(
        first["paths"]
    )
    assert not any(path.startswith("/internal/") for path in first["paths"])
    assert "/api/orders/v1/" in first["paths"]
    assert "/api/orders/v2/" in second["paths"]
    assert "/api/orders/v1/" not in second["paths"]
    assert docs.status_code == 200


# --- rate limits ------------------------------------------------------------------------------


def rate_window_begun() -> None:
    """Return early in a minute. The gateway's rate-limit windows are the clock's minutes:
    requests that must share one window fail if one ends between them (counts reset)."""
    into_the_minute = time.time() % 60
    if into_the_minute > 40:
        time.sleep(60.2 - into_the_minute)


def test_rate_limits_answer_429_per_ip_and_per_user(services, orders):
    limited = start_stack(
        services,
        orders,
        GATEWAY_RATE_LIMIT_ANONYMOUS="3/min",
        GATEWAY_RATE_LIMIT_AUTHENTICATED="4/min",
    )
    token = limited.gateway.manage("issue_service_token", "tester").stdout.strip()
    rate_window_begun()
    anonymous = [httpx.get(limited.url("/api/catalog/categories/")).status_code for _ in range(4)]
    refused = httpx.get(limited.url("/api/catalog/categories/"))
    user = [
        httpx.get(limited.url("/api/catalog/categories/"), headers=bearer(token)).status_code
        for _ in range(5)
    ]

    assert anonymous == [200, 200, 200, 429]
    assert user == [200, 200, 200, 200, 429]  # a user has a budget of their own
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "too_many_requests"
    assert int(refused.headers["retry-after"]) > 0
    assert refused.headers["ratelimit-remaining"] == "0"


def test_the_bulkhead_refuses_at_once_past_its_limit(services):
    slow = ControlledUpstream(delay=1.5).start()
    gateway = services.start("gateway", env={"ORDERS_URL": slow.url, "GATEWAY_BULKHEAD_LIMIT": "2"})
    token = gateway.manage("issue_service_token", "tester").stdout.strip()

    async def fire() -> list[tuple[int, float, str]]:
        async with httpx.AsyncClient(base_url=gateway.url, headers=bearer(token)) as client:

            async def one() -> tuple[int, float, str]:
                started = time.monotonic()
                response = await client.get("/api/orders/slow/", timeout=10)
                code = response.json().get("code", "") if response.status_code != 200 else ""
                return response.status_code, time.monotonic() - started, code

            return await asyncio.gather(*(one() for _ in range(5)))

    try:
        results = asyncio.run(fire())
    finally:
        slow.stop()
    refused = [r for r in results if r[0] == 503]
    assert sorted(r[0] for r in results) == [200, 200, 503, 503, 503]
    assert {r[2] for r in refused} == {"service_busy"}
    assert max(r[1] for r in refused) < 1.0  # refused at once, not queued behind the slow ones


def test_breakers_and_rate_limits_live_in_redis_for_every_worker(services):
    import redis

    dead = ControlledUpstream().start()
    dead.stop()
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    gateway = services.start(
        "gateway",
        env={
            "ORDERS_URL": dead.url,
            "WEB_CONCURRENCY": "2",
            "GATEWAY_REDIS_URL": REDIS_URL,
            "GATEWAY_REDIS_PREFIX": prefix,
            "GATEWAY_BREAKER_FAIL_MAX": "3",
            "GATEWAY_BREAKER_RESET_TIMEOUT": "30",
            "GATEWAY_RATE_LIMIT_AUTHENTICATED": "6/min",
        },
    )
    token = gateway.manage("issue_service_token", "tester").stdout.strip()
    store = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    rate_window_begun()
    try:
        # New connections each time: gunicorn's two workers share the requests.
        statuses = [
            httpx.get(f"{gateway.url}/api/orders/", headers=bearer(token)).status_code
            for _ in range(7)
        ]
        states = {key: store.get(key) for key in store.scan_iter(f"{prefix}:breaker:orders:*state")}
        counts = [int(store.get(key)) for key in store.scan_iter(f"{prefix}:rate:*service:tester*")]
    finally:
        for key in store.scan_iter(f"{prefix}:*"):
            store.delete(key)
    assert statuses[0] == 502
    assert statuses[1:6] == [503] * 5  # open for every worker, wherever the request landed
    assert statuses[6] == 429  # the seventh of a 6/min budget, counted across workers
    assert list(states.values()) == ["open"]
    assert counts == [7]
