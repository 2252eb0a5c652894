"""Identity across real processes: users_svc, the gateway issuing tokens, catalog verifying them.

Services verify with the gateway's JWKS (as in a cluster); forged tokens are
signed with the gateway's real key where the attack needs it, to show that
only the claim under attack is what gets the token refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import time
import uuid
from dataclasses import dataclass

import grpc
import httpx
import jwt
import pytest
from eshop_contracts.users.v1 import users_pb2, users_pb2_grpc
from jwcrypto import jwk as jose_jwk
from jwcrypto import jwt as jose_jwt

from tests.harness import RunningService, ServiceLauncher, free_port, wait_until

pytestmark = pytest.mark.system

PASSWORD = "correct horse battery"


@dataclass
class System:
    gateway: RunningService
    users: RunningService
    catalog: RunningService

    def private_key(self) -> bytes:
        return (self.gateway.var_dir / "jwt" / "private.pem").read_bytes()

    def kid(self) -> str:
        return httpx.get(f"{self.gateway.url}/.well-known/jwks.json").json()["keys"][0]["kid"]


def start_identity_system(launcher: ServiceLauncher, **gateway_env: str) -> System:
    gateway_port = free_port()
    jwks = f"http://127.0.0.1:{gateway_port}/.well-known/jwks.json"
    verifier_env = {"JWT_JWKS_URL": jwks, "JWT_KEYS_RELOAD_SECONDS": "0"}
    users = launcher.start("users", env=verifier_env)
    catalog = launcher.start("catalog", seed=True, env=verifier_env)
    gateway = launcher.start(
        "gateway",
        port=gateway_port,
        env={"USERS_URL": users.url, "LOGIN_RATE_PER_IP": "1000/min", **gateway_env},
    )
    return System(gateway=gateway, users=users, catalog=catalog)


@pytest.fixture(scope="module")
def system(module_services: ServiceLauncher) -> System:
    return start_identity_system(module_services)


def register(system: System, email: str | None = None) -> str:
    email = email or f"{uuid.uuid4().hex[:8]}@example.com"
    response = httpx.post(
        f"{system.users.url}/api/users/register/",
        json={"email": email, "password": PASSWORD, "name": "Test Customer"},
    )
    assert response.status_code == 201, response.text
    return email


def login(system: System, email: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(
        f"{system.gateway.url}/api/auth/token/", json={"email": email, "password": password}
    )


def tokens(system: System, email: str) -> dict[str, str]:
    response = login(system, email)
    assert response.status_code == 200, response.text
    return response.json()


def me(system: System, token: str) -> httpx.Response:
    return httpx.get(
        f"{system.users.url}/api/users/me/", headers={"Authorization": f"Bearer {token}"}
    )


def staff_token(system: System) -> str:
    system.users.manage("ensure_admin", "--email", "boss@example.com", "--password", PASSWORD)
    return tokens(system, "boss@example.com")["access"]


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# --- the whole journey ----------------------------------------------------------------------


def test_register_login_me_refresh_logout(system):
    email = register(system)

    first = tokens(system, email)
    profile = me(system, first["access"])
    refreshed = httpx.post(
        f"{system.gateway.url}/api/auth/token/refresh/", json={"refresh": first["refresh"]}
    )
    second = refreshed.json()
    logout = httpx.post(
        f"{system.gateway.url}/api/auth/logout/", json={"refresh": second["refresh"]}
    )
    after_logout = httpx.post(
        f"{system.gateway.url}/api/auth/token/refresh/", json={"refresh": second["refresh"]}
    )

    assert profile.status_code == 200
    assert profile.json()["email"] == email
    assert profile.json()["credit_limit"] == "1000.00"
    assert refreshed.status_code == 200
    assert second["refresh"] != first["refresh"]
    assert me(system, second["access"]).status_code == 200
    assert logout.status_code == 204
    assert after_logout.status_code == 401
    assert after_logout.json()["code"] == "invalid_refresh_token"


def test_access_token_claims_follow_the_contract(system):
    email = register(system)
    claims = jwt.decode(tokens(system, email)["access"], options={"verify_signature": False})
    header = jwt.get_unverified_header(tokens(system, email)["access"])

    assert {
        "sub",
        "email",
        "name",
        "is_staff",
        "roles",
        "token_type",
        "exp",
        "iat",
        "jti",
        "iss",
        "aud",
    } <= set(claims)
    assert (claims["email"], claims["is_staff"], claims["roles"]) == (email, False, ["customer"])
    assert claims["token_type"] == "access"
    assert header["alg"] == "RS256"
    assert header["kid"] == system.kid()


def test_wrong_password_is_401_problem(system):
    email = register(system)
    response = login(system, email, "not the password")
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_credentials"


def test_register_refuses_the_same_email_in_another_case(system):
    email = register(system)
    response = httpx.post(
        f"{system.users.url}/api/users/register/",
        json={"email": email.upper(), "password": PASSWORD},
    )
    assert response.status_code == 400
    assert "email" in response.json()["errors"]


def test_a_reused_refresh_token_is_refused_after_rotation(system):
    refresh = tokens(system, register(system))["refresh"]
    url = f"{system.gateway.url}/api/auth/token/refresh/"

    assert httpx.post(url, json={"refresh": refresh}).status_code == 200
    reused = httpx.post(url, json={"refresh": refresh})

    assert reused.status_code == 401
    assert reused.json()["code"] == "invalid_refresh_token"


def test_a_deactivated_customer_cannot_refresh(system):
    email = register(system)
    pair = tokens(system, email)
    user_id = jwt.decode(pair["access"], options={"verify_signature": False})["sub"]
    deactivated = httpx.patch(
        f"{system.users.url}/api/users/{user_id}/",
        json={"is_active": False},
        headers={"Authorization": f"Bearer {staff_token(system)}"},
    )
    assert deactivated.status_code == 200

    response = httpx.post(
        f"{system.gateway.url}/api/auth/token/refresh/", json={"refresh": pair["refresh"]}
    )

    assert response.status_code == 401
    assert response.json()["code"] == "account_inactive"
    assert login(system, email).status_code == 401


# --- attacks: each one a 401 ------------------------------------------------------------------


def forged_tokens(system: System, email: str) -> dict[str, str]:
    pair = tokens(system, email)
    access = pair["access"]
    claims = jwt.decode(access, options={"verify_signature": False})
    kid = system.kid()
    key = system.private_key()
    now = int(time.time())

    def sign(**changes: object) -> str:
        return jwt.encode({**claims, **changes}, key, algorithm="RS256", headers={"kid": kid})

    header, payload, signature = access.split(".")
    as_staff = b64({**claims, "is_staff": True, "roles": ["staff"]})
    public_pem = (system.gateway.var_dir / "jwt" / "public.pem").read_bytes()
    hs_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{b64(claims)}"
    hs_mac = (
        base64.urlsafe_b64encode(hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest())
        .rstrip(b"=")
        .decode()
    )

    return {
        "tampered payload": f"{header}.{as_staff}.{signature}",
        "tampered signature": f"{header}.{payload}.{signature[:-6]}AAAAAA",
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{as_staff}.",
        "hs256 with the public key": f"{hs_input}.{hs_mac}",
        "expired": sign(iat=now - 7200, exp=now - 3600),
        "wrong issuer": sign(iss="https://evil.example"),
        "wrong audience": sign(aud="another-system"),
        "refresh token as access": pair["refresh"],
    }


ATTACKS = [
    "tampered payload",
    "tampered signature",
    "alg none",
    "hs256 with the public key",
    "expired",
    "wrong issuer",
    "wrong audience",
    "refresh token as access",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_forged_tokens_are_refused_with_401(system, attack):
    email = register(system)
    response = me(system, forged_tokens(system, email)[attack])
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "authentication_failed"


def test_the_real_token_passes_where_forgeries_fail(system):
    email = register(system)
    assert me(system, tokens(system, email)["access"]).status_code == 200


def _check_credentials(system: System, token: str, email: str, password: str):
    """users.v1 CheckCredentials on users' gRPC server, with ``token`` as the caller's."""
    with grpc.insecure_channel(system.users.grpc_address) as channel:
        return users_pb2_grpc.UsersServiceStub(channel).CheckCredentials(
            users_pb2.CheckCredentialsRequest(email=email, password=password),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )


def test_a_customer_token_is_refused_by_the_internal_grpc_api(system):
    access = tokens(system, register(system))["access"]

    with pytest.raises(grpc.RpcError) as refused:
        _check_credentials(system, access, "x@example.com", "x")

    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_an_operator_service_token_reaches_the_internal_grpc_api(system):
    token = system.gateway.manage("issue_service_token", "operator").stdout.strip()
    email = register(system)

    answer = _check_credentials(system, token, email, PASSWORD)

    assert answer.valid
    assert answer.claims.email == email


# --- standards ---------------------------------------------------------------------------------


def test_an_independent_jose_library_verifies_tokens_with_the_published_jwks(system):
    access = tokens(system, register(system))["access"]
    jwks = httpx.get(f"{system.gateway.url}/.well-known/jwks.json")
    keyset = jose_jwk.JWKSet.from_json(jwks.text)

    verified = jose_jwt.JWT(jwt=access, key=keyset, algs=["RS256"])

    assert jwks.headers["Content-Type"].startswith("application/json")
    assert all(
        k["alg"] == "RS256" and k["use"] == "sig" and k["kty"] == "RSA" for k in jwks.json()["keys"]
    )
    assert json.loads(verified.claims)["token_type"] == "access"


# --- who may write the catalog -----------------------------------------------------------------


def test_only_staff_tokens_may_write_the_catalog(system):
    staff = staff_token(system)
    customer = tokens(system, register(system))["access"]
    url = f"{system.catalog.url}/api/catalog/products/1/stock/"

    as_customer = httpx.post(
        url, json={"delta": 1}, headers={"Authorization": f"Bearer {customer}"}
    )
    as_staff = httpx.post(url, json={"delta": 1}, headers={"Authorization": f"Bearer {staff}"})
    anonymous = httpx.post(url, json={"delta": 1})

    assert as_customer.status_code == 403
    assert as_staff.status_code == 200
    assert anonymous.status_code == 401


# --- key rotation ------------------------------------------------------------------------------


def test_tokens_signed_before_a_rotation_still_verify(services):
    rotating = start_identity_system(services)
    email = register(rotating)
    before = tokens(rotating, email)["access"]
    old_kid = rotating.kid()

    rotating.gateway.manage("generate_jwt_keys", "--rotate")
    after = tokens(rotating, email)["access"]
    published = [
        k["kid"] for k in httpx.get(f"{rotating.gateway.url}/.well-known/jwks.json").json()["keys"]
    ]

    assert jwt.get_unverified_header(after)["kid"] == published[0] != old_kid
    assert old_kid in published
    assert me(rotating, before).status_code == 200
    assert me(rotating, after).status_code == 200


# --- throttling --------------------------------------------------------------------------------


def test_the_token_endpoint_throttles_per_email_and_per_ip(services):
    limited = start_identity_system(
        services, LOGIN_RATE_PER_EMAIL="3/min", LOGIN_RATE_PER_IP="6/min"
    )
    victim, other = register(limited), register(limited)

    per_email = [login(limited, victim, "guess").status_code for _ in range(4)]
    other_email = [login(limited, other, "guess").status_code for _ in range(3)]
    throttled = login(limited, other, "guess")

    assert per_email == [401, 401, 401, 429]
    # The address is fresh, the IP is not: it failed 3 times already (the refused 4th
    # attempt counted nowhere), so its 6th failure locks it out for every account.
    assert other_email == [401, 401, 401]
    assert throttled.status_code == 429
    assert throttled.headers["Content-Type"] == "application/problem+json"
    assert int(throttled.headers["Retry-After"]) > 0
    assert throttled.json()["code"] == "too_many_requests"


def test_failed_logins_from_many_addresses_never_lock_the_customer_out(services):
    guarded = start_identity_system(
        services, NUM_PROXIES="1", LOGIN_RATE_PER_EMAIL="3/min", LOGIN_RATE_PER_ACCOUNT="6/10min"
    )
    victim = register(guarded)

    def attempt(address: str, password: str) -> int:
        return httpx.post(
            f"{guarded.gateway.url}/api/auth/token/",
            json={"email": victim, "password": password},
            headers={"X-Forwarded-For": address},
        ).status_code

    attacks = [[attempt(f"198.51.100.{n}", "guess") for _ in range(4)] for n in range(1, 6)]

    assert attacks[0] == [401, 401, 401, 429]  # one address, locked out of the account
    assert attacks[-1] == [401, 429, 429, 429]  # the account is guarded by then
    assert attempt("203.0.113.7", PASSWORD) == 200  # the customer is not


def test_sign_ups_through_the_gateway_are_limited_per_address(services):
    # The gateway's windows are the clock's (a "2/min" window ends at every minute, and
    # three sign-ups of half a second of PBKDF2 each straddled one in a CI run): a day's
    # window holds all three but for the seconds around midnight UTC.
    limited = start_identity_system(services, REGISTRATION_RATE_PER_IP="2/day")

    def sign_up() -> httpx.Response:
        return httpx.post(
            f"{limited.gateway.url}/api/users/register/",
            json={"email": f"{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD},
        )

    answers = [sign_up() for _ in range(3)]

    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[-1].headers["Content-Type"] == "application/problem+json"
    assert answers[-1].json()["code"] == "too_many_requests"
    assert int(answers[-1].headers["Retry-After"]) > 0


def test_a_reused_refresh_token_revokes_the_newest_of_its_family(system):
    url = f"{system.gateway.url}/api/auth/token/refresh/"
    first = tokens(system, register(system))["refresh"]
    newest = httpx.post(url, json={"refresh": first}).json()["refresh"]

    reused = httpx.post(url, json={"refresh": first})
    after_reuse = httpx.post(url, json={"refresh": newest})

    assert reused.status_code == 401
    assert after_reuse.status_code == 401
    assert after_reuse.json()["code"] == "invalid_refresh_token"


def test_a_token_naming_an_unknown_key_is_a_clean_401(system):
    """A token with an unknown kid is a clean 401, not a crash."""
    token = jwt.encode(
        {"sub": "1", "token_type": "access"},
        system.private_key(),
        algorithm="RS256",
        headers={"kid": "unknown-kid"},
    )
    response = me(system, token)
    assert response.status_code == 401
    assert "unknown key" in response.json()["detail"]


def test_refresh_tokens_are_flushed_on_a_schedule_until_sigterm(system):
    # compose's gateway-housekeeping runs this for good; SIGTERM ends its pause at once.
    log = system.gateway.var_dir / "flush_refresh_tokens.log"
    process = system.gateway.start_manage("flush_refresh_tokens", "--every", "0.2")
    try:
        assert wait_until(
            lambda: log.exists() and log.read_text().count("expired refresh tokens deleted") >= 2,
            timeout=30,
        ), log.read_text() if log.exists() else "no log"
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
    assert code == 0
