"""SimpleJWT tokens signed with the gateway's current RS256 key, with a ``kid`` header."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import jwt
from django.conf import settings
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenBackendExpiredToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from common.auth import ALGORITHM, InvalidToken, token_decode
from identity.keys import signing_key

# A refresh token's family: the login it descends from through rotations.
FAMILY_CLAIM = "fam"


class KeyedTokenBackend(TokenBackend):
    """Signs with the newest key and names it in ``kid``; verifies like every service does."""

    def __init__(self) -> None:
        config = settings.JWT
        super().__init__(ALGORITHM, audience=config["AUDIENCE"], issuer=config["ISSUER"])

    def encode(self, payload: dict[str, Any]) -> str:
        key = signing_key()
        claims = {**payload, "aud": self.audience, "iss": self.issuer}
        return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})

    def decode(self, token: Any, verify: bool = True) -> dict[str, Any]:
        if not verify:
            return jwt.decode(token, options={"verify_signature": False})
        try:
            return token_decode(str(token), expected_type=None)
        except InvalidToken as error:
            if "expired" in str(error):
                raise TokenBackendExpiredToken(str(error)) from error
            raise TokenBackendError(str(error)) from error


_backend: KeyedTokenBackend | None = None


def keyed_backend() -> KeyedTokenBackend:
    global _backend
    if _backend is None:
        _backend = KeyedTokenBackend()
    return _backend


class GatewayAccessToken(AccessToken):
    def get_token_backend(self) -> TokenBackend:
        return keyed_backend()


class GatewayRefreshToken(RefreshToken):
    access_token_class = GatewayAccessToken
    # The family is the refresh token's business; access tokens carry the contract's claims.
    no_copy_claims = (*RefreshToken.no_copy_claims, FAMILY_CLAIM)

    def get_token_backend(self) -> TokenBackend:
        return keyed_backend()


def service_token_issue(*, service: str, minutes: int) -> str:
    """A short-lived token with scope ``internal`` for calls between services."""
    token = GatewayAccessToken()
    token.set_exp(lifetime=timedelta(minutes=minutes))
    token["sub"] = f"service:{service}"
    token["scope"] = "internal"
    token["roles"] = ["service"]
    token["name"] = service
    token["email"] = ""
    token["is_staff"] = False
    return str(token)


class ServiceTokenCache:
    """The gateway's own service token, renewed a minute before it expires."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._token = ""
        self._expires_at = 0.0

    def get(self) -> str:
        if time.time() > self._expires_at - 60:
            with self._lock:
                if time.time() > self._expires_at - 60:
                    minutes = settings.JWT["SERVICE_TOKEN_MINUTES"]
                    self._token = service_token_issue(service="gateway", minutes=minutes)
                    self._expires_at = time.time() + minutes * 60
        return self._token

    def clear(self) -> None:
        """Issue a new token on the next ``get`` (the signing key changed: tests)."""
        with self._lock:
            self._expires_at = 0.0


service_token = ServiceTokenCache()
