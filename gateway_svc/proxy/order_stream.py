"""``GET /api/orders/{id}/events/``: one order's status as it changes, pushed (Server-Sent Events).

Why SSE rather than a WebSocket: the channel is one-way (the server tells, the
client listens), it is plain HTTP (through every proxy and ingress, with the
gateway's auth, limits, access log and metrics as for any request), and the
browser's ``EventSource`` reconnects by itself and sends ``Last-Event-ID``,
which is exactly the resumption wanted; a WebSocket would need all three
written by hand on both sides.

How one stream goes:

1. Who: a bearer token (API clients), or, from a browser (``EventSource`` sends
   no Authorization header), the storefront's Django session (its cookie); 401
   without either.
2. Listen first, read second: the stream joins its worker's hub for the order
   (``proxy/order_feed.py``: one broker subscription per worker), waits until
   that subscription is bound, then reads the order from orders_svc with the
   caller's token, which decides who may see it exactly as for the detail
   (someone else's order is a 404). An event committed after the read is
   heard; one committed before is in what was read; none falls in between.
3. Send every event after ``Last-Event-ID`` (the order's event version), then,
   on each event heard for the order, read the order again and send what is
   new, in version order: nothing is sent twice or skipped, whatever the
   broker did. While the broker subscription is down, the order is read every
   ``GATEWAY_PUSH_POLL_SECONDS`` instead; now and then anyway.
4. End after the event that settles the order (``final: true``); a client that
   reconnects once everything is sent gets 204, which tells ``EventSource`` to
   stop. The stream also ends when the caller's access token expires (the
   client reconnects with a fresh one: the session refreshes it), and after
   ``GATEWAY_PUSH_MAX_SECONDS`` in any case: a bounded stream is checked
   again for who may read it, and goes to whichever worker is least busy.

The stream is a coroutine waiting on a queue, never a thread; a comment line
every ``GATEWAY_PUSH_HEARTBEAT_SECONDS`` keeps proxies from closing it as idle.
The read deadlines (``gateway_svc/deadlines.py``) end with the request head
(a GET has no body), gunicorn's timeout does not apply to uvicorn workers, and
uvicorn's keep-alive timeout only counts between requests: nothing else cuts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from django.conf import settings

from proxy.order_feed import OrderEventFeed, OrderEventHub
from proxy.order_status import (
    order_settled,
    order_status_events,
    sse_comment,
    sse_events,
    sse_retry,
    version_parse,
)
from proxy.responses import (
    answer_logged,
    send_json,
    send_method_not_allowed,
    send_problem,
    send_rate_limited,
    send_upstream_error,
)
from proxy.upstreams import UpstreamError

if TYPE_CHECKING:
    from proxy.responses import EdgeAuth, Receive, Scope, Send
    from proxy.runtime import Runtime

logger = logging.getLogger(__name__)

PATH = re.compile(r"^/api/orders/([^/]+)/events/$")
ROUTE = "/api/orders/{id}/events/"
_DISCONNECTED = object()
_PROBLEM = b"application/problem+json"


class OrderGone(Exception):
    """The order cannot be read with the caller's token any more (token expired, revoked)."""


async def session_access_token(session_key: str) -> str | None:
    """The storefront session's access token (refreshed if due), or None.

    The storefront keeps the tokens in the Django session (``storefront.auth``);
    its own function reads them, so there is one place that knows how.
    """
    from django.http import HttpRequest
    from django.utils.module_loading import import_string
    from storefront.auth import session_access_token as storefront_token

    store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")(session_key)
    request = HttpRequest()
    request.session = store
    token = await storefront_token(request)
    if store.modified:  # a refreshed pair: kept, under the same cookie
        await store.asave()
    return token


def cookie_value(headers: dict[bytes, bytes], name: str) -> str | None:
    """One cookie from the Cookie header (Django's parser, as the session middleware uses)."""
    from django.http.cookie import parse_cookie

    raw = headers.get(b"cookie")
    if not raw:
        return None
    return parse_cookie(raw.decode("latin-1")).get(name) or None


class OrderStatusStream:
    """The push channel's endpoint; one per worker (``Runtime.order_stream``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        config = settings.GATEWAY_PUSH
        self.heartbeat_seconds: float = config["HEARTBEAT_SECONDS"]
        self.poll_seconds: float = config["POLL_SECONDS"]
        self.resync_seconds: float = config["RESYNC_SECONDS"]
        self.ready_wait_seconds: float = config["READY_WAIT_SECONDS"]
        self.retry_milliseconds: int = config["RETRY_MILLISECONDS"]
        self.max_seconds: float = config["MAX_SECONDS"]
        self.hub = OrderEventHub()
        self.feed: OrderEventFeed | None = None

    def matches(self, scope: Scope) -> bool:
        return PATH.match(scope["path"]) is not None

    def feed_start(self) -> OrderEventFeed:
        """The worker's broker subscription, started by the first stream."""
        if self.feed is None:
            self.feed = OrderEventFeed(hub=self.hub, loop=asyncio.get_running_loop())
            self.feed.start()
        return self.feed

    async def stop(self) -> None:
        if self.feed is not None:
            await asyncio.to_thread(self.feed.stop)
            self.feed = None

    async def handle(self, app: EdgeAuth, scope: Scope, receive: Receive, send: Send) -> None:
        async def answer(headers: dict[bytes, bytes], request_id: bytes) -> int:
            return await self.answer(app, scope, receive, send, headers, request_id)

        # A stream lasts as long as its order: not a latency.
        await answer_logged(
            self.runtime, scope, route=ROUTE, upstream="push", answer=answer, long_lived=True
        )

    async def credentials(
        self, app: EdgeAuth, headers: dict[bytes, bytes]
    ) -> tuple[dict[str, Any] | None, str, str]:
        """(claims, token, error): the bearer token's, else the storefront session's."""
        authorization = headers.get(b"authorization")
        if authorization is None:
            session_key = cookie_value(headers, settings.SESSION_COOKIE_NAME)
            token = await session_access_token(session_key) if session_key else None
            if token is None:
                return None, "", ""
            authorization = f"Bearer {token}".encode()
        claims, error = app.authenticate(authorization)
        token = authorization.partition(b" ")[2].decode("latin-1").strip()
        return claims, token, error

    async def answer(
        self,
        app: EdgeAuth,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        request_id: bytes,
    ) -> int:
        """Stream the order's events (or answer a problem); return the status sent."""
        if scope["method"] != "GET":
            detail = "An order's event stream can only be read (GET)."
            return await send_method_not_allowed(send, detail=detail, request_id=request_id)
        claims, token, error = await self.credentials(app, headers)
        if claims is None:
            await send_problem(
                send,
                status=401,
                code="authentication_failed" if error else "not_authenticated",
                title="Authentication is required.",
                detail=error
                or "Send an access token (Authorization: Bearer <token>) or sign in "
                "to the storefront.",
                request_id=request_id,
                headers=[(b"www-authenticate", b'Bearer realm="api"')],
            )
            return 401
        route = self.runtime.routes["orders"]
        decision = await self.runtime.limiter.hit(f"user:{claims['sub']}", route.authenticated_rate)
        if not decision.allowed:
            await send_rate_limited(send, decision, request_id)
            return 429
        try:
            sent = self.resume_from(scope, headers)
        except ValueError as invalid:
            await send_problem(
                send,
                status=400,
                code="invalid",
                title="Invalid input.",
                detail=f"Last-Event-ID or after: {invalid}.",
                request_id=request_id,
            )
            return 400
        raw_id = PATH.match(scope["path"]).group(1)  # type: ignore[union-attr]
        try:
            order_id = str(uuid.UUID(raw_id))
        except ValueError:
            await send_problem(
                send,
                status=404,
                code="order_not_found",
                title="No such order.",
                detail=f"There is no order {raw_id}.",
                request_id=request_id,
            )
            return 404

        inbox = self.hub.subscribe(order_id)
        try:
            feed = self.feed_start()
            if not feed.ready.is_set() and not feed.failing:
                # Bound before the first read, or an event could fall in between; a
                # broker that does not answer in time only means reading more often.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(feed.ready.wait(), self.ready_wait_seconds)
            upstream_headers = self.upstream_headers(scope, headers, token, request_id)
            try:
                status, order = await self.runtime.get_json(
                    "orders", f"/api/orders/{order_id}/", upstream_headers
                )
            except UpstreamError as upstream_error:
                await send_upstream_error(send, upstream_error, request_id)
                return upstream_error.status
            if status != 200 or not isinstance(order, dict):
                await send_json(
                    send,
                    status=status,
                    body=order,
                    request_id=request_id,
                    content_type=_PROBLEM if status >= 400 else b"application/json",
                )
                return status
            events = order_status_events(order, after=sent)
            if not events and order_settled(order):
                # Everything was sent and nothing will follow: 204 stops EventSource.
                await send(
                    {
                        "type": "http.response.start",
                        "status": 204,
                        "headers": [(b"x-request-id", request_id), *decision.headers()],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return 204
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache, no-store"),
                        # nginx (and ingress-nginx) would otherwise buffer the stream.
                        (b"x-accel-buffering", b"no"),
                        (b"x-request-id", request_id),
                        *decision.headers(),
                    ],
                }
            )
            watcher = asyncio.create_task(_disconnect_watch(receive, inbox))
            try:
                await self.stream(
                    send,
                    inbox,
                    after=sent,
                    events=events,
                    order_id=order_id,
                    upstream_headers=upstream_headers,
                    # Whichever comes first: the token's expiry or the stream's longest life.
                    ends_at=min(float(claims.get("exp", 0)), time.time() + self.max_seconds),
                )
            finally:
                watcher.cancel()
            return 200
        finally:
            self.hub.unsubscribe(order_id, inbox)

    async def stream(
        self,
        send: Send,
        inbox: asyncio.Queue[Any],
        *,
        after: int,
        events: list[Any],
        order_id: str,
        upstream_headers: list[tuple[str, str]],
        ends_at: float,
    ) -> None:
        """Send events until the order settles, the client leaves, or ``ends_at`` (the
        token's expiry, or the stream's longest life: the client reconnects and resumes)."""
        sent = events[-1].version if events else after  # what the client has
        opening = sse_retry(self.retry_milliseconds) + sse_events(events)
        await send({"type": "http.response.body", "body": opening, "more_body": True})
        settled = bool(events) and events[-1].final
        last_read = last_write = time.monotonic()
        while not settled:
            now = time.monotonic()
            feed_ready = self.feed is not None and self.feed.ready.is_set()
            read_every = self.resync_seconds if feed_ready else self.poll_seconds
            wait = min(
                self.heartbeat_seconds - (now - last_write),
                read_every - (now - last_read),
                ends_at - time.time(),
            )
            heard = False
            if wait > 0:
                try:
                    item = await asyncio.wait_for(inbox.get(), wait)
                except TimeoutError:
                    item = None
                if item is _DISCONNECTED:
                    return
                heard = item is not None
                while not inbox.empty():  # a burst of events: one read covers them all
                    if inbox.get_nowait() is _DISCONNECTED:
                        return
            if time.time() >= ends_at:
                break  # the client comes back (with a fresh token) and resumes
            now = time.monotonic()
            if heard or now - last_read >= read_every:
                last_read = now
                try:
                    order = await self.order_fresh(order_id, upstream_headers)
                except OrderGone:
                    return
                except UpstreamError as error:
                    logger.warning("order stream %s: orders unreadable: %s", order_id, error)
                    order = {}
                new = order_status_events(order, after=sent) if order else []
                if new:
                    sent = new[-1].version
                    settled = new[-1].final
                    await send(
                        {"type": "http.response.body", "body": sse_events(new), "more_body": True}
                    )
                    last_write = time.monotonic()
                    continue
            if time.monotonic() - last_write >= self.heartbeat_seconds:
                await send({"type": "http.response.body", "body": sse_comment(), "more_body": True})
                last_write = time.monotonic()
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    def resume_from(scope: Scope, headers: dict[bytes, bytes]) -> int:
        """The last version the client has: ``Last-Event-ID`` (an ``EventSource`` reconnecting),
        else ``?after=`` (a page that shows the order up to a version), else 0."""
        last_event_id = headers.get(b"last-event-id")
        if last_event_id is not None:
            return version_parse(last_event_id)
        after = parse_qs(
            scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
        ).get("after")
        return version_parse(after[-1]) if after else 0

    def upstream_headers(
        self, scope: Scope, headers: dict[bytes, bytes], token: str, request_id: bytes
    ) -> list[tuple[str, str]]:
        return [
            ("Authorization", f"Bearer {token}"),
            ("X-Request-ID", request_id.decode("latin-1")),
            ("Accept", "application/json"),
            # As on the proxy path: behind TLS at the edge the services must not redirect.
            (
                "X-Forwarded-Proto",
                self.runtime.client_scheme(scope, headers.get(b"x-forwarded-proto")),
            ),
        ]

    async def order_fresh(self, order_id: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
        status, order = await self.runtime.get_json("orders", f"/api/orders/{order_id}/", headers)
        if status in (401, 403, 404):
            raise OrderGone(f"orders answered {status}")
        if status != 200 or not isinstance(order, dict):
            return {}
        return order


async def _disconnect_watch(receive: Receive, inbox: asyncio.Queue[Any]) -> None:
    """Tell the stream when the client goes (the request has no body to read)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    inbox.put_nowait(_DISCONNECTED)
