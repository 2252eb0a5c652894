"""Pytest fixtures that sign tokens as the gateway would.

Import them into a service's conftest: ``from common.testing.tokens import *``.

``make_token(sub="7", is_staff=True)`` returns a signed access token;
``customer_api`` / ``staff_api`` / ``service_api`` are DRF test clients that
carry one. Keys are generated once per test session.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from rest_framework.test import APIClient

from common.auth import ALGORITHM, key_id, key_set

TokenFactory = Callable[..., str]


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public_path: Path
    kid: str


def generate_key_pair(folder: Path) -> KeyPair:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    folder.mkdir(parents=True, exist_ok=True)
    public_path = folder / "public.pem"
    public_path.write_bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return KeyPair(private_pem, public_path, key_id(private_key.public_key()))


@pytest.fixture(scope="session")
def jwt_key_pair(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_key_pair(tmp_path_factory.mktemp("jwt"))


@pytest.fixture
def jwt_keys(jwt_key_pair: KeyPair, settings: Any) -> Iterator[KeyPair]:
    """Services trust ``jwt_key_pair`` for the duration of one test."""
    settings.JWT = {
        **settings.JWT,
        "PUBLIC_KEY_FILES": [str(jwt_key_pair.public_path)],
        "RETIRED_KEYS_DIR": "",
        "JWKS_URL": "",
    }
    key_set.clear()
    yield jwt_key_pair
    key_set.clear()


@pytest.fixture
def make_token(jwt_keys: KeyPair, settings: Any) -> TokenFactory:
    def sign(
        *,
        sub: str | int = "1",
        lifetime: int = 300,
        private_pem: bytes | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload = {
            "sub": str(sub),
            "email": f"user{sub}@example.com",
            "name": f"User {sub}",
            "is_staff": False,
            "roles": [],
            "token_type": "access",
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
            "iss": settings.JWT["ISSUER"],
            "aud": settings.JWT["AUDIENCE"],
            **claims,
        }
        return jwt.encode(
            payload,
            private_pem or jwt_keys.private_pem,
            algorithm=ALGORITHM,
            headers={"kid": jwt_keys.kid, **(headers or {})},
        )

    return sign


def _client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def customer_api(make_token: TokenFactory) -> APIClient:
    """A customer with id 1001 (no such row needs to exist: verification is stateless)."""
    return _client(make_token(sub=1001, email="ann@example.com", name="Ann", roles=["customer"]))


@pytest.fixture
def staff_api(make_token: TokenFactory) -> APIClient:
    return _client(
        make_token(sub=1, email="admin@example.com", name="Admin", is_staff=True, roles=["staff"])
    )


@pytest.fixture
def service_api(make_token: TokenFactory) -> APIClient:
    return _client(make_token(sub="service:gateway", scope="internal", roles=["service"]))
