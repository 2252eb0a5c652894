"""Stateless token verification: what passes, and every forgery that must not."""

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from rest_framework.test import APIClient

from common.auth import key_set, public_jwk
from common.testing.tokens import generate_key_pair

WHOAMI = "/t/whoami/"


def call(path: str, token: str | None) -> object:
    client = APIClient()
    if token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get(path)


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_valid_token_makes_a_user_from_its_claims_alone(make_token):
    token = make_token(sub=42, email="ann@example.com", is_staff=True, roles=["staff"])

    response = call(WHOAMI, token)

    assert response.status_code == 200
    assert response.json() == {
        "id": "42",
        "email": "ann@example.com",
        "is_staff": True,
        "roles": ["staff"],
        "scope": [],
    }


def test_no_token_is_a_401_with_a_bearer_challenge(jwt_keys):
    response = call(WHOAMI, None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_a_tampered_payload_is_refused(make_token):
    header, payload, signature = make_token(sub=1).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["is_staff"] = True
    assert call(WHOAMI, f"{header}.{b64(claims)}.{signature}").status_code == 401


def test_a_tampered_signature_is_refused(make_token):
    token = make_token()
    flipped = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert call(WHOAMI, flipped).status_code == 401


def test_alg_none_is_refused(make_token, jwt_keys):
    _, payload, _ = make_token(is_staff=True).split(".")
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': jwt_keys.kid})}.{payload}."
    response = call(WHOAMI, unsigned)
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_hs256_signed_with_the_public_key_as_secret_is_refused(make_token, jwt_keys):
    claims = jwt.decode(make_token(), options={"verify_signature": False})
    public_pem = jwt_keys.public_path.read_bytes()
    # PyJWT itself refuses a PEM as HMAC secret, so sign by hand as an attacker would.
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': jwt_keys.kid})}.{b64(claims)}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    assert call(WHOAMI, forged).status_code == 401


def test_an_expired_token_is_refused(make_token):
    response = call(WHOAMI, make_token(iat=int(time.time()) - 3600, exp=int(time.time()) - 60))
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


@pytest.mark.parametrize("claim", ["iss", "aud"])
def test_a_token_for_another_issuer_or_audience_is_refused(make_token, claim):
    assert call(WHOAMI, make_token(**{claim: "someone-else"})).status_code == 401


def test_a_refresh_token_is_not_an_access_token(make_token):
    response = call(WHOAMI, make_token(token_type="refresh"))
    assert response.status_code == 401
    assert "access token" in response.json()["detail"]


def test_a_token_without_a_jti_is_refused(make_token):
    assert call(WHOAMI, make_token(jti=None)).status_code == 401


def test_a_token_signed_by_an_unknown_key_is_refused(make_token, tmp_path):
    other = generate_key_pair(tmp_path)
    token = make_token(private_pem=other.private_pem, headers={"kid": other.kid})
    assert call(WHOAMI, token).status_code == 401


def test_customer_tokens_get_403_on_internal_endpoints(make_token):
    assert call("/internal/t/", make_token(sub=5)).status_code == 403
    assert call("/internal/t/", None).status_code == 401


def test_service_tokens_reach_internal_endpoints(make_token):
    response = call("/internal/t/", make_token(sub="service:gateway", scope="internal"))
    assert response.status_code == 200
    assert response.json() == {"caller": "service:gateway"}


def test_a_new_key_dropped_in_the_retired_folder_is_picked_up(make_token, settings, tmp_path):
    """Rotation in file mode: an unknown kid makes the service reload its key files."""
    retired = tmp_path / "retired"
    other = generate_key_pair(tmp_path / "new")
    settings.JWT = {**settings.JWT, "RETIRED_KEYS_DIR": str(retired), "KEYS_RELOAD_SECONDS": 0}
    token = make_token(private_pem=other.private_pem, headers={"kid": other.kid})
    assert call(WHOAMI, token).status_code == 401

    retired.mkdir()
    (retired / f"{other.kid}.pem").write_bytes(other.public_path.read_bytes())

    assert call(WHOAMI, token).status_code == 200


class _JwksHandler(BaseHTTPRequestHandler):
    body = b"{}"
    hits = 0

    def do_GET(self):
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def jwks_server(jwt_keys, settings):
    public_key = serialization.load_pem_public_key(jwt_keys.public_path.read_bytes())
    _JwksHandler.body = json.dumps({"keys": [public_jwk(public_key)]}).encode()
    _JwksHandler.hits = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JwksHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.JWT = {
        **settings.JWT,
        "JWKS_URL": f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json",
        "PUBLIC_KEY_FILES": [],
        "KEYS_RELOAD_SECONDS": 60,
    }
    key_set.clear()
    yield _JwksHandler
    server.shutdown()
    key_set.clear()


def test_keys_come_from_the_jwks_url_and_are_cached(make_token, jwks_server):
    assert call(WHOAMI, make_token()).status_code == 200
    assert call(WHOAMI, make_token()).status_code == 200
    assert jwks_server.hits == 1


def test_unknown_kids_do_not_hammer_the_jwks_url(make_token, jwks_server, tmp_path):
    call(WHOAMI, make_token())
    other = generate_key_pair(tmp_path)
    for _ in range(5):
        token = make_token(private_pem=other.private_pem, headers={"kid": os.urandom(4).hex()})
        assert call(WHOAMI, token).status_code == 401
    assert jwks_server.hits == 1  # reloads are limited to one per KEYS_RELOAD_SECONDS
