"""Issuing, rotating and revoking tokens (SimpleJWT, RS256, blacklist in the gateway's database)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from common.auth import InvalidToken, token_decode
from identity.clients import credentials_check, customer_summary
from identity.errors import AccountInactive, InvalidRefreshToken
from identity.tokens import GatewayAccessToken, GatewayRefreshToken

IDENTITY_CLAIMS = ("email", "name", "is_staff", "roles")


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


def _issue(claims: dict[str, Any]) -> TokenPair:
    """A refresh token (recorded as outstanding) and an access token carrying the identity."""
    refresh = GatewayRefreshToken()
    refresh["sub"] = str(claims["sub"])
    encoded_refresh = str(refresh)
    # Recorded without a user row: customers live in users_svc, not here.
    OutstandingToken.objects.create(
        jti=refresh["jti"],
        token=encoded_refresh,
        created_at=refresh.current_time,
        expires_at=datetime_from_epoch(refresh["exp"]),
    )
    access = refresh.access_token
    for claim in IDENTITY_CLAIMS:
        access[claim] = claims[claim]
    return TokenPair(access=str(access), refresh=encoded_refresh)


def _blacklist(jti: str, exp: int, encoded: str) -> bool:
    """Blacklist a refresh token; False if it already was (a reuse, or a concurrent refresh)."""
    outstanding, _ = OutstandingToken.objects.get_or_create(
        jti=jti, defaults={"token": encoded, "expires_at": datetime_from_epoch(exp)}
    )
    _, created = BlacklistedToken.objects.get_or_create(token=outstanding)
    return created


def token_obtain(*, email: str, password: str) -> TokenPair:
    """Check the credentials with users_svc, then issue a token pair."""
    claims = credentials_check(email=email, password=password)
    with transaction.atomic():
        return _issue(claims)


def token_refresh(*, refresh: str) -> TokenPair:
    """Rotate: the used refresh token is blacklisted and a new pair issued with fresh claims.

    The claims come from users_svc again, so a deactivated account cannot keep
    itself alive, and a staff flag removed an hour ago is not carried forward.
    """
    try:
        token = GatewayRefreshToken(refresh)  # signature, expiry, type, blacklist
    except TokenError as error:
        raise InvalidRefreshToken(str(error)) from error
    summary = customer_summary(user_id=token["sub"])
    with transaction.atomic():
        if not _blacklist(token["jti"], token["exp"], refresh):
            raise InvalidRefreshToken("The refresh token has already been used.")
    if summary is None or not summary["is_active"]:
        raise AccountInactive()
    claims = {"sub": str(summary["id"]), **{claim: summary[claim] for claim in IDENTITY_CLAIMS}}
    with transaction.atomic():
        return _issue(claims)


def token_revoke(*, refresh: str) -> None:
    """Log out: the refresh token can no longer be used. Revoking twice is fine."""
    try:
        claims = token_decode(refresh, expected_type="refresh")
    except InvalidToken as error:
        raise InvalidRefreshToken(str(error)) from error
    with transaction.atomic():
        _blacklist(claims["jti"], claims["exp"], refresh)


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
