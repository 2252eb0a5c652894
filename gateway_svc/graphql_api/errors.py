"""GraphQL errors that carry the API's problem details (``code``, ``status``) in ``extensions``.

A REST client reads ``{"code", "status", "title", "detail"}`` from a problem body; a
GraphQL client finds the same ``code``, ``status`` and ``title`` in each error's
``extensions`` and the ``detail`` as its ``message``, so one table of codes serves both.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError

from common.problems import problem

_TITLES = {
    400: "The request is invalid.",
    401: "Authentication is required.",
    403: "You may not do this.",
    404: "Not found.",
    405: "Method not allowed.",
    413: "The request body is too large.",
    415: "Unsupported media type.",
    429: "Too many requests.",
    500: "Internal error.",
    502: "The upstream service failed.",
    503: "The service is unavailable.",
    504: "The upstream service did not answer in time.",
}


def problem_extensions(
    *, status: int, code: str, title: str | None = None, **extra: Any
) -> dict[str, Any]:
    """What a problem-details body says, minus ``detail`` (the error's message)."""
    body = problem(status_code=status, code=code, title=title or _TITLES.get(status, "Error."))
    body.pop("detail")
    return {**body, **extra}


class GraphQLProblem(GraphQLError):
    """Raised by resolvers: a field that could not be had, and the problem that says why."""

    def __init__(
        self, detail: str, *, status: int, code: str, title: str | None = None, **extra: Any
    ) -> None:
        super().__init__(
            detail,
            extensions=problem_extensions(status=status, code=code, title=title, **extra),
        )
        self.status = status


def upstream_problem(service: str, status: int, body: Any) -> GraphQLProblem:
    """An upstream's refusal (a problem-details body, or anything else) as a GraphQL error."""
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        extra = {"errors": body["errors"]} if isinstance(body.get("errors"), dict) else {}
        return GraphQLProblem(
            str(body.get("detail") or body.get("title") or f"The {service} service said no."),
            status=status,
            code=body["code"],
            title=body.get("title") if isinstance(body.get("title"), str) else None,
            **extra,
        )
    return GraphQLProblem(
        f"The {service} service answered {status}.", status=502, code="bad_gateway"
    )


# Refusals of the document by the libraries' limits, told apart by their messages
# (graphql-core's parser, strawberry's extensions): a code each, so clients can act on it.
_REFUSAL_CODES = (
    ("Document contains more than", "query_too_large"),
    ("exceeds maximum operation depth", "query_too_deep"),
    ("aliases found. Allowed", "too_many_aliases"),
    ("Syntax Error", "graphql_syntax_error"),
)


def error_formatted(error: GraphQLError) -> dict[str, Any]:
    """One error of a result, as sent: problem extensions on every error.

    Resolvers' problems carry their own; a document that does not parse or validate
    (limits included) is the client's mistake, 400; anything else is a bug of ours
    (``GraphQLSchema.process_errors`` logs it), and its text stays here: it may name
    internals.
    """
    formatted = error.formatted
    if error.extensions and "code" in error.extensions:
        return formatted
    original = error.original_error
    if isinstance(original, GraphQLProblem):  # wrapped by a resolver path
        formatted["extensions"] = original.extensions
        return formatted
    if is_unexpected(error):
        formatted["message"] = "The gateway failed to resolve this field."
        formatted["extensions"] = problem_extensions(status=500, code="internal_error")
        return formatted
    code = next((code for text, code in _REFUSAL_CODES if text in error.message), "graphql_invalid")
    formatted["extensions"] = problem_extensions(status=400, code=code)
    return formatted


def is_unexpected(error: GraphQLError) -> bool:
    """A failure of ours rather than a refusal the client can read about."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


def errors_body(detail: str, *, status: int, code: str, **extra: Any) -> dict[str, Any]:
    """A whole answer that is one error: the request never got to execute."""
    return {
        "errors": [
            {"message": detail, "extensions": problem_extensions(status=status, code=code, **extra)}
        ]
    }
