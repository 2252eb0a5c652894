"""The token endpoints' own logic; the journeys through users_svc are in tests/test_identity.py."""

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

from identity.tokens import GatewayRefreshToken

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def refresh_token() -> str:
    token = GatewayRefreshToken()
    token["sub"] = "7"
    return str(token)


def test_logout_revokes_the_refresh_token_and_is_idempotent(gateway_keys, api):
    token = refresh_token()

    first = api.post("/api/auth/logout/", {"refresh": token})
    second = api.post("/api/auth/logout/", {"refresh": token})

    assert (first.status_code, second.status_code) == (204, 204)
    assert BlacklistedToken.objects.count() == 1


def test_a_revoked_refresh_token_cannot_be_used(gateway_keys, api):
    token = refresh_token()
    api.post("/api/auth/logout/", {"refresh": token})

    response = api.post("/api/auth/token/refresh/", {"refresh": token})

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_refresh_token"


@pytest.mark.parametrize("path", ["/api/auth/logout/", "/api/auth/token/refresh/"])
def test_garbage_or_access_tokens_are_not_refresh_tokens(gateway_keys, api, path):
    access = str(GatewayRefreshToken().access_token)
    assert api.post(path, {"refresh": "not-a-token"}).status_code == 401
    assert api.post(path, {"refresh": access}).status_code == 401


@pytest.mark.parametrize(
    "path", ["/api/auth/token/", "/api/auth/token/refresh/", "/api/auth/logout/"]
)
def test_missing_fields_are_400_problems(gateway_keys, api, path):
    response = api.post(path, {})
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_a_stray_bearer_header_does_not_block_logging_in(gateway_keys, api):
    api.credentials(HTTP_AUTHORIZATION="Bearer expired-or-garbage")
    response = api.post("/api/auth/token/", {})
    assert response.status_code == 400  # validation, not 401
