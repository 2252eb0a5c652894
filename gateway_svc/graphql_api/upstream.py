"""The services' APIs as GraphQL reads them: through the gateway's own upstream machinery.

Every call goes where a proxied request goes (discovery, a breaker per instance, the
bulkhead, timeouts, retries of idempotent calls) by way of the runtime's
``get_json``; no client of GraphQL's own. Calls carry the caller's token,
so each service decides what the caller may see, as it does for the REST API.

Batching: products are looked up through a DataLoader that collects every product
id a query asks for and fetches them with one ``GET /api/catalog/products/?ids=``;
orders come with their lines in one ``GET /api/orders/`` (its summaries carry them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from proxy.responses import trace_headers
from proxy.runtime import StatusCollector
from proxy.upstreams import UpstreamError
from strawberry.dataloader import DataLoader

from graphql_api.errors import GraphQLProblem, upstream_problem

if TYPE_CHECKING:
    from proxy.runtime import Runtime

# The catalog's ``ids`` filter takes at most this many (a page): one call per 100 products.
PRODUCTS_PER_CALL = 100


def runtime_current() -> Runtime | None:
    """This worker's proxy runtime (started by the ASGI app's lifespan), if it has one."""
    return StatusCollector.current


@dataclass
class Upstreams:
    """One GraphQL request's way to the services: who calls, and its per-request loaders."""

    runtime: Runtime | None
    authorization: str | None
    request_id: str
    forwarded_proto: str
    products: DataLoader[int, dict[str, Any] | None] = field(init=False)

    def __post_init__(self) -> None:
        self.products = DataLoader(load_fn=self._products_load, max_batch_size=PRODUCTS_PER_CALL)

    def _headers(self) -> list[tuple[str, str]]:
        headers = [
            ("X-Request-ID", self.request_id),
            ("Accept", "application/json"),
            # As on the proxy path: behind TLS at the edge the services must not redirect.
            ("X-Forwarded-Proto", self.forwarded_proto),
            *trace_headers().items(),
        ]
        if self.authorization:
            headers.append(("Authorization", self.authorization))
        return headers

    async def get(self, service: str, path: str, query: dict[str, Any] | None = None) -> Any:
        """The JSON body of a 200 answer; any other answer raises its problem."""
        if self.runtime is None or self.runtime.http is None:
            raise GraphQLProblem(
                "The gateway's upstream client has not started in this worker.",
                status=503,
                code="service_unavailable",
            )
        params = {k: v for k, v in (query or {}).items() if v is not None}
        target = f"{path}?{urlencode(params)}" if params else path
        try:
            status, body = await self.runtime.get_json(service, target, self._headers())
        except UpstreamError as error:
            raise GraphQLProblem(
                error.detail, status=error.status, code=error.code, title=error.title
            ) from error
        if status != 200:
            raise upstream_problem(service, status, body)
        if not isinstance(body, dict):
            raise upstream_problem(service, 502, body)
        return body

    async def _products_load(
        self, product_ids: Sequence[int]
    ) -> list[dict[str, Any] | BaseException | None]:
        """Every product a query named, in one call; one the catalog does not show
        (unknown, or retired for a customer) is None."""
        ids = ",".join(str(product_id) for product_id in product_ids)
        try:
            page = await self.get(
                "catalog",
                "/api/catalog/products/",
                {"ids": ids, "page_size": PRODUCTS_PER_CALL},
            )
        except GraphQLProblem as problem:
            return [problem] * len(product_ids)
        found = {item.get("id"): item for item in page.get("results") or []}
        return [found.get(product_id) for product_id in product_ids]
