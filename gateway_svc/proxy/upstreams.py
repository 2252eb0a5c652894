"""Calls to one upstream service: instance choice, breakers, bulkhead, timeouts, retries.

Instances come from service discovery (static, etcd or DNS) on every call, so
a registration or a lease expiring takes effect at once. Instances are tried
round-robin; an instance whose circuit is open is skipped, so a dead instance
is ejected while its siblings serve.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from common.backoff import backoff_delay
from common.discovery import Discovery, Instance
from proxy import client
from proxy.resilience import Bulkhead, InstanceBreaker
from proxy.routes import IDEMPOTENT_METHODS, Route

# Statuses that mean "this instance could not serve", worth another instance for
# an idempotent request, and a failure for the instance's breaker.
RETRYABLE_STATUSES = frozenset({502, 503, 504})


class UpstreamError(Exception):
    """The call failed in a way the gateway answers itself (problem details)."""

    status = 502
    code = "bad_gateway"
    title = "The upstream service failed."

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class NoInstanceAvailable(UpstreamError):
    status = 503
    code = "service_unavailable"
    title = "The service is unavailable."


class BulkheadFull(UpstreamError):
    status = 503
    code = "service_busy"
    title = "The service is at its limit of concurrent requests."


class UpstreamUnreachable(UpstreamError):
    status = 502
    code = "bad_gateway"
    title = "The upstream service could not be reached."


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "gateway_timeout"
    title = "The upstream service did not answer in time."


@dataclass
class UpstreamResponse:
    """An upstream answer being relayed; ``close()`` frees the connection and the bulkhead slot."""

    response: client.Response
    instance: Instance
    _release: Callable[[], None]

    def close(self) -> None:
        self.response.release()
        self._release()


@functools.lru_cache(maxsize=1024)
def upstream_address(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of an instance's base URL (parsed once per URL)."""
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port or 80


class Upstream:
    def __init__(
        self,
        service: str,
        *,
        discovery: Discovery,
        http: client.UpstreamClient,
        bulkhead_limit: int,
        breaker_fail_max: int,
        breaker_reset_timeout: float,
        redis: Any = None,
        redis_prefix: str = "gateway",
    ) -> None:
        self.service = service
        self.discovery = discovery
        self.http = http
        self.bulkhead = Bulkhead(bulkhead_limit)
        self.breakers: dict[str, InstanceBreaker] = {}
        self._breaker_options = {
            "fail_max": breaker_fail_max,
            "reset_timeout": breaker_reset_timeout,
            "redis": redis,
            "redis_prefix": redis_prefix,
        }
        self._turn = itertools.count()

    def breaker(self, instance: Instance) -> InstanceBreaker:
        breaker = self.breakers.get(instance.id)
        if breaker is None:
            breaker = InstanceBreaker(f"{self.service}:{instance.id}", **self._breaker_options)
            self.breakers[instance.id] = breaker
        return breaker

    def _pick(self, tried: set[str]) -> tuple[Instance, InstanceBreaker]:
        instances = self.discovery.instances(self.service)
        if not instances:
            raise NoInstanceAvailable(f"No instance of the {self.service} service is registered.")
        start = next(self._turn)
        count = len(instances)
        # Untried instances first; an already tried one only if it is all there is.
        for pass_tried in (False, True):
            for offset in range(count):
                instance = instances[(start + offset) % count]
                if (instance.id in tried) != pass_tried:
                    continue
                breaker = self.breaker(instance)
                if breaker.allow():
                    return instance, breaker
        wait = min(self.breaker(instance).retry_after() for instance in instances)
        raise NoInstanceAvailable(
            f"Every instance of the {self.service} service is failing; the circuit is open.",
            retry_after=max(1.0, wait),
        )

    async def send(
        self,
        route: Route,
        method: str,
        target: bytes,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> UpstreamResponse:
        """Send the request; retry idempotent ones on another instance after a connection error
        or a 502/503/504. A POST is sent exactly once."""
        attempts = 1 + (route.retries if method in IDEMPOTENT_METHODS else 0)
        tried: set[str] = set()
        failure: UpstreamError | None = None
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(backoff_delay(attempt))
            try:
                instance, breaker = self._pick(tried)
            except NoInstanceAvailable:
                if failure is not None:
                    raise failure from None
                raise
            tried.add(instance.id)
            scheme, host, port = upstream_address(instance.url)
            if scheme != "http":
                # TLS ends at the edge; inside, the gateway's client speaks plain HTTP.
                raise UpstreamUnreachable(
                    f"The {self.service} service is registered at {instance.url}; "
                    "the gateway reaches upstreams over http:// only."
                )
            if not self.bulkhead.try_acquire():
                raise BulkheadFull(
                    f"Too many requests in flight to the {self.service} service.", retry_after=1
                )
            try:
                response = await self.http.request(
                    method,
                    host,
                    port,
                    target,
                    headers,
                    body,
                    connect_timeout=route.connect_timeout,
                    read_timeout=route.read_timeout,
                )
            except client.ClientError as error:
                breaker.record(ok=False)
                self.bulkhead.release()
                if isinstance(error, client.ReadTimeout):
                    # Not retried: the upstream may still be working on it.
                    raise UpstreamTimeout(
                        f"The {self.service} service did not answer within "
                        f"{route.read_timeout:g} s."
                    ) from error
                failure = UpstreamUnreachable(
                    f"Connecting to {self.service} timed out."
                    if isinstance(error, client.ConnectTimeout)
                    else f"The {self.service} service could not be reached."
                )
                failure.__cause__ = error
                continue
            failed = response.status in RETRYABLE_STATUSES
            breaker.record(ok=not failed)
            if failed and attempt + 1 < attempts:
                response.release()
                self.bulkhead.release()
                failure = UpstreamUnreachable(
                    f"The {self.service} service answered {response.status}."
                )
                continue
            return UpstreamResponse(response, instance, self.bulkhead.release)
        raise failure or UpstreamUnreachable(f"The {self.service} service could not be reached.")
