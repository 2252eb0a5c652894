"""Everything the proxy path needs, built once per worker process from settings."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from opentelemetry import trace
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from common.discovery import Discovery, discovery_from_settings
from common.metrics import scrape_collector_register
from proxy.client import UpstreamClient
from proxy.ratelimit import LocalRateLimiter, RedisRateLimiter
from proxy.routes import Route, routes_from_settings
from proxy.upstreams import Upstream

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("gateway.access")

proxied_requests = Counter(
    "gateway_proxied_requests_total",
    "Requests the gateway proxied, by upstream service and status code.",
    ["upstream", "status"],
)
proxied_request_seconds = Histogram(
    "gateway_proxied_request_duration_seconds",
    "Time from a proxied request's arrival to its answer sent (or the failure), "
    "by upstream service.",
    ["upstream"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


class Runtime:
    def __init__(
        self,
        *,
        routes: dict[str, Route],
        discovery: Discovery,
        config: dict[str, Any],
        num_proxies: int,
    ) -> None:
        self.routes = routes
        self.discovery = discovery
        self.config = config
        self.num_proxies = num_proxies
        self.access_log: bool = config["ACCESS_LOG"]
        self.upstreams: dict[str, Upstream] = {}
        self.limiter: LocalRateLimiter | RedisRateLimiter = LocalRateLimiter()
        self.http: UpstreamClient | None = None
        self.composer: Any = None
        self.order_stream: Any = None
        self._counters: dict[tuple[str, int], Any] = {}
        self._timers: dict[str, Any] = {}
        self._redis_async: Any = None

    async def start(self) -> None:
        """Open the pooled keep-alive client and start watching discovery."""
        redis_url = self.config["REDIS_URL"]
        redis_sync = None
        if redis_url:
            import redis
            import redis.asyncio

            self._redis_async = redis.asyncio.Redis.from_url(redis_url)
            self.limiter = RedisRateLimiter(self._redis_async, prefix=self.config["REDIS_PREFIX"])
            # pybreaker's Redis storage is synchronous and wants raw bytes.
            redis_sync = redis.Redis.from_url(redis_url, decode_responses=False, socket_timeout=0.5)
        self.http = UpstreamClient(
            keepalive_timeout=30.0,
            max_requests=self.config["UPSTREAM_MAX_REQUESTS"],
            max_age=self.config["UPSTREAM_MAX_AGE_SECONDS"],
        )
        for name in self.routes:
            self.upstreams[name] = Upstream(
                name,
                discovery=self.discovery,
                http=self.http,
                bulkhead_limit=self.config["BULKHEAD_LIMIT"],
                breaker_fail_max=self.config["BREAKER_FAIL_MAX"],
                breaker_reset_timeout=self.config["BREAKER_RESET_TIMEOUT"],
                redis=redis_sync,
                redis_prefix=self.config["REDIS_PREFIX"],
            )
        self.discovery.start()
        StatusCollector.current = self

    async def stop(self) -> None:
        if self.order_stream is not None:
            await self.order_stream.stop()
        self.discovery.stop()
        if self.http is not None:
            self.http.close()
        if self._redis_async is not None:
            await self._redis_async.aclose()

    async def get_json(
        self, service: str, target: str, headers: list[tuple[str, str]]
    ) -> tuple[int, Any]:
        """Status and parsed body (None if not JSON) of a GET to one upstream, through its
        breakers, bulkhead and retries: how the gateway's own answers read the services."""
        relay = await self.upstreams[service].send(
            self.routes[service], "GET", target.encode(), headers, b""
        )
        try:
            raw = await relay.response.read()
        finally:
            relay.close()
        try:
            return relay.response.status, json.loads(raw) if raw else None
        except ValueError:
            return relay.response.status, None

    def client_ip(self, scope: dict[str, Any], forwarded_for: bytes | None) -> str:
        """The client's address: the socket peer, or the entry our own proxies appended."""
        if self.num_proxies and forwarded_for:
            chain = [part.strip() for part in forwarded_for.decode("latin-1").split(",")]
            return chain[-min(self.num_proxies, len(chain))]
        client = scope.get("client")
        return client[0] if client else "-"

    def client_scheme(self, scope: dict[str, Any], forwarded_proto: bytes | None) -> str:
        """The scheme the client used at the edge: what our own proxies say, else the socket's.

        Forwarded upstream as X-Forwarded-Proto, so that services behind the gateway
        know an https client (absolute URLs, SECURE_SSL_REDIRECT) when TLS ends at
        an ingress in front of it; from anyone else the header is not believed.
        """
        if self.num_proxies and forwarded_proto:
            value = forwarded_proto.decode("latin-1").split(",")[-1].strip().lower()
            if value in ("http", "https"):
                return value
        return scope.get("scheme", "http")

    def request_done(
        self,
        scope: dict[str, Any],
        *,
        status: int,
        request_id: bytes,
        span_context: trace.SpanContext,
        upstream: str,
        instance: str,
        client: str,
        started: float,
        timed: bool = True,
    ) -> None:
        """The access line (with the request id, trace and span) and the metrics of one request.

        ``timed=False`` (an event stream, as long as its client likes): counted, and its
        duration logged, but kept out of the latency histogram and its alert.
        """
        elapsed = time.perf_counter() - started
        if self.access_log:
            method, path = scope["method"], scope["path"]
            traced = span_context.is_valid
            access_logger.info(
                "%s %s %s",
                method,
                path,
                status,
                extra={
                    "request_id": request_id.decode("latin-1"),
                    "trace_id": trace.format_trace_id(span_context.trace_id) if traced else "-",
                    "span_id": trace.format_span_id(span_context.span_id) if traced else "-",
                    "method": method,
                    "path": path,
                    "status": status,
                    "upstream": upstream,
                    "instance": instance,
                    "client": client,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
        self.record(upstream, status, elapsed if timed else None)

    def record(self, upstream: str, status: int, seconds: float | None) -> None:
        """Count a proxied request and time it (unless ``seconds`` is None), in /metrics."""
        counter = self._counters.get((upstream, status))
        if counter is None:
            counter = proxied_requests.labels(upstream=upstream, status=str(status))
            self._counters[(upstream, status)] = counter
        counter.inc()
        if seconds is None:
            return
        timer = self._timers.get(upstream)
        if timer is None:
            timer = self._timers[upstream] = proxied_request_seconds.labels(upstream=upstream)
        timer.observe(seconds)

    def status(self) -> dict[str, Any]:
        """Breakers and bulkheads as they stand, for /internal/status/ and gateway_status."""
        upstreams = {}
        for name, upstream in self.upstreams.items():
            instances = self.discovery.instances(name)
            upstreams[name] = {
                "bulkhead": {
                    "in_flight": upstream.bulkhead.in_flight,
                    "limit": upstream.bulkhead.limit,
                },
                "instances": [
                    {
                        "id": instance.id,
                        "url": instance.url,
                        "breaker": upstream.breaker(instance).state,
                        "retry_after": round(upstream.breaker(instance).retry_after(), 1),
                    }
                    for instance in instances
                ],
            }
        return {"discovery": self.config["DISCOVERY_BACKEND"], "upstreams": upstreams}


class StatusCollector(Collector):
    """Breaker states and bulkhead use, read at scrape time (nothing is paid per request)."""

    current: Runtime | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        runtime = self.current
        breaker = GaugeMetricFamily(
            "gateway_breaker_state",
            "Circuit state per upstream instance: 0 closed, 1 half-open, 2 open.",
            labels=["upstream", "instance"],
        )
        in_flight = GaugeMetricFamily(
            "gateway_bulkhead_in_flight", "Calls in flight per upstream.", labels=["upstream"]
        )
        limit = GaugeMetricFamily(
            "gateway_bulkhead_limit", "Bulkhead bound per upstream.", labels=["upstream"]
        )
        if runtime is not None:
            for name, upstream in runtime.upstreams.items():
                in_flight.add_metric([name], upstream.bulkhead.in_flight)
                limit.add_metric([name], upstream.bulkhead.limit)
                # Instances discovery lists now: a breaker outlives its instance (it is
                # found again if the instance comes back), but a gone one, left open,
                # would keep the circuit alert firing.
                listed = {i.id for i in upstream.discovery.instances(upstream.service)}
                for instance_id, instance_breaker in upstream.breakers.items():
                    if instance_id in listed:
                        breaker.add_metric([name, instance_id], instance_breaker.state_number)
        yield breaker
        yield in_flight
        yield limit


scrape_collector_register(StatusCollector())


def runtime_from_settings() -> Runtime:
    config = settings.GATEWAY
    return Runtime(
        routes=routes_from_settings(config),
        discovery=discovery_from_settings(),
        config=config,
        num_proxies=settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0,
    )
