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
    "test_health_answers_without_touching_dependencies",
    "test_metrics_are_exposed_for_prometheus",
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
    assert schema["info"]["version"] == "1.0.0"
    assert isinstance(schema["paths"], dict)


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
