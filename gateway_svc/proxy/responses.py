"""What the gateway's ASGI paths write themselves: problem and JSON answers, the request
id, the SERVER span and the trace headers for an upstream call.

Shared by the proxy (``proxy.app``), the composition and the push channel, none of which
imports another for them.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from common.problems import problem
from common.tracing import tracer
from proxy.ratelimit import Decision
from proxy.upstreams import UpstreamError

if TYPE_CHECKING:
    from proxy.runtime import Runtime

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class EdgeAuth(Protocol):
    """Who checks a request's bearer token at the edge (``GatewayApp``)."""

    def authenticate(self, authorization: bytes | None) -> tuple[dict[str, Any] | None, str]: ...


TRACE_FIELDS = frozenset(field.encode() for field in propagate.get_global_textmap().fields)
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_PROBLEM = b"application/problem+json"


def request_id_accept(client_value: bytes | None) -> bytes:
    """The client's X-Request-ID when it is well-formed, else a new one."""
    if client_value is None or not _VALID_REQUEST_ID.match(client_value):
        return os.urandom(16).hex().encode()
    return client_value


class ClientDisconnected(Exception):
    pass


def server_span_start(scope: Scope, route: str, incoming: dict[str, str]) -> trace.Span:
    """The gateway's SERVER span of one request, a child of the client's trace context.

    Named by method and route prefix (``POST /api/orders/``): one name per
    route, whatever ids the path holds.
    """
    method: str = scope["method"]
    return tracer.start_span(
        f"{method} {route}",
        context=propagate.extract(incoming) if incoming else None,
        kind=trace.SpanKind.SERVER,
        attributes={
            "http.request.method": method,
            "http.route": route,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
        },
    )


def server_span_end(span: trace.Span, status: int, instance: str) -> None:
    if span.is_recording():
        span.set_attribute("http.response.status_code", status)
        if instance != "-":
            span.set_attribute("gateway.upstream.instance", instance)
        if status >= 500:
            span.set_status(trace.StatusCode.ERROR)
    span.end()


def trace_headers() -> dict[str, str]:
    """The current span's trace context as headers for an upstream request."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


async def send_json(
    send: Send,
    *,
    status: int,
    body: Any,
    request_id: bytes,
    content_type: bytes = b"application/json",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A complete JSON response the gateway writes itself."""
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", request_id),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def send_problem(
    send: Send,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    request_id: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send_json(
        send,
        status=status,
        body=problem(status_code=status, code=code, title=title, detail=detail),
        request_id=request_id,
        content_type=_PROBLEM,
        headers=headers,
    )


async def send_rate_limited(send: Send, decision: Decision, request_id: bytes) -> None:
    await send_problem(
        send,
        status=429,
        code="too_many_requests",
        title="Too many requests.",
        detail=f"The limit is {decision.limit} requests per window; "
        f"try again in {decision.reset} s.",
        request_id=request_id,
        headers=[(b"retry-after", str(decision.reset).encode()), *decision.headers()],
    )


async def send_upstream_error(send: Send, error: UpstreamError, request_id: bytes) -> None:
    """An upstream failure as problem details, with Retry-After when the error knows one."""
    extra = []
    if error.retry_after:
        extra.append((b"retry-after", str(int(error.retry_after + 0.999)).encode()))
    await send_problem(
        send,
        status=error.status,
        code=error.code,
        title=error.title,
        detail=error.detail,
        request_id=request_id,
        headers=extra,
    )


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when it grows past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


async def send_method_not_allowed(send: Send, *, detail: str, request_id: bytes) -> int:
    """405 for a read-only path, with Allow: GET; returns the status sent."""
    await send_problem(
        send,
        status=405,
        code="method_not_allowed",
        title="Method not allowed.",
        detail=detail,
        request_id=request_id,
        headers=[(b"allow", b"GET")],
    )
    return 405


async def answer_logged(
    runtime: Runtime,
    scope: Scope,
    *,
    route: str,
    upstream: str,
    answer: Callable[[dict[bytes, bytes], bytes], Awaitable[int]],
    long_lived: bool = False,
) -> None:
    """One request the gateway answers itself (the composition, the push stream), framed as
    the proxy frames its own: the request id, a SERVER span continuing the client's trace,
    then the access line and metrics. ``answer(headers, request_id)`` returns the status
    it sent; a ``long_lived`` answer that succeeded is no latency to time."""
    started = time.perf_counter()
    headers = dict(scope["headers"])
    request_id = request_id_accept(headers.get(b"x-request-id"))
    incoming = {
        name.decode(): value.decode("latin-1")
        for name, value in headers.items()
        if name in TRACE_FIELDS
    }
    span = server_span_start(scope, route, incoming)
    span_token = otel_context.attach(trace.set_span_in_context(span))
    status = 500
    try:
        status = await answer(headers, request_id)
    finally:
        otel_context.detach(span_token)
        server_span_end(span, status, "-")
        runtime.request_done(
            scope,
            status=status,
            request_id=request_id,
            span_context=span.get_span_context(),
            upstream=upstream,
            instance="-",
            client=runtime.client_ip(scope, headers.get(b"x-forwarded-for")),
            started=started,
            timed=not (long_lived and status == 200),
        )
