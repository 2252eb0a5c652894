"""Tests every service must pass: import them into a service's test tree.

    from common.testing.service_contract import *  # noqa: F403

They check what ARCHITECTURE.md promises of every service: health, readiness
on the real database and broker, metrics, the OpenAPI schema and Swagger UI
(served locally, no CDN), the admin, request ids and problem details for
unknown URLs.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

__all__ = [
    "test_admin_login_page_is_served",
    "test_an_unknown_api_version_is_refused_with_406_problem",
    "test_health_answers_without_touching_dependencies",
    "test_metrics_are_exposed_for_prometheus",
    "test_openapi_errors_are_problem_details",
    "test_openapi_operations_document_the_unknown_version_answer",
    "test_openapi_public_operations_need_no_token",
    "test_openapi_request_bodies_are_json",
    "test_openapi_schema_is_served",
    "test_ready_checks_database_and_broker",
    "test_request_id_is_echoed_or_generated",
    "test_swagger_ui_is_served_without_a_cdn",
    "test_unknown_url_gets_problem_details",
]


def test_health_answers_without_touching_dependencies(client: Client) -> None:
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": settings.SERVICE_NAME}


@pytest.mark.django_db
def test_ready_checks_database_and_broker(client: Client) -> None:
    response = client.get("/ready/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content
    checks = response.json()
    assert any(name.startswith("Database") for name in checks)
    assert len(checks) == 2
    assert set(checks.values()) == {"OK"}


@pytest.mark.django_db
def test_metrics_are_exposed_for_prometheus(client: Client) -> None:
    client.get("/health/")
    response = client.get("/metrics")
    assert response.status_code == 200
    body = response.content.decode()
    assert "django_http_requests_total_by_method_total" in body


def test_openapi_schema_is_served(client: Client) -> None:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["version"] == "1"
    assert schema["info"]["x-api-versioning"]["versions"] == ["1"]
    assert isinstance(schema["paths"], dict)


def _operations(client: Client) -> list[tuple[str, str, dict]]:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    schema = response.json()
    assert "Problem" in schema["components"]["schemas"]
    return [
        (method.upper(), path, operation)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and "responses" in operation
    ]


def test_openapi_errors_are_problem_details(client: Client) -> None:
    """Every operation documents some error, and every error is a ``Problem`` (common.schema)."""
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for method, path, operation in _operations(client):
        errors = {code: r for code, r in operation["responses"].items() if code[0] in "45"}
        assert errors, f"{method} {path} documents no error"
        for code, response in errors.items():
            assert response.get("content") == problem, f"{method} {path} {code}"
        if operation.get("security") != [{}]:
            assert "401" in errors, f"{method} {path} reads credentials but documents no 401"
        if "requestBody" in operation:
            assert {"400", "415"} <= set(errors), f"{method} {path}"


@pytest.mark.django_db
def test_openapi_public_operations_need_no_token(client: Client) -> None:
    """An API read marked public (``{}`` among the security options) needs no token."""
    for method, path, operation in _operations(client):
        public = {} in operation.get("security", [{}])
        if public and method == "GET" and path.startswith("/api/"):
            answer = client.get(path.replace("{", "").replace("}", ""))
            assert answer.status_code != 401, f"{method} {path}"


def test_openapi_operations_document_the_unknown_version_answer(client: Client) -> None:
    """Every API operation is versioned (common.versioning), so each may answer 406."""
    for method, path, operation in _operations(client):
        if path.startswith("/api/"):
            assert "406" in operation["responses"], f"{method} {path}"


def test_an_unknown_api_version_is_refused_with_406_problem(client: Client) -> None:
    accept = "application/vnd.oai.openapi+json; version=2"
    response = client.get("/api/schema/", HTTP_ACCEPT=accept)
    assert response.status_code == 406
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "unknown_api_version"


def test_openapi_request_bodies_are_json(client: Client) -> None:
    for _method, path, operation in _operations(client):
        if "requestBody" in operation:
            assert set(operation["requestBody"]["content"]) == {"application/json"}, path


def test_swagger_ui_is_served_without_a_cdn(client: Client) -> None:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f"/static/{settings.SERVICE_NAME}/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn" not in html.lower()


@pytest.mark.django_db
def test_admin_login_page_is_served(client: Client) -> None:
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"csrfmiddlewaretoken" in response.content


def test_request_id_is_echoed_or_generated(client: Client) -> None:
    echoed = client.get("/health/", HTTP_X_REQUEST_ID="abc-123")
    generated = client.get("/health/")
    assert echoed["X-Request-ID"] == "abc-123"
    assert len(generated["X-Request-ID"]) == 32


def test_unknown_url_gets_problem_details(client: Client) -> None:
    response = client.get("/no/such/place/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"
