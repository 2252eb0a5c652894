"""The public REST API's version (common.api_versions) through the gateway, on real processes.

Version 1 is today's API: ``Accept: application/json; version=1`` and no version get the
same answers; the header reaches the service unchanged; a version not served is refused
with 406 problem details, by the service and, for what it answers itself, the gateway.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.harness import ServiceLauncher
from tests.test_gateway import PASSWORD, Stack, bearer, start_stack
from tests.upstream import ControlledUpstream

pytestmark = pytest.mark.system

V1 = {"Accept": "application/json; version=1"}
V2 = {"Accept": "application/json; version=2"}


@pytest.fixture(scope="module")
def orders() -> ControlledUpstream:
    upstream = ControlledUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def stack(module_services: ServiceLauncher, orders: ControlledUpstream) -> Stack:
    return start_stack(module_services, orders)


def _token(stack: Stack) -> str:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    registered = httpx.post(
        stack.url("/api/users/register/"), json={"email": email, "password": PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    login = httpx.post(stack.url("/api/auth/token/"), json={"email": email, "password": PASSWORD})
    return login.json()["access"]


def test_version_1_and_no_version_get_the_same_catalog_answer(stack):
    unversioned = httpx.get(stack.url("/api/catalog/products/"))
    versioned = httpx.get(stack.url("/api/catalog/products/"), headers=V1)

    assert versioned.status_code == 200
    assert versioned.json() == unversioned.json()
    assert versioned.json()["count"] > 0


def test_the_version_reaches_the_service_unchanged(stack):
    token = _token(stack)
    response = httpx.get(stack.url("/api/orders/echo/version/"), headers={**bearer(token), **V1})

    assert response.status_code == 200
    assert response.json()["headers"]["accept"] == "application/json; version=1"


def test_version_2_is_refused_at_the_gateway_edge_with_406_problem(stack, orders):
    before = orders.count("GET", "/api/orders/")
    token = _token(stack)
    composition = f"/api/orders/{uuid.uuid4()}/details/"
    for path in ("/api/catalog/products/", "/api/users/me/", "/api/orders/", composition):
        response = httpx.get(stack.url(path), headers={**bearer(token), **V2})

        assert response.status_code == 406, path
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "unknown_api_version"
    # The gateway refused for orders at its edge: nothing reached the upstream.
    assert orders.count("GET", "/api/orders/") == before


def test_the_gateways_own_endpoints_refuse_version_2(stack):
    response = httpx.post(
        stack.url("/api/auth/token/"),
        json={"email": "nobody@example.com", "password": PASSWORD},
        headers=V2,
    )

    assert response.status_code == 406
    assert response.json()["code"] == "unknown_api_version"


def test_the_merged_openapi_document_says_version_1_and_how_to_ask(stack):
    schema = httpx.get(stack.url("/api/schema/"), params={"format": "json"}).json()

    assert schema["info"]["version"] == "1"
    assert schema["info"]["x-api-versioning"]["header"] == "Accept"
    assert "version=1" in schema["info"]["description"]
    products = schema["paths"]["/api/catalog/products/"]["get"]
    assert "406" in products["responses"]
    assert "406" in schema["paths"]["/api/orders/{order_id}/details/"]["get"]["responses"]
