"""RFC 9457 problem details for every error a service answers.

Services raise ``DomainError`` subclasses (``OutOfStock``...) from their
service functions; DRF's own exceptions and Django's 404/500 handlers end here
too, so every 4xx and 5xx has the same shape:
``{"type", "title", "status", "detail", "code"}`` plus ``"errors"`` for
validation failures.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://errors.eshop.example/"

logger = logging.getLogger(__name__)


class DomainError(Exception):
    """A business rule said no; subclasses set a stable ``code`` and an HTTP status."""

    code: str = "domain_error"
    status: int = status.HTTP_409_CONFLICT
    title: str = "The request conflicts with the current state."

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra = extra
        super().__init__(self.detail)


def problem(
    *,
    status_code: int,
    code: str,
    title: str,
    detail: str | None = None,
    errors: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The body of one problem-details document."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code.replace("_", "-"),
        "title": title,
        "status": status_code,
        "detail": detail or title,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body


_DRF_TITLES = {
    exceptions.ParseError: ("malformed_request", "The request body could not be parsed."),
    exceptions.AuthenticationFailed: ("authentication_failed", "Authentication failed."),
    exceptions.NotAuthenticated: ("not_authenticated", "Authentication is required."),
    exceptions.PermissionDenied: ("permission_denied", "You may not do this."),
    exceptions.NotFound: ("not_found", "Not found."),
    exceptions.MethodNotAllowed: ("method_not_allowed", "Method not allowed."),
    exceptions.NotAcceptable: ("not_acceptable", "Not acceptable."),
    exceptions.UnsupportedMediaType: ("unsupported_media_type", "Unsupported media type."),
    exceptions.Throttled: ("too_many_requests", "Too many requests."),
}


def _flatten_validation_errors(detail: Any) -> dict[str, Any]:
    """Field → messages; errors not tied to a field go under ``non_field_errors``."""
    if isinstance(detail, dict):
        return detail
    if isinstance(detail, list):
        return {"non_field_errors": detail}
    return {"non_field_errors": [detail]}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: map every known error to problem details."""
    if isinstance(exc, DomainError):
        body = problem(
            status_code=exc.status, code=exc.code, title=exc.title, detail=exc.detail, **exc.extra
        )
        return Response(body, status=exc.status, content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: Django's 500 handler answers (and logs) it

    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))

    if isinstance(exc, exceptions.ValidationError):
        body = problem(
            status_code=exc.status_code,
            code="validation_error",
            title="The request is not valid.",
            detail="One or more fields are not valid; see errors.",
            errors=_flatten_validation_errors(exc.detail),
        )
    else:
        code, title = next(
            (value for cls, value in _DRF_TITLES.items() if isinstance(exc, cls)),
            (exc.default_code, str(exc.default_detail)),
        )
        body = problem(status_code=exc.status_code, code=code, title=title, detail=str(exc.detail))
    return Response(
        body, status=exc.status_code, headers=headers, content_type=PROBLEM_CONTENT_TYPE
    )


def problem_response(**kwargs: Any) -> JsonResponse:
    """A plain Django response carrying problem details (for non-DRF views)."""
    body = problem(**kwargs)
    return JsonResponse(body, status=body["status"], content_type=PROBLEM_CONTENT_TYPE)


def not_found_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """``handler404``: unknown URLs answer problem details too."""
    return problem_response(
        status_code=404,
        code="not_found",
        title="Not found.",
        detail=f"No route for {request.path}.",
    )


def server_error_view(request: HttpRequest) -> JsonResponse:
    """``handler500``: the traceback is logged by Django, the client gets no internals."""
    return problem_response(
        status_code=500,
        code="server_error",
        title="Internal server error.",
        detail="The server failed to handle the request; it has been logged.",
    )


def bad_request_view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """``handler400``: for example a disallowed Host header."""
    return problem_response(status_code=400, code="bad_request", title="Bad request.")


def permission_denied_view(
    request: HttpRequest, exception: Exception | None = None
) -> JsonResponse:
    """``handler403``: for example a failed CSRF check outside DRF."""
    return problem_response(status_code=403, code="permission_denied", title="You may not do this.")
