"""``GET /api/orders/{id}/details/``: the order, each line's product and the customer, in one call.

The order comes first (orders_svc decides who may see it, so the caller's
token is passed on, over the proxy's REST path); then the products (one
catalog.v1 GetProducts call for all of them) and the customer (users.v1) are
fetched at once over gRPC (rpc/). A product or the customer that cannot be had
is ``null`` with a warning: a partial answer beats an error. Only the order
itself is indispensable.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from rpc.calls import customer_summary_async, products_get_async
from rpc.client import RpcRefused, ServiceUnavailable

from proxy.responses import (
    answer_logged,
    send_json,
    send_method_not_allowed,
    send_problem,
    send_rate_limited,
    send_upstream_error,
    trace_headers,
)
from proxy.upstreams import UpstreamError

if TYPE_CHECKING:
    from proxy.responses import EdgeAuth, Receive, Scope, Send
    from proxy.runtime import Runtime

_DETAILS = re.compile(r"^/api/orders/([^/]+)/details/$")
# An order id: a UUID in ASCII hex, with or without its hyphens (orders reads both).
# Anything else is no order, and must not reach orders' URL as it stands: ``?``, ``#``
# or ``..`` in the decoded path made another request of it (``/api/orders/%3F/details/``
# answered orders' list as if it were the order; found by proxy/tests/test_properties.py).
_ORDER_ID = re.compile(r"[0-9a-fA-F]{8}(-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}")


class OrderDetailsComposer:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def matches(self, scope: Scope) -> bool:
        return _DETAILS.match(scope["path"]) is not None

    async def handle(self, app: EdgeAuth, scope: Scope, receive: Receive, send: Send) -> None:
        async def answer(headers: dict[bytes, bytes], request_id: bytes) -> int:
            return await self.answer(app, scope, send, headers, request_id, trace_headers())

        await answer_logged(
            self.runtime,
            scope,
            route="/api/orders/{id}/details/",
            upstream="composition",
            answer=answer,
        )

    async def answer(
        self,
        app: EdgeAuth,
        scope: Scope,
        send: Send,
        headers: dict[bytes, bytes],
        request_id: bytes,
        trace_fields: dict[str, str],
    ) -> int:
        """Send the composed answer (or a problem); return its status."""
        if scope["method"] != "GET":
            return await send_method_not_allowed(
                send, detail="Order details can only be read.", request_id=request_id
            )
        claims, error = app.authenticate(headers.get(b"authorization"))
        if claims is None:
            await send_problem(
                send,
                status=401,
                code="authentication_failed" if error else "not_authenticated",
                title="Authentication is required.",
                detail=error or "Send an access token.",
                request_id=request_id,
                headers=[(b"www-authenticate", b'Bearer realm="api"')],
            )
            return 401
        decision = await self.runtime.limiter.hit(
            f"user:{claims['sub']}", self.runtime.routes["orders"].authenticated_rate
        )
        if not decision.allowed:
            await send_rate_limited(send, decision, request_id)
            return 429
        order_id = _DETAILS.match(scope["path"]).group(1)  # type: ignore[union-attr]
        if not _ORDER_ID.fullmatch(order_id):
            await send_problem(
                send,
                status=404,
                code="order_not_found",
                title="No such order.",
                detail="An order id is a UUID.",
                request_id=request_id,
            )
            return 404
        caller = [
            ("Authorization", headers[b"authorization"].decode("latin-1")),
            ("X-Request-ID", request_id.decode("latin-1")),
            *trace_fields.items(),
            ("Accept", "application/json"),
            # As on the proxy path: behind TLS at the edge the services must not redirect.
            (
                "X-Forwarded-Proto",
                self.runtime.client_scheme(scope, headers.get(b"x-forwarded-proto")),
            ),
        ]
        try:
            status, order = await self.runtime.get_json(
                "orders", f"/api/orders/{order_id}/", caller
            )
        except UpstreamError as upstream_error:
            await send_upstream_error(send, upstream_error, request_id)
            return upstream_error.status
        if status != 200 or not isinstance(order, dict):
            problem_type = b"application/problem+json" if status >= 400 else b"application/json"
            await send_json(
                send, status=status, body=order, request_id=request_id, content_type=problem_type
            )
            return status

        lines = order.get("lines") or []
        product_ids = list(dict.fromkeys(str(line.get("product_id")) for line in lines))
        customer_id = order.get("customer_id")
        (found, product_warnings), (customer, customer_warning) = await asyncio.gather(
            _products(product_ids),
            _customer(customer_id)
            if customer_id is not None
            else _missing("customer: the order names no customer"),
        )
        products = {pid: found.get(pid) for pid in product_ids}
        warnings = [*product_warnings, *([customer_warning] if customer_warning else [])]
        body = {
            "order": order,
            "lines": [
                {**line, "product": products.get(str(line.get("product_id")))} for line in lines
            ],
            "customer": customer,
            "warnings": warnings,
        }
        await send_json(send, status=200, body=body, request_id=request_id)
        return 200


async def _missing(warning: str) -> tuple[None, str]:
    return None, warning


def _unavailable(what: str, error: ServiceUnavailable | RpcRefused) -> str:
    if isinstance(error, ServiceUnavailable):
        return f"{what}: {error.title} ({error.status})"
    return f"{what}: {error}"


def _is_product_id(text: str) -> bool:
    """ASCII digits that fit catalog.v1's int64 (``int("٣")`` is 3, and would not map back)."""
    return text.isascii() and text.isdigit() and 0 < int(text) < 2**63


async def _products(product_ids: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The products by id (as text, as the order's lines name them) and a warning per missing
    one; one catalog call for all of them."""
    ids = [int(pid) for pid in product_ids if _is_product_id(pid)]
    warnings = [
        f"product {pid}: not a product id" for pid in product_ids if not _is_product_id(pid)
    ]
    if not ids:
        return {}, warnings
    try:
        found, missing = await products_get_async(ids=ids)
    except (ServiceUnavailable, RpcRefused) as error:
        return {}, [*warnings, *(_unavailable(f"product {pid}", error) for pid in ids)]
    warnings += [f"product {pid}: the catalog service has no such product" for pid in missing]
    return {str(pid): product for pid, product in found.items()}, warnings


async def _customer(customer_id: Any) -> tuple[dict[str, Any] | None, str | None]:
    try:
        summary = await customer_summary_async(user_id=str(customer_id))
    except (ServiceUnavailable, RpcRefused) as error:
        return None, _unavailable("customer", error)
    if summary is None:
        return None, "customer: the users service has no such customer"
    return summary, None
