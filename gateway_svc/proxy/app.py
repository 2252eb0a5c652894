"""The gateway's ASGI application: a lean proxy path in front of Django.

Requests under a proxied prefix (``/api/catalog/``, ``/api/users/``,
``/api/orders/``) never enter Django: request id → edge authentication →
rate limit → body limit → upstream (discovery, breaker, bulkhead, timeouts,
retries) → streamed response. That path does no database access and reads
no settings per request; keys, routes and clients are set up once. Everything
else (tokens, JWKS, the merged docs, admin, health, metrics) is Django's; with
``GATEWAY_INTERNAL_PORT`` set, the operators' part of it only on that port.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from common.api_versions import accept_unknown_version, unknown_version_detail
from common.auth import InvalidToken, VerifiedTokens
from proxy import client
from proxy.composition import OrderDetailsComposer
from proxy.order_stream import OrderStatusStream
from proxy.ratelimit import Decision
from proxy.responses import (
    TRACE_FIELDS,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    read_body,
    request_id_accept,
    send_problem,
    send_rate_limited,
    send_upstream_error,
    server_span_end,
    server_span_start,
    trace_headers,
)
from proxy.routes import Route
from proxy.runtime import Runtime, runtime_from_settings
from proxy.upstreams import UpstreamError, UpstreamResponse, UpstreamTimeout, UpstreamUnreachable

logger = logging.getLogger(__name__)

# RFC 9110 section 7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
    }
)
# Set by the gateway itself on the way up.
_REPLACED_UPSTREAM = frozenset(
    {
        b"host",
        b"content-length",
        b"x-request-id",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
    }
    # The trace context (traceparent, tracestate, baggage): the gateway's span's goes up.
    | {field.encode() for field in propagate.get_global_textmap().fields}
)
_SMALL_BODY = 1_048_576  # relayed in one piece; larger or unknown-length bodies stream
# The longest path and query passed on: the services' gunicorn reads request lines of at
# most 8190 bytes (common.gunicorn_conf, gunicorn's ceiling) and answers a longer one with
# an HTML 414 outside every API document; the method, spaces and "HTTP/1.1" fit in the rest.
MAX_TARGET_BYTES = 8000
# The operators' surface, by first path segment: Django's admin (the status page is in
# it), /metrics, the probes (/health/, /ready/) and the services-only /internal/. A
# denylist, not an allowlist: this surface is a fixed set of mechanisms (common.urls and
# the gateway's /internal/), while the public one keeps growing (the storefront owns `/`
# and every page under it, /static/, /graphql/, the push channel). A new operators' path
# goes here; proxy/tests/test_exposure.py checks each named one is refused.
INTERNAL_SEGMENTS = frozenset({"admin", "metrics", "health", "ready", "live", "internal"})


def internal_path(path: str) -> bool:
    """Whether the path belongs to the operators' surface (``//admin/`` too)."""
    return path.lstrip("/").split("/", 1)[0] in INTERNAL_SEGMENTS


class GatewayApp:
    """ASGI entry point: ``application = GatewayApp(get_asgi_application())``."""

    def __init__(
        self, django_app: Any, runtime_factory: Callable[[], Runtime] | None = None
    ) -> None:
        self.django = django_app
        self._runtime_factory = runtime_factory or runtime_from_settings
        self._runtime: Runtime | None = None
        self._starting = asyncio.Lock()
        self.verifier = VerifiedTokens()
        # The port of the operators' surface; None: every port serves everything.
        self.internal_port: int | None = settings.GATEWAY.get("INTERNAL_PORT")

    async def runtime(self) -> Runtime:
        if self._runtime is None:
            async with self._starting:
                if self._runtime is None:
                    runtime = self._runtime_factory()
                    await runtime.start()
                    # The paths the gateway answers itself, on the runtime they call through.
                    runtime.composer = OrderDetailsComposer(runtime)
                    runtime.order_stream = OrderStatusStream(runtime)
                    self._runtime = runtime
        return self._runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if path.startswith("/api/"):
                runtime = self._runtime or await self.runtime()
                service = path[5 : path.find("/", 5)] if path.find("/", 5) > 0 else ""
                route = runtime.routes.get(service)
                if route is not None:
                    if await self.refuse_unknown_version(scope, send):
                        return
                    composer = runtime.composer
                    if composer is not None and composer.matches(scope):
                        await composer.handle(self, scope, receive, send)
                        return
                    stream = runtime.order_stream
                    if stream is not None and stream.matches(scope):
                        await stream.handle(self, scope, receive, send)
                        return
                    await self.proxy(runtime, route, scope, receive, send)
                    return
            if self.internal_port is not None and internal_path(path):
                server = scope.get("server")
                if server is None or server[1] != self.internal_port:
                    await self.refuse_internal(scope, send)
                    return
            await self.django(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)
        else:
            await self.django(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime()
                except Exception as error:
                    logger.exception("Gateway start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._runtime is not None:
                    await self._runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def refuse_internal(scope: Scope, send: Send) -> None:
        """An operators' path asked on the public port: as if it did not exist (404)."""
        request_id = request_id_accept(dict(scope["headers"]).get(b"x-request-id"))
        await send_problem(
            send,
            status=404,
            code="not_found",
            title="Not found.",
            detail=f"No route for {scope['path']}.",
            request_id=request_id,
        )

    @staticmethod
    async def refuse_unknown_version(scope: Scope, send: Send) -> bool:
        """406 for an API version not served (common.api_versions), before anything else.

        The services refuse it too, and the header goes up unchanged; the gateway
        checks at the edge so that the answers it makes itself (the composition, the
        push channel) follow the same rule.
        """
        accept = b",".join(value for name, value in scope["headers"] if name == b"accept")
        version = accept_unknown_version(accept.decode("latin-1")) if accept else None
        if version is None:
            return False
        await send_problem(
            send,
            status=406,
            code="unknown_api_version",
            title="This API has no such version.",
            detail=unknown_version_detail(version),
            request_id=request_id_accept(dict(scope["headers"]).get(b"x-request-id")),
        )
        return True

    def authenticate(self, authorization: bytes | None) -> tuple[dict[str, Any] | None, str]:
        """The token's claims (None without a token), or an error message for a bad one."""
        if authorization is None:
            return None, ""
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            return None, "The Authorization header must be 'Bearer <token>'."
        try:
            return self.verifier.verify(token.decode("latin-1").strip()), ""
        except InvalidToken as error:
            return None, str(error)

    async def proxy(
        self, runtime: Runtime, route: Route, scope: Scope, receive: Receive, send: Send
    ) -> None:
        started = time.perf_counter()
        method: str = scope["method"]
        request_id = authorization = host = forwarded_for = content_length = None
        forwarded_proto = None
        incoming_trace: dict[str, str] = {}
        connection_tokens: tuple[bytes, ...] = ()
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"x-request-id":
                request_id = value
            elif name == b"host":
                host = value
            elif name == b"x-forwarded-for":
                forwarded_for = value
            elif name == b"x-forwarded-proto":
                forwarded_proto = value
            elif name == b"content-length":
                content_length = value
            elif name in TRACE_FIELDS:
                incoming_trace[name.decode()] = value.decode("latin-1")
            elif name == b"connection":
                connection_tokens = tuple(t.strip().lower() for t in value.split(b","))
        request_id = request_id_accept(request_id)
        # The gateway's SERVER span: in the client's trace, or the start of a new one.
        span = server_span_start(scope, route.prefix, incoming_trace)
        span_token = otel_context.attach(trace.set_span_in_context(span))
        client_ip = runtime.client_ip(scope, forwarded_for)
        status = 500
        upstream_name = route.service
        instance_id = "-"
        try:
            claims, auth_error = self.authenticate(authorization)
            if auth_error:
                status = 401
                await send_problem(
                    send,
                    status=401,
                    code="authentication_failed",
                    title="Authentication failed.",
                    detail=auth_error,
                    request_id=request_id,
                    headers=[(b"www-authenticate", b'Bearer realm="api"')],
                )
                return
            path: str = scope["path"]
            if claims is None and not route.is_public(method, path):
                status = 401
                await send_problem(
                    send,
                    status=401,
                    code="not_authenticated",
                    title="Authentication is required.",
                    detail="Send an access token: Authorization: Bearer <token>.",
                    request_id=request_id,
                    headers=[(b"www-authenticate", b'Bearer realm="api"')],
                )
                return

            if claims is not None:
                decision = await runtime.limiter.hit(
                    f"user:{claims['sub']}", route.authenticated_rate
                )
            else:
                decision = await runtime.limiter.hit(f"ip:{client_ip}", route.anonymous_rate)
            if route.limits and decision.allowed:
                # Path limits (sign-ups): per address whoever calls, each counted on its own.
                for limit in route.limits_for(method, path):
                    limited = await runtime.limiter.hit(f"ip:{client_ip}:{limit.name}", limit.rate)
                    if not limited.allowed:
                        decision = limited
                        break
            if not decision.allowed:
                status = 429
                await send_rate_limited(send, decision, request_id)
                return

            target_bytes = len(scope.get("raw_path") or path.encode()) + len(
                scope.get("query_string") or b""
            )
            if target_bytes > MAX_TARGET_BYTES:
                status = 414
                await send_problem(
                    send,
                    status=414,
                    code="uri_too_long",
                    title="The request URL is too long.",
                    detail=f"At most {MAX_TARGET_BYTES} bytes of path and query are accepted.",
                    request_id=request_id,
                )
                return

            if content_length is not None and (
                not content_length.isdigit() or int(content_length) > route.max_body_bytes
            ):
                body = None
            else:
                body = await read_body(receive, route.max_body_bytes)
            if body is None:
                status = 413
                await send_problem(
                    send,
                    status=413,
                    code="payload_too_large",
                    title="The request body is too large.",
                    detail=f"At most {route.max_body_bytes} bytes are accepted here.",
                    request_id=request_id,
                )
                return

            headers = self.upstream_headers(
                scope,
                connection_tokens,
                request_id,
                client_ip,
                host,
                forwarded_for,
                trace_headers(),
                scheme=runtime.client_scheme(scope, forwarded_proto),
            )
            target = scope.get("raw_path") or path.encode()
            if scope.get("query_string"):
                target += b"?" + scope["query_string"]
            try:
                relay = await runtime.upstreams[route.service].send(
                    route, method, target, headers, body
                )
            except UpstreamError as error:
                status = error.status
                await send_upstream_error(send, error, request_id)
                return
            instance_id = relay.instance.id
            status = relay.response.status
            try:
                await self.relay(relay, method, request_id, decision, send)
            except UpstreamError as error:
                status = error.status
                await send_upstream_error(send, error, request_id)
        except ClientDisconnected:
            status = 499
        finally:
            otel_context.detach(span_token)
            server_span_end(span, status, instance_id)
            runtime.request_done(
                scope,
                status=status,
                request_id=request_id,
                span_context=span.get_span_context(),
                upstream=upstream_name,
                instance=instance_id,
                client=client_ip,
                started=started,
            )

    @staticmethod
    def upstream_headers(
        scope: Scope,
        connection_tokens: tuple[bytes, ...],
        request_id: bytes,
        client_ip: str,
        host: bytes | None,
        forwarded_for: bytes | None,
        trace_fields: dict[str, str],
        scheme: str | None = None,
    ) -> list[tuple[str, str]]:
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
            if name not in HOP_BY_HOP
            and name not in _REPLACED_UPSTREAM
            and name not in connection_tokens
        ]
        chain = f"{forwarded_for.decode('latin-1')}, {client_ip}" if forwarded_for else client_ip
        headers.append(("X-Forwarded-For", chain))
        headers.append(("X-Forwarded-Proto", scheme or scope.get("scheme", "http")))
        if host is not None:
            headers.append(("X-Forwarded-Host", host.decode("latin-1")))
        headers.append(("X-Request-ID", request_id.decode("latin-1")))
        headers.extend(trace_fields.items())
        return headers

    @staticmethod
    async def relay(
        relay: UpstreamResponse, method: str, request_id: bytes, decision: Decision, send: Send
    ) -> None:
        """Send the upstream's answer on: small bodies in one piece, large ones streamed.

        A failure before the status line is sent becomes a 502/504 problem; after
        it, the connection is cut (the client sees an incomplete response).
        """
        response = relay.response
        started = False
        try:
            connection_tokens = {
                token.strip().lower()
                for token in (response.header(b"connection") or b"").split(b",")
            }
            headers = [
                (name, value)
                for name, value in response.raw_headers
                if name.lower() not in HOP_BY_HOP
                and name.lower() not in connection_tokens
                and name.lower() != b"x-request-id"
            ]
            headers.append((b"x-request-id", request_id))
            headers.extend(decision.headers())
            start = {"type": "http.response.start", "status": response.status, "headers": headers}
            length = response.content_length
            no_body = method == "HEAD" or response.status in (204, 304)
            if no_body or (length is not None and length <= _SMALL_BODY):
                body = b"" if no_body else await response.read()
                started = True
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            started = True
            await send(start)
            async for chunk in response.iter_chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except client.ClientError as error:
            if not started:
                if isinstance(error, client.ReadTimeout):
                    raise UpstreamTimeout("The upstream stopped answering mid-response.") from error
                raise UpstreamUnreachable("The upstream broke off its answer.") from error
            logger.warning("Upstream %s failed while its body was relayed", relay.instance.id)
            raise
        finally:
            relay.close()
