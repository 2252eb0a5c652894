"""OpenAPI: every operation documents the answers it really gives, errors included.

``AutoSchema`` (REST_FRAMEWORK's DEFAULT_SCHEMA_CLASS in every service) adds to
what drf-spectacular finds the problem-details answers (``Problem``, content type
``application/problem+json``, see common.problems) that the view's own machinery
gives, derived from the view rather than written on each one:

- 400 when the operation reads a request body (malformed or invalid), has
  query filters (a filter value that does not parse) or is paginated (a page
  size that is not a positive integer);
- 401 when the view reads credentials (a bad token; or none, where one is needed);
- 403 when a signed-in caller may still be refused (the permissions say no to a
  plain customer; a session caller without the CSRF token on a write);
- 404 when the path names an object, or the list is paginated (a page past the end);
- 406 when the view is versioned (an API version in Accept that is not served:
  common.versioning);
- 415 when a request body is read (a content type no parser takes);
- 429 when the view has throttles (with ``Retry-After``);
- the status of every ``DomainError`` the view lists in ``domain_errors``
  (409 ``order_state_conflict``, 422 ``idempotency_key_reused``...).

Request bodies are documented as JSON only (API.md: JSON in and out); the form
parsers stay for the browsable API, which is not part of the contract.
Operations an anonymous caller may use are marked public (``security`` includes
``{}``), whichever permission class allows it. Statuses an operation already
documents (``@extend_schema(responses=...)``) are kept as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

from django.contrib.auth.models import AnonymousUser
from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS

from common.api_versions import DEFAULT_VERSION
from common.problems import PROBLEM_CONTENT_TYPE

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_BODY_METHODS = {"POST", "PUT", "PATCH"}


def info_version(*, result: dict[str, Any], request: Any = None, **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular hook: ``info.version`` is the API version the document describes.

    The one asked for over HTTP (``Accept: ...; version=1``), else the default: the
    ``manage.py spectacular`` command has no request.
    """
    result["info"]["version"] = getattr(request, "version", None) or DEFAULT_VERSION
    return result


class JWTAuthenticationScheme(OpenApiAuthenticationExtension):
    """Bearer auth, so Swagger UI offers an "Authorize" box for the token."""

    target_class = "common.auth.JWTAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details (``application/problem+json``), the shape of every error."""

    type = serializers.URLField(help_text="Identifies the kind of problem.")
    title = serializers.CharField(help_text="A short summary of the kind of problem.")
    status = serializers.IntegerField(
        min_value=400, max_value=599, help_text="The HTTP status code."
    )
    detail = serializers.CharField(help_text="What went wrong with this request.")
    code = serializers.CharField(help_text="A stable, machine-readable code.")
    errors = serializers.DictField(
        required=False,
        help_text="Validation failures only: field name → messages "
        "(`non_field_errors` for the request as a whole).",
    )

    class Meta:
        ref_name = "Problem"


# What each status means, for the operation's description of its answers.
_DESCRIPTIONS = {
    400: "The request is malformed or not valid (`malformed_request`, `validation_error`; "
    "see `errors`).",
    401: "No valid credentials: the token is missing where one is needed "
    "(`not_authenticated`) or not valid (`authentication_failed`).",
    403: "The caller may not do this (`permission_denied`).",
    404: "Not found (`not_found`).",
    415: "The request body's content type is not accepted (`unsupported_media_type`).",
    429: "Too many requests (`too_many_requests`); see Retry-After.",
    406: "Accept names an API version that is not served (`unknown_api_version`); "
    "no `version` parameter means version 1.",
}

_HEADERS = {
    401: {
        "WWW-Authenticate": {
            "schema": {"type": "string"},
            "description": "The authentication scheme to use.",
        }
    },
    429: {
        "Retry-After": {
            "schema": {"type": "integer"},
            "description": "Seconds to wait before trying again.",
        }
    },
}


def problem_response(status: int, description: str) -> dict[str, Any]:
    """One OpenAPI response object carrying problem details."""
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": PROBLEM_REF}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response


def _caller(method: str, user: Any) -> SimpleNamespace:
    """A stand-in request for asking a view's permissions about a kind of caller."""
    return SimpleNamespace(method=method, user=user, auth=None, query_params={}, data={})


_CUSTOMER = SimpleNamespace(
    pk=0, id=0, is_authenticated=True, is_anonymous=False, is_staff=False, is_service=False
)


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema plus the error answers and public marks the view implies."""

    def _allows(self, user: Any) -> bool:
        request = _caller(self.method, user)
        try:
            return all(p.has_permission(request, self.view) for p in self.view.get_permissions())
        except Exception:  # a permission that needs a real request: assume it may refuse
            return False

    def get_auth(self) -> list[dict[str, Any]]:
        auths = super().get_auth()
        if {} not in auths and self._allows(AnonymousUser()):
            auths.append({})
        return auths

    def _map_serializer_field(self, field: Any, direction: str, bypass_extensions: bool = False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if isinstance(field, serializers.DecimalField) and schema.get("format") == "decimal":
            # drf-spectacular's pattern lets "", "." and "-" through; DRF refuses them. A
            # field that refuses negatives says so in its pattern too.
            whole = field.max_digits - field.decimal_places if field.max_digits else None
            digits = f"{{1,{whole}}}" if whole else "+"
            places = f"{{1,{field.decimal_places}}}" if field.decimal_places else "+"
            sign = "" if field.min_value is not None and field.min_value >= 0 else "-?"
            fraction = rf"(?:\.\d{{0,{field.decimal_places}}})?"
            schema["pattern"] = rf"^{sign}(?:\d{digits}{fraction}|\.\d{places})$"
        return schema

    def map_parsers(self) -> list[str]:
        return [media_type for media_type in super().map_parsers() if "json" in media_type]

    def _reads_body(self) -> bool:
        return self.method in _BODY_METHODS and self.get_request_serializer() is not None

    def _has_filters(self) -> bool:
        return self._is_list_view() and bool(getattr(self.view, "filterset_class", None))

    def _domain_errors(self) -> Iterable[Any]:
        errors = getattr(self.view, "domain_errors", ())
        if isinstance(errors, dict):  # per method: {"POST": (...), "GET": (...)}
            errors = errors.get(self.method, ())
        return errors

    def problem_statuses(self) -> dict[int, str]:
        """Status → description of every problem answer this operation can give."""
        statuses: dict[int, str] = {}
        authenticators = self.view.get_authenticators()
        reads_body = self._reads_body()
        paginated = self._is_list_view() and self._get_paginator() is not None
        if reads_body or self._has_filters() or paginated:
            statuses[400] = _DESCRIPTIONS[400]
        if authenticators:
            statuses[401] = _DESCRIPTIONS[401]
        csrf = self.method not in SAFE_METHODS and any(
            isinstance(a, SessionAuthentication) for a in authenticators
        )
        if csrf or not self._allows(_CUSTOMER):
            statuses[403] = _DESCRIPTIONS[403]
        if re.search(r"{\w+}", self.path) or paginated:
            statuses[404] = _DESCRIPTIONS[404]
        if self.view.versioning_class is not None:
            statuses[406] = _DESCRIPTIONS[406]
        if reads_body:
            statuses[415] = _DESCRIPTIONS[415]
        if self.view.get_throttles():
            statuses[429] = _DESCRIPTIONS[429]
        refusals: dict[int, list[str]] = {}
        for error in self._domain_errors():
            text = f"{error.title.rstrip('.')} (`{error.code}`)"
            refusals.setdefault(error.status, []).append(text)
        for status, texts in refusals.items():
            general = [statuses[status].rstrip(".")] if status in statuses else []
            statuses[status] = "; ".join([*general, *texts]) + "."
        return dict(sorted(statuses.items()))

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        self.resolve_serializer(ProblemSerializer, "response")  # the Problem component
        for status, description in self.problem_statuses().items():
            responses.setdefault(str(status), problem_response(status, description))
        return responses
