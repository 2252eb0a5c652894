"""Issuing, rotating and revoking tokens (SimpleJWT, RS256; refresh tokens tracked by jti)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.utils import datetime_from_epoch

from common.auth import InvalidToken, token_decode
from identity.clients import InvalidCredentials, credentials_check, customer_summary
from identity.errors import AccountInactive, InvalidRefreshToken
from identity.login_attempts import (
    login_attempt_abandon,
    login_attempt_begin,
    login_failure_record,
    login_success_record,
)
from identity.models import IssuedRefreshToken, RefreshTokenFamily
from identity.tokens import (  # noqa: F401 - service_token_issue: identity's front door
    FAMILY_CLAIM,
    GatewayAccessToken,
    GatewayRefreshToken,
    service_token_issue,
)

IDENTITY_CLAIMS = ("email", "name", "is_staff", "roles")


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


def _issue(claims: dict[str, Any], *, family: RefreshTokenFamily) -> TokenPair:
    """A refresh token of ``family`` (recorded by its jti) and an access token with the identity."""
    refresh = GatewayRefreshToken()
    refresh["sub"] = str(claims["sub"])
    refresh[FAMILY_CLAIM] = family.id
    IssuedRefreshToken.objects.create(
        jti=refresh["jti"],
        family=family,
        created_at=refresh.current_time,
        expires_at=datetime_from_epoch(refresh["exp"]),
    )
    access = refresh.access_token
    for claim in IDENTITY_CLAIMS:
        access[claim] = claims[claim]
    return TokenPair(access=str(access), refresh=str(refresh))


def _family_id(claims: Any) -> str:
    # Tokens issued before families existed are each a family of their own.
    return str(claims.get(FAMILY_CLAIM) or claims["jti"])


def _family_revoke(family: RefreshTokenFamily, reason: str) -> None:
    if family.revoked_at is None:
        family.revoked_at = timezone.now()
        family.revoked_reason = reason
        family.save(update_fields=["revoked_at", "revoked_reason"])


def token_obtain(*, email: str, password: str, client: str) -> TokenPair:
    """Check the credentials with users_svc, then issue a token pair starting a new family.

    ``client`` is the caller's address: failed attempts are counted per client
    and account (identity.login_attempts), and a locked-out client is refused
    (``LoginLocked``) before its password is checked.
    """
    login_attempt_begin(email=email, client=client)
    try:
        claims = credentials_check(email=email, password=password)
    except InvalidCredentials:
        login_failure_record(email=email, client=client)
        raise
    except BaseException:
        login_attempt_abandon(email=email, client=client)  # not a failure either
        raise
    login_success_record(email=email, client=client)
    with transaction.atomic():
        family = RefreshTokenFamily.objects.create(id=uuid.uuid4().hex, subject=str(claims["sub"]))
        return _issue(claims, family=family)


def token_refresh(*, refresh: str) -> TokenPair:
    """Rotate: the used refresh token is spent and a new pair of the same family issued.

    The claims come from users_svc again, so a deactivated account cannot keep
    itself alive, and a staff flag removed an hour ago is not carried forward.
    A token that was spent already comes back only if it was copied: the whole
    family is revoked, so the newest token (whoever holds it) is refused too.
    """
    try:
        token = GatewayRefreshToken(refresh)  # signature, expiry, type
    except TokenError as error:
        raise InvalidRefreshToken(str(error)) from error
    summary = customer_summary(user_id=token["sub"])  # before the transaction: HTTP
    refused: InvalidRefreshToken | AccountInactive | None = None
    with transaction.atomic():
        issued = (
            IssuedRefreshToken.objects.select_for_update()
            .select_related("family")
            .filter(jti=token["jti"])
            .first()
        )
        if issued is None or issued.family_id != _family_id(token):
            refused = InvalidRefreshToken("The refresh token is not known.")
        elif issued.family.is_revoked:
            refused = InvalidRefreshToken("The refresh token has been revoked.")
        elif issued.used_at is not None:
            _family_revoke(issued.family, RefreshTokenFamily.RevokedReason.REUSE)
            refused = InvalidRefreshToken(
                "The refresh token has already been used; every token of its session is revoked."
            )
        else:
            issued.used_at = timezone.now()
            issued.save(update_fields=["used_at"])
            if summary is None or not summary["is_active"]:
                _family_revoke(issued.family, RefreshTokenFamily.RevokedReason.INACTIVE)
                refused = AccountInactive()
            else:
                claims = {
                    "sub": str(summary["id"]),
                    **{claim: summary[claim] for claim in IDENTITY_CLAIMS},
                }
                return _issue(claims, family=issued.family)
    raise refused  # after the commit: a revocation stays revoked


def token_revoke(*, refresh: str) -> None:
    """Log out: the refresh token's whole family is revoked. Revoking twice is fine."""
    try:
        claims = token_decode(refresh, expected_type="refresh")
    except InvalidToken as error:
        raise InvalidRefreshToken(str(error)) from error
    with transaction.atomic():
        family, _ = RefreshTokenFamily.objects.select_for_update().get_or_create(
            id=_family_id(claims), defaults={"subject": str(claims["sub"])}
        )
        # A validly signed token we have no record of (issued before tracking) is
        # recorded as it is revoked, so that it stays refused.
        IssuedRefreshToken.objects.get_or_create(
            jti=claims["jti"],
            defaults={"family": family, "expires_at": datetime_from_epoch(claims["exp"])},
        )
        _family_revoke(family, RefreshTokenFamily.RevokedReason.LOGOUT)


def refresh_tokens_flush(*, now: datetime | None = None) -> int:
    """Forget expired refresh tokens and families left without a token; how many tokens went."""
    now = now or timezone.now()
    with transaction.atomic():
        deleted, _ = IssuedRefreshToken.objects.filter(expires_at__lte=now).delete()
        RefreshTokenFamily.objects.filter(tokens__isnull=True).delete()
    return deleted
