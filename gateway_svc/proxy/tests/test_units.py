"""The proxy's pure logic; the real traffic tests are in tests/test_gateway.py."""

import asyncio
import time
from types import SimpleNamespace

import pytest
from opentelemetry import trace

import common.auth
from common.auth import VerifiedTokens
from common.discovery.static import StaticDiscovery
from common.testing.tokens import *  # noqa: F403 - make_token for the verifier
from common.testing.tracing import traceparent_of
from proxy.app import GatewayApp
from proxy.client import UpstreamClient, should_retire
from proxy.openapi import merge
from proxy.ratelimit import LocalRateLimiter
from proxy.resilience import Bulkhead, InstanceBreaker
from proxy.responses import server_span_end, server_span_start, trace_headers
from proxy.routes import Rate, Route, routes_from_settings
from proxy.runtime import StatusCollector
from proxy.upstreams import Upstream, UpstreamUnreachable


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("120/min", Rate(120, 60)),
        ("10/s", Rate(10, 1)),
        ("5/10s", Rate(5, 10)),
        ("1000/hour", Rate(1000, 3600)),
    ],
)
def test_rates_parse(text, rate):
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["fast", "10/fortnight", "x/min"])
def test_bad_rates_are_refused(text):
    with pytest.raises(ValueError, match="Not a rate"):
        Rate.parse(text)


def test_routes_mark_public_requests(settings):
    routes = routes_from_settings(settings.GATEWAY)
    assert routes["catalog"].is_public("GET", "/api/catalog/products/")
    assert not routes["catalog"].is_public("POST", "/api/catalog/products/")
    assert routes["users"].is_public("POST", "/api/users/register/")
    assert not routes["users"].is_public("GET", "/api/users/me/")
    assert not routes["orders"].is_public("GET", "/api/orders/")


def test_the_rate_limiter_counts_per_key_and_window():
    limiter = LocalRateLimiter()
    rate = Rate(2, 60)

    async def hits(key, n):
        return [await limiter.hit(key, rate) for _ in range(n)]

    ann = asyncio.run(hits("ann", 3))
    bob = asyncio.run(hits("bob", 1))

    assert [d.allowed for d in ann] == [True, True, False]
    assert [d.remaining for d in ann] == [1, 0, 0]
    assert bob[0].allowed
    assert 0 < ann[0].reset <= 60
    assert dict(ann[0].headers())[b"ratelimit-limit"] == b"2"


def test_a_breaker_opens_after_consecutive_failures_and_recovers_after_the_cool_down():
    breaker = InstanceBreaker("t", fail_max=3, reset_timeout=0.2)
    for _ in range(2):
        breaker.record(ok=False)
    breaker.record(ok=True)  # a success resets the count: failures must be consecutive
    for _ in range(3):
        assert breaker.allow()
        breaker.record(ok=False)

    assert breaker.state == "open"
    assert not breaker.allow()
    assert 0 < breaker.retry_after() <= 0.2

    time.sleep(0.25)
    assert breaker.allow()  # the one trial
    assert not breaker.allow()  # only one at a time
    breaker.record(ok=True)
    assert breaker.state == "closed"


def test_a_failed_trial_opens_the_circuit_again():
    breaker = InstanceBreaker("t", fail_max=1, reset_timeout=0.1)
    breaker.record(ok=False)
    time.sleep(0.15)
    assert breaker.allow()
    breaker.record(ok=False)
    assert breaker.state == "open"
    assert not breaker.allow()


def test_an_expired_token_is_not_served_from_memory(make_token, settings):
    settings.JWT = {**settings.JWT, "LEEWAY_SECONDS": 0}
    verifier = VerifiedTokens()
    # make_token truncates "now" to whole seconds, so a 1 s lifetime may already
    # be over when it is first verified: give it 2 s and wait for its own exp.
    token = make_token(lifetime=2)
    expires_at = verifier.verify(token)["exp"]
    time.sleep(max(0.0, expires_at - time.time()) + 0.05)
    with pytest.raises(common.auth.InvalidToken, match="expired"):
        verifier.verify(token)


def test_the_bulkhead_refuses_past_its_limit():
    bulkhead = Bulkhead(2)
    assert [bulkhead.try_acquire() for _ in range(3)] == [True, True, False]
    bulkhead.release()
    assert bulkhead.try_acquire()


def test_a_connection_is_retired_after_its_quota_of_requests():
    assert not should_retire(2, 100.0, 100.0, max_requests=3, max_age=0)
    assert should_retire(3, 100.0, 100.0, max_requests=3, max_age=0)


def test_a_connection_is_retired_once_it_is_old_enough():
    assert not should_retire(1, 100.0, 159.0, max_requests=0, max_age=60)
    assert should_retire(1, 100.0, 160.0, max_requests=0, max_age=60)


def test_without_limits_connections_live_on():
    assert not should_retire(10_000, 0.0, 1e9, max_requests=0, max_age=0)


def test_an_https_upstream_is_refused_with_a_clear_error():
    upstream = Upstream(
        "catalog",
        discovery=StaticDiscovery(urls={"catalog": ["https://catalog.example:8443"]}),
        http=UpstreamClient(),
        bulkhead_limit=10,
        breaker_fail_max=5,
        breaker_reset_timeout=10,
    )
    route = Route(service="catalog", prefix="/api/catalog/")
    with pytest.raises(UpstreamUnreachable, match="http:// only"):
        asyncio.run(upstream.send(route, "GET", b"/api/catalog/", [], b""))
    assert upstream.bulkhead.in_flight == 0


def test_verified_tokens_are_remembered_until_they_expire(make_token, monkeypatch):
    verifier = VerifiedTokens(capacity=2)
    calls = []
    real = common.auth.token_decode
    monkeypatch.setattr(common.auth, "token_decode", lambda t: calls.append(t) or real(t))
    token = make_token(lifetime=300)

    verifier.verify(token)
    verifier.verify(token)
    assert len(calls) == 1

    for _ in range(2):
        verifier.verify(make_token())
    verifier.verify(token)  # pushed out by newer tokens: checked again
    assert len(calls) == 4


def test_hop_by_hop_and_connection_listed_headers_are_not_forwarded():
    scope = {
        "scheme": "https",
        "headers": [
            (b"host", b"shop.example"),
            (b"connection", b"keep-alive, x-secret-hop"),
            (b"keep-alive", b"timeout=5"),
            (b"x-secret-hop", b"1"),
            (b"te", b"trailers"),
            (b"accept", b"application/json"),
            (b"x-request-id", b"client-id"),
            (b"x-forwarded-for", b"203.0.113.9"),
            (b"content-length", b"3"),
            (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            (b"tracestate", b"client=1"),
        ],
    }
    gateway_span = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
    headers = dict(
        GatewayApp.upstream_headers(
            scope,
            (b"keep-alive", b"x-secret-hop"),
            b"rid-1",
            "10.0.0.2",
            b"shop.example",
            b"203.0.113.9",
            {"traceparent": gateway_span},
        )
    )
    assert headers == {
        "accept": "application/json",
        "X-Forwarded-For": "203.0.113.9, 10.0.0.2",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "shop.example",
        "X-Request-ID": "rid-1",
        "traceparent": gateway_span,  # the client's replaced by the gateway's own span
    }


def test_the_gateway_serves_a_request_in_a_server_span_of_the_clients_trace(spans):
    scope = {"method": "POST", "path": "/api/orders/", "scheme": "https"}
    client = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    span = server_span_start(scope, "/api/orders/", {"traceparent": client})
    with trace.use_span(span):
        upstream = trace_headers()
    server_span_end(span, 202, "orders-1")

    served = spans.named("POST /api/orders/")
    assert served.kind == trace.SpanKind.SERVER
    assert f"{served.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert f"{served.parent.span_id:016x}" == "b7ad6b7169203331"
    assert served.attributes["http.response.status_code"] == 202
    assert upstream == {"traceparent": traceparent_of(served)}


def test_a_request_without_a_trace_starts_one_and_a_5xx_is_an_error(spans):
    scope = {"method": "GET", "path": "/api/catalog/products/"}

    server_span_end(server_span_start(scope, "/api/catalog/", {}), 503, "-")

    served = spans.named("GET /api/catalog/")
    assert served.parent is None
    assert served.status.status_code == trace.StatusCode.ERROR


def test_merge_keeps_each_service_under_its_prefix_and_renames_clashing_components():
    own = {
        "openapi": "3.0.3",
        "info": {"title": "gateway"},
        "paths": {"/api/auth/token/": {}},
        "components": {"schemas": {"Error": {"type": "object"}}},
    }
    catalog = {
        "paths": {
            "/api/catalog/products/": {
                "get": {
                    "operationId": "list",
                    "responses": {"200": {"$ref": "#/components/schemas/Error"}},
                }
            },
            "/internal/secret/": {"get": {"operationId": "secret"}},
        },
        "components": {
            "schemas": {"Error": {"type": "string"}},
            "securitySchemes": {"bearerAuth": {"type": "http"}},
        },
    }

    merged = merge(own, {"catalog": catalog, "orders": None})

    assert set(merged["paths"]) == {"/api/auth/token/", "/api/catalog/products/"}
    operation = merged["paths"]["/api/catalog/products/"]["get"]
    assert operation["tags"] == ["catalog"]
    assert operation["responses"]["200"]["$ref"] == "#/components/schemas/CatalogError"
    assert merged["components"]["schemas"]["Error"] == {"type": "object"}
    assert merged["components"]["securitySchemes"]["bearerAuth"] == {"type": "http"}
    assert "orders" in merged["info"]["description"]


def test_route_defaults_apply_where_a_route_is_silent():
    route = Route(service="x", prefix="/api/x/")
    assert route.retries == 2
    assert not route.is_public("GET", "/api/x/")


@pytest.mark.django_db
@pytest.mark.parametrize("multiprocess", [False, True])
def test_breaker_and_bulkhead_gauges_are_on_metrics_in_both_modes(
    client, tmp_path, monkeypatch, multiprocess
):
    # Deployed (compose, k8s) with PROMETHEUS_MULTIPROC_DIR: the scrape-time
    # gauges must not be left out of the multiprocess export.
    if multiprocess:
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    else:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)

    text = client.get("/metrics").content.decode()

    for name in ("gateway_breaker_state", "gateway_bulkhead_in_flight", "outbox_scrape_ok"):
        assert f"# TYPE {name} gauge" in text


def test_breakers_of_instances_discovery_no_longer_lists_are_not_exported():
    # A gone instance's breaker, left open, would keep the circuit alert firing.
    upstream = Upstream(
        "catalog",
        discovery=StaticDiscovery(urls={"catalog": ["http://127.0.0.1:8001"]}),
        http=UpstreamClient(),
        bulkhead_limit=10,
        breaker_fail_max=1,
        breaker_reset_timeout=10,
    )
    (listed,) = upstream.discovery.instances("catalog")
    upstream.breaker(listed)
    gone = InstanceBreaker("catalog:catalog-10.0.0.9-8001", fail_max=1, reset_timeout=10)
    gone.record(ok=False)  # open
    upstream.breakers["catalog-10.0.0.9-8001"] = gone
    collector = StatusCollector()
    collector.current = SimpleNamespace(upstreams={"catalog": upstream})

    (breakers, _, _) = collector.collect()

    assert [(s.labels["instance"], s.value) for s in breakers.samples] == [(listed.id, 0)]
