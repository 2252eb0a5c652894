"""Stateless verification of the gateway's RS256 tokens, in every service.

No user table is read: the request user is built from the token's claims.
Public keys come from files (``JWT_PUBLIC_KEY``, plus retired keys in
``JWT_RETIRED_KEYS``) or from the gateway's JWKS (``JWT_JWKS_URL``). They are
loaded once and looked up by the token's ``kid``; an unknown ``kid`` triggers
one reload (at most every ``JWT_KEYS_RELOAD_SECONDS``), which is how a key
rotation reaches running services.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from django.conf import settings
from jsonschema import Draft202012Validator
from jwt.algorithms import RSAAlgorithm
from rest_framework import authentication, exceptions
from rest_framework.request import Request

logger = logging.getLogger(__name__)

ALGORITHM = "RS256"
INTERNAL_SCOPE = "internal"
REQUIRED_CLAIMS = ["exp", "iat", "jti", "sub", "iss", "aud", "token_type"]
# The types of the claims the services read. PyJWT checks signature, expiry and issuer
# but takes ``"exp": "1893456000"`` (text) and leaves ``roles``, ``scope`` or ``email``
# to us: a signed token with other types made a 500 (found by the property tests,
# common/tests/test_properties.py), now it is refused like any invalid token.
_CLAIMS = Draft202012Validator(
    {
        "type": "object",
        "properties": {
            "exp": {"type": "number"},
            "iat": {"type": "number"},
            "sub": {"type": "string"},
            "jti": {"type": "string"},
            "token_type": {"type": "string"},
            "email": {"type": "string"},
            "name": {"type": "string"},
            "is_staff": {"type": "boolean"},
            "roles": {"type": "array", "items": {"type": "string"}},
            "scope": {
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
            },
        },
    }
)


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def key_id(public_key: RSAPublicKey) -> str:
    """The RFC 7638 JWK thumbprint: the same key always gets the same ``kid``."""
    numbers = public_key.public_numbers()
    canonical = json.dumps(
        {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)},
        separators=(",", ":"),
        sort_keys=True,
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def public_jwk(public_key: RSAPublicKey) -> dict[str, str]:
    """The public key as a JWKS entry: ``{kty, kid, alg, use, n, e}``."""
    jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    return {
        "kty": "RSA",
        "kid": key_id(public_key),
        "alg": ALGORITHM,
        "use": "sig",
        "n": jwk["n"],
        "e": jwk["e"],
    }


def load_public_key(path: Path) -> RSAPublicKey:
    """A PEM public key, or the public half of a PEM private key."""
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        return serialization.load_pem_private_key(data, password=None).public_key()  # type: ignore[return-value]
    return serialization.load_pem_public_key(data)  # type: ignore[return-value]


class KeySet:
    """The public keys tokens may be signed with, by ``kid``; reloaded on an unknown ``kid``."""

    def __init__(self) -> None:
        self._keys: dict[str, RSAPublicKey] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._keys = {}
            self._loaded_at = float("-inf")

    def get(self, kid: str) -> RSAPublicKey | None:
        key = self._keys.get(kid)
        if key is None and self._may_reload():
            self._reload()
            key = self._keys.get(kid)
        return key

    def _may_reload(self) -> bool:
        interval = settings.JWT["KEYS_RELOAD_SECONDS"]
        return time.monotonic() - self._loaded_at >= interval

    def _reload(self) -> None:
        with self._lock:
            if not self._may_reload():  # another thread just did it
                return
            try:
                keys = self._fetch()
            except Exception:
                logger.exception("Could not load the token verification keys")
                keys = self._keys  # keep verifying with what we had
            self._keys = keys
            self._loaded_at = time.monotonic()

    def _fetch(self) -> dict[str, RSAPublicKey]:
        config = settings.JWT
        if config["JWKS_URL"]:
            response = httpx.get(config["JWKS_URL"], timeout=5.0)
            response.raise_for_status()
            keys = {}
            for jwk in response.json()["keys"]:
                if jwk.get("kty") == "RSA" and jwk.get("alg", ALGORITHM) == ALGORITHM:
                    keys[jwk["kid"]] = RSAAlgorithm.from_jwk(jwk)
            return keys
        paths = [Path(p) for p in config["PUBLIC_KEY_FILES"] if p]
        retired = Path(config["RETIRED_KEYS_DIR"]) if config["RETIRED_KEYS_DIR"] else None
        if retired and retired.is_dir():
            paths.extend(sorted(retired.glob("*.pem")))
        keys = {}
        for path in paths:
            if path.exists():
                public_key = load_public_key(path)
                keys[key_id(public_key)] = public_key
        return keys


key_set = KeySet()


class InvalidToken(Exception):
    """The token cannot be trusted; the message says why (safe to show the client)."""


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, read without PyJWT's full parse (jwt.decode parses the token anyway)."""
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    # RecursionError: a header of a few thousand nested brackets (found by the property
    # tests, common/tests/test_properties.py) is as malformed as any other.
    except (ValueError, binascii.Error, RecursionError) as error:
        raise InvalidToken("The token is malformed.") from error
    if not isinstance(header, dict):
        raise InvalidToken("The token is malformed.")
    return header


def token_decode(token: str, *, expected_type: str | None = "access") -> dict[str, Any]:
    """Verify signature, algorithm, expiry, issuer, audience and type; return the claims."""
    header = _unverified_header(token)
    if header.get("alg") != ALGORITHM:
        raise InvalidToken(f"Only {ALGORITHM} tokens are accepted.")
    public_key = key_set.get(str(header.get("kid", "")))
    if public_key is None:
        raise InvalidToken("The token was signed with an unknown key.")
    config = settings.JWT
    try:
        claims = jwt.decode(
            token,
            public_key,
            algorithms=[ALGORITHM],
            audience=config["AUDIENCE"],
            issuer=config["ISSUER"],
            leeway=config["LEEWAY_SECONDS"],
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as error:
        raise InvalidToken("The token has expired.") from error
    except jwt.InvalidTokenError as error:
        raise InvalidToken(f"The token is not valid: {error}.") from error
    if not _CLAIMS.is_valid(claims):
        raise InvalidToken("The token's claims are malformed.")
    if expected_type and claims.get("token_type") != expected_type:
        raise InvalidToken(f"An {expected_type} token is required.")
    return claims


class VerifiedTokens:
    """Tokens already verified, remembered until they expire (at most ``capacity`` of them).

    A token's signature and claims never change, so one RS256 check per token,
    not per request, is enough; the expiry is checked on every use. Shared by
    threads: a lost race costs one extra verification, nothing more.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._claims: dict[str, dict[str, Any]] = {}

    def verify(self, token: str) -> dict[str, Any]:
        claims = self._claims.get(token)
        if claims is not None and claims["exp"] > time.time():
            return claims
        claims = token_decode(token)
        if len(self._claims) >= self.capacity:
            with contextlib.suppress(KeyError, StopIteration, RuntimeError):
                del self._claims[next(iter(self._claims))]  # the oldest
        self._claims[token] = claims
        return claims

    def clear(self) -> None:
        self._claims.clear()


verified_tokens = VerifiedTokens()


@dataclass(frozen=True)
class TokenUser:
    """The caller as the token describes it; nothing is read from a database."""

    id: str
    email: str = ""
    name: str = ""
    is_staff: bool = False
    roles: tuple[str, ...] = ()
    scope: tuple[str, ...] = ()
    claims: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    is_authenticated = True
    is_anonymous = False
    is_active = True

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> TokenUser:
        scope = claims.get("scope", "")
        return cls(
            id=str(claims["sub"]),
            email=claims.get("email", ""),
            name=claims.get("name", ""),
            is_staff=bool(claims.get("is_staff", False)),
            roles=tuple(claims.get("roles", ())),
            scope=tuple(scope.split() if isinstance(scope, str) else scope),
            claims=claims,
        )

    @property
    def pk(self) -> str:
        return self.id

    @property
    def is_service(self) -> bool:
        return INTERNAL_SCOPE in self.scope

    def __str__(self) -> str:
        return self.email or self.id


class JWTAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <access token>``; a bad token is a 401, never a silent anonymous."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[TokenUser, dict[str, Any]] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "The Authorization header must be 'Bearer <token>'."
            )
        try:
            claims = verified_tokens.verify(header[1].decode("latin-1"))
        except InvalidToken as error:
            raise exceptions.AuthenticationFailed(str(error)) from error
        return TokenUser.from_claims(claims), claims

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'
