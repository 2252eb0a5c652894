"""The token endpoints' own logic; the journeys through users_svc are in tests/test_identity.py."""

import jwt
import pytest
from rest_framework.test import APIClient

from identity.models import IssuedRefreshToken, RefreshTokenFamily
from identity.tests.conftest import PASSWORD
from identity.throttles import LogoutThrottle, TokenRefreshThrottle
from identity.tokens import GatewayRefreshToken

pytestmark = pytest.mark.django_db


def refresh_token() -> str:
    """A validly signed refresh token the gateway has no record of."""
    token = GatewayRefreshToken()
    token["sub"] = "7"
    return str(token)


def login(api: APIClient, email: str = "ann@example.com") -> dict[str, str]:
    response = api.post("/api/auth/token/", {"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.content
    return response.json()


def refresh(api: APIClient, token: str):
    return api.post("/api/auth/token/refresh/", {"refresh": token})


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_logout_revokes_the_refresh_token_and_is_idempotent(gateway_keys, api):
    token = refresh_token()

    first = api.post("/api/auth/logout/", {"refresh": token})
    second = api.post("/api/auth/logout/", {"refresh": token})

    assert (first.status_code, second.status_code) == (204, 204)
    assert RefreshTokenFamily.objects.get().is_revoked
    assert IssuedRefreshToken.objects.count() == 1


def test_a_revoked_refresh_token_cannot_be_used(customers, api):
    token = login(api)["refresh"]
    api.post("/api/auth/logout/", {"refresh": token})

    response = refresh(api, token)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_refresh_token"


def test_a_refresh_token_the_gateway_has_no_record_of_is_refused(customers, api):
    response = refresh(api, refresh_token())
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


# --- rotation and families ---------------------------------------------------------------------


def test_refresh_rotates_within_the_login_s_family(customers, api):
    first = login(api)["refresh"]

    second = refresh(api, first).json()["refresh"]

    assert claims(second)["fam"] == claims(first)["fam"]
    assert claims(second)["jti"] != claims(first)["jti"]
    assert IssuedRefreshToken.objects.get(jti=claims(first)["jti"]).used_at is not None


def test_each_login_starts_a_family_of_its_own(customers, api):
    assert claims(login(api)["refresh"])["fam"] != claims(login(api)["refresh"])["fam"]


def test_access_tokens_do_not_carry_the_family(customers, api):
    assert "fam" not in claims(login(api)["access"])


def test_reusing_a_rotated_refresh_token_revokes_its_whole_family(customers, api):
    first = login(api)["refresh"]
    second = refresh(api, first).json()["refresh"]

    reused = refresh(api, first)
    newest = refresh(api, second)

    assert reused.status_code == 401
    assert reused.json()["code"] == "invalid_refresh_token"
    assert newest.status_code == 401
    family = RefreshTokenFamily.objects.get(id=claims(first)["fam"])
    assert family.revoked_reason == RefreshTokenFamily.RevokedReason.REUSE


def test_a_revoked_family_leaves_the_customers_other_logins_alone(customers, api):
    other = login(api)["refresh"]
    first = login(api)["refresh"]
    refresh(api, first)
    refresh(api, first)  # reuse

    assert refresh(api, other).status_code == 200


def test_logout_revokes_every_token_of_the_family(customers, api):
    first = login(api)["refresh"]
    second = refresh(api, first).json()["refresh"]

    assert api.post("/api/auth/logout/", {"refresh": first}).status_code == 204

    assert refresh(api, second).status_code == 401


def test_a_deactivated_customer_cannot_refresh_and_the_family_is_revoked(customers, api):
    token = login(api)["refresh"]
    customers.inactive.add(claims(token)["sub"])

    response = refresh(api, token)

    assert response.status_code == 401
    assert response.json()["code"] == "account_inactive"
    assert RefreshTokenFamily.objects.get().revoked_reason == "inactive"


def test_flush_forgets_expired_tokens_and_their_families(customers, api):
    from datetime import timedelta

    from django.utils import timezone

    from identity.services import refresh_tokens_flush

    login(api)
    later = timezone.now() + timedelta(days=30)

    assert refresh_tokens_flush(now=later) == 1
    assert not RefreshTokenFamily.objects.exists()


# --- throttles of their own --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "throttle"),
    [("/api/auth/token/refresh/", TokenRefreshThrottle), ("/api/auth/logout/", LogoutThrottle)],
)
def test_refresh_and_logout_are_throttled_per_client(
    gateway_keys, api, monkeypatch, path, throttle
):
    monkeypatch.setattr(throttle, "rate", "2/min", raising=False)

    answers = [api.post(path, {"refresh": "x"}, REMOTE_ADDR="198.51.100.1") for _ in range(3)]
    elsewhere = api.post(path, {"refresh": "x"}, REMOTE_ADDR="198.51.100.2")

    assert [a.status_code for a in answers] == [401, 401, 429]
    assert answers[-1]["Content-Type"] == "application/problem+json"
    assert int(answers[-1]["Retry-After"]) > 0
    assert elsewhere.status_code == 401


def test_the_schema_documents_the_error_answers(gateway_keys, api):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    paths = schema["paths"]

    token = paths["/api/auth/token/"]["post"]["responses"]
    refreshing = paths["/api/auth/token/refresh/"]["post"]["responses"]
    logout = paths["/api/auth/logout/"]["post"]["responses"]
    assert {"200", "400", "401", "429", "503"} <= set(token)
    assert {"200", "401", "429"} <= set(refreshing)
    assert {"204", "401", "429"} <= set(logout)
    assert "application/problem+json" in token["429"]["content"]
    assert "Retry-After" in token["429"]["headers"]
