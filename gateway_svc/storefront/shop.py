"""The storefront's calls to the shop's services: the one place where it speaks HTTP.

The storefront runs inside the gateway, so it does not call the gateway's own
public port: a page whose view waited on a request to its own worker pool
could, under load, hold every worker while the requests it waits for queue
behind it. Nor does it open a client of its own: it sends each call through
the proxy's runtime of the worker it runs in (proxy/runtime.py, started by the
ASGI lifespan), on the worker's event loop, so the storefront's calls take the
same path as the API's: service discovery, one circuit breaker per instance,
the bulkhead, the route's timeouts, retries of idempotent calls only (a POST
is sent once) and the pooled keep-alive connections. The views are async for
that reason; they hold no thread while they wait.

Tokens are the customer's own (the services authorise them as they would an
API client's); sign-in and token refresh are the gateway's own Django code
(identity.services), called in-process.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from common.observability import request_id_var
from storefront.errors import ShopUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShopAnswer:
    """A service's answer: its status and its JSON body (None when it had none)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _runtime() -> Any:
    """The proxy runtime of this worker (set when the ASGI lifespan starts it)."""
    from proxy.runtime import StatusCollector

    runtime = StatusCollector.current
    if runtime is None:
        raise ShopUnavailable(
            "unavailable", "The gateway's proxy has not started in this process (ASGI only)."
        )
    return runtime


async def shop_call(
    method: str,
    path: str,
    *,
    access: str | None = None,
    query: dict[str, Any] | None = None,
    body: Any = None,
    idempotency_key: str = "",
    client: str = "",
) -> ShopAnswer:
    """One call to the service that owns ``path`` (``/api/<service>/...``).

    ``client`` is the browser's address: the route's per-address limits (sign-ups)
    apply to the storefront as they do at the API's edge.
    """
    from proxy.client import ClientError, ReadTimeout
    from proxy.responses import trace_headers
    from proxy.upstreams import UpstreamError, UpstreamTimeout

    runtime = _runtime()
    service = path.split("/")[2]
    route = runtime.routes[service]
    for limit in route.limits_for(method, path):
        decision = await runtime.limiter.hit(f"ip:{client}:{limit.name}", limit.rate)
        if not decision.allowed:
            return ShopAnswer(429, {"code": "too_many_requests", "retry_after": decision.reset}, {})
    headers = [("Accept", "application/json"), *trace_headers().items()]
    if (request_id := request_id_var.get()) != "-":
        headers.append(("X-Request-ID", request_id))
    if access:
        headers.append(("Authorization", f"Bearer {access}"))
    if idempotency_key:
        headers.append(("Idempotency-Key", idempotency_key))
    payload = b""
    if body is not None:
        payload = json.dumps(body).encode()
        headers.append(("Content-Type", "application/json"))
    target = path + (f"?{urlencode(query, doseq=True)}" if query else "")
    try:
        relay = await runtime.upstreams[service].send(
            route, method, target.encode(), headers, payload
        )
        try:
            raw = await relay.response.read()
        finally:
            relay.close()
    except UpstreamTimeout as error:
        raise ShopUnavailable("timeout", error.detail) from error
    except UpstreamError as error:
        raise ShopUnavailable("unavailable", error.detail) from error
    except ClientError as error:  # the answer broke off after its head
        kind = "timeout" if isinstance(error, ReadTimeout) else "unavailable"
        raise ShopUnavailable(kind, str(error)) from error
    response = relay.response
    if response.status >= 500:
        logger.warning(
            "The %s service answered %s to %s %s", service, response.status, method, path
        )
        raise ShopUnavailable("unavailable", f"The {service} service answered {response.status}.")
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    answer_headers = {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in response.raw_headers
    }
    return ShopAnswer(response.status, parsed, answer_headers)
