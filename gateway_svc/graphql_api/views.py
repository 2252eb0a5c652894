"""``/graphql/``: strawberry's Django view with the gateway's edge rules in front.

The same edge authentication as the proxy path (a bearer token verified here,
stateless; a bad one is a 401 for the whole request, none leaves the public fields
readable), the same rate limits (the proxy's limiter and rates), and every error in
the GraphQL format with the problem-details ``code`` and ``status`` in ``extensions``.

HTTP statuses follow GraphQL over HTTP for ``application/json`` answers: 200 for
every well-formed GraphQL request, whatever its document (a syntax error, a failed
validation, a limit: ``errors`` and no ``data``); 4xx only when the HTTP request is
not one (no query, a body that is not JSON, a mutation over GET), for a bad token
(401), a body too large (413) or too many requests (429). Never a 5xx for any text.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from cross_web import HTTPException
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from graphql import ExecutionResult
from strawberry.django.views import AsyncGraphQLView

from common.auth import InvalidToken, VerifiedTokens
from graphql_api.errors import error_formatted, errors_body
from graphql_api.schema import schema
from graphql_api.upstream import Upstreams, runtime_current

verified_tokens = VerifiedTokens()

_HTTP_CODES = {
    400: "graphql_bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


@dataclass
class GraphQLContext:
    """What resolvers see: the caller (token claims, or None) and the way to the services."""

    request: HttpRequest
    response: HttpResponse
    claims: dict[str, Any] | None
    upstreams: Upstreams


def claims_from(authorization: str | None) -> dict[str, Any] | None:
    """The token's claims; None without one; ``InvalidToken`` for a bad one (as at the edge)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("The Authorization header must be 'Bearer <token>'.")
    return verified_tokens.verify(token.strip())


def _scope(request: HttpRequest) -> dict[str, Any]:
    """The ASGI scope (under uvicorn), or what the proxy's helpers read of it."""
    return getattr(request, "scope", None) or {
        "client": (request.META.get("REMOTE_ADDR", "-"), 0),
        "scheme": request.META.get("wsgi.url_scheme", "http"),
    }


def _client_scheme(request: HttpRequest, runtime: Any) -> str:
    """As the proxy path tells upstreams: X-Forwarded-Proto believed from our own proxies only."""
    if runtime is None:
        return "http"
    header = request.headers.get("X-Forwarded-Proto")
    return runtime.client_scheme(_scope(request), header.encode() if header else None)


def _answer(
    body: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> HttpResponse:
    return JsonResponse(body, status=status, headers=headers)


# CSRF protects cookie sessions; this endpoint reads bearer tokens only, so a page on
# another site can send it nothing that a cookie would authorise.
@method_decorator(csrf_exempt, name="dispatch")
class GraphQLApi(AsyncGraphQLView):
    allow_queries_via_get = True

    async def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            claims = claims_from(request.headers.get("Authorization"))
        except InvalidToken as error:
            return _answer(
                errors_body(str(error), status=401, code="authentication_failed"),
                401,
                {"WWW-Authenticate": 'Bearer realm="api"'},
            )
        request.graphql_claims = claims  # type: ignore[attr-defined]
        runtime = runtime_current()
        if runtime is not None:
            limited = await self._rate_limited(request, runtime, claims)
            if limited is not None:
                return limited
        try:
            return await self.run(request=request)
        except HTTPException as error:
            code = _HTTP_CODES.get(error.status_code, "graphql_bad_request")
            return _answer(
                errors_body(error.reason, status=error.status_code, code=code), error.status_code
            )
        except RequestDataTooBig:
            return _answer(
                errors_body("The request body is too large.", status=413, code="payload_too_large"),
                413,
            )

    async def _rate_limited(
        self, request: HttpRequest, runtime: Any, claims: dict[str, Any] | None
    ) -> HttpResponse | None:
        """The proxy's limits, on the same counters: a GraphQL read counts like a REST one."""
        route = runtime.routes["catalog"]
        if claims is not None:
            decision = await runtime.limiter.hit(f"user:{claims['sub']}", route.authenticated_rate)
        else:
            forwarded_for = request.headers.get("X-Forwarded-For")
            client_ip = runtime.client_ip(
                _scope(request), forwarded_for.encode() if forwarded_for else None
            )
            decision = await runtime.limiter.hit(f"ip:{client_ip}", route.anonymous_rate)
        if decision.allowed:
            return None
        headers = {name.decode(): value.decode() for name, value in decision.headers()}
        return _answer(
            errors_body(
                f"The limit is {decision.limit} requests per window; "
                f"try again in {decision.reset} s.",
                status=429,
                code="too_many_requests",
            ),
            429,
            {**headers, "Retry-After": str(decision.reset)},
        )

    async def get_context(self, request: HttpRequest, response: HttpResponse) -> GraphQLContext:
        claims = getattr(request, "graphql_claims", None)
        runtime = runtime_current()
        return GraphQLContext(
            request=request,
            response=response,
            claims=claims,
            upstreams=Upstreams(
                runtime=runtime,
                # Passed on so each service decides what the caller may see.
                authorization=request.headers.get("Authorization") if claims else None,
                request_id=getattr(request, "request_id", None) or uuid.uuid4().hex,
                forwarded_proto=_client_scheme(request, runtime),
            ),
        )

    async def process_result(self, request: HttpRequest, result: ExecutionResult) -> dict[str, Any]:
        answer: dict[str, Any] = {"data": result.data}
        if result.errors:
            answer["errors"] = [error_formatted(error) for error in result.errors]
        if result.extensions:
            answer["extensions"] = result.extensions
        return answer

    def decode_json(self, data: str | bytes) -> object:
        decoded = json.loads(data)
        # strawberry reads the body as an object (or a list, a batch); anything else
        # (a JSON string, a number) would reach it as one and fail there.
        if not isinstance(decoded, dict | list):
            raise HTTPException(400, 'The body must be a JSON object: {"query": ...}.')
        return decoded


# GraphiQL for a browser's GET: templates/graphql/graphiql.html, its assets served here.
graphql_view = GraphQLApi.as_view(schema=schema, graphql_ide="graphiql")
