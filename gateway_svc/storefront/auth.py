"""Who is signed in to the storefront: the gateway's tokens, kept in the Django session.

The tokens never reach the page: the browser holds only the session cookie
(HttpOnly), and the storefront sends the access token upstream on the
customer's behalf. The access token is refreshed (rotated, as the token API
does) shortly before it expires; a refused refresh signs the session out.

Other parts of the gateway that serve the storefront's browser (the order
status push channel) read the same session through ``session_access_token``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.http import HttpRequest

from common.auth import InvalidToken, token_decode
from common.problems import DomainError
from identity.clients import UpstreamUnavailable
from identity.services import TokenPair, token_refresh, token_revoke

# The session key holding {"access", "refresh", "expires_at", "user": {...}}.
SESSION_TOKENS = "storefront_tokens"
# Refresh this long before the access token expires: a page makes several calls.
REFRESH_MARGIN_SECONDS = 60
# One refresh per login at a time (see _tokens_refreshed); its result is kept for
# requests that still hold the spent pair, for longer than an access token lives.
REFRESH_LOCK_SECONDS = 5
SUCCESSOR_KEPT_SECONDS = 3600


@dataclass(frozen=True)
class Customer:
    """The signed-in person, as the access token's claims say."""

    id: str
    email: str
    name: str
    is_staff: bool

    @property
    def display_name(self) -> str:
        return self.name or self.email


def _session_tokens(pair: TokenPair) -> dict[str, Any]:
    claims = token_decode(pair.access)
    return {
        "access": pair.access,
        "refresh": pair.refresh,
        "expires_at": int(claims["exp"]),
        "user": {
            "id": str(claims["sub"]),
            "email": claims.get("email", ""),
            "name": claims.get("name", ""),
            "is_staff": bool(claims.get("is_staff")),
        },
    }


async def session_sign_in(request: HttpRequest, *, pair: TokenPair) -> Customer:
    """Keep a fresh token pair in a new session (a new key: no session fixation)."""
    await request.session.acycle_key()
    tokens = _session_tokens(pair)
    await request.session.aset(SESSION_TOKENS, tokens)
    return Customer(**tokens["user"])


async def session_customer(request: HttpRequest) -> Customer | None:
    """The signed-in customer, or None (this also loads the session for sync reads)."""
    tokens = await request.session.aget(SESSION_TOKENS)
    return Customer(**tokens["user"]) if tokens else None


async def session_access_token(request: HttpRequest) -> str | None:
    """A valid access token for the session's customer, refreshed if it is about to expire;
    None when nobody is signed in or the session's login was revoked."""
    tokens = await request.session.aget(SESSION_TOKENS)
    if not tokens:
        return None
    while tokens["expires_at"] - REFRESH_MARGIN_SECONDS <= time.time():
        try:
            fresh = await _tokens_refreshed(tokens)
        except UpstreamUnavailable:
            # users_svc is away for now: keep the login, use the token while it lasts.
            return tokens["access"] if tokens["expires_at"] > time.time() else None
        except (DomainError, InvalidToken):
            # Revoked, account deactivated: the person signs in again rather than
            # seeing an error on every page.
            await request.session.apop(SESSION_TOKENS, None)
            return None
        if fresh is None:  # another request is refreshing: this token still serves
            return tokens["access"] if tokens["expires_at"] > time.time() else None
        tokens = fresh
        await request.session.aset(SESSION_TOKENS, tokens)
    return tokens["access"]


def _successor_key(refresh: str) -> str:
    return "storefront:refreshed:" + hashlib.sha256(refresh.encode()).hexdigest()


async def _tokens_refreshed(tokens: dict[str, Any]) -> dict[str, Any] | None:
    """The pair that follows ``tokens``: refreshed once, however many requests ask.

    Refresh tokens rotate and a spent one used again revokes the whole login
    (identity.services.token_refresh), so two requests of one session must never
    both refresh: a page and its status updates, or a request that saved the
    session it had read before another refreshed it. The first one refreshes
    under a lock in the cache (shared by workers with Redis) and leaves the new
    pair there, under the spent token, for the others; None when another request
    holds the lock and has not finished within the wait.
    """
    key = _successor_key(tokens["refresh"])
    if successor := await cache.aget(key):
        return successor
    if await cache.aadd(f"{key}:lock", 1, timeout=REFRESH_LOCK_SECONDS):
        pair = await sync_to_async(token_refresh)(refresh=tokens["refresh"])
        fresh = _session_tokens(pair)
        await cache.aset(key, fresh, timeout=SUCCESSOR_KEPT_SECONDS)
        return fresh
    if tokens["expires_at"] > time.time():
        return None  # no need to wait: the current token is still valid
    for _ in range(int(REFRESH_LOCK_SECONDS / 0.05)):
        await asyncio.sleep(0.05)  # the other request's refresh: one call to users_svc
        if successor := await cache.aget(key):
            return successor
    return None


async def session_sign_out(request: HttpRequest) -> None:
    """Revoke the session's login (every token of it) and forget the whole session."""
    tokens = await request.session.aget(SESSION_TOKENS)
    if tokens:
        # An invalid refresh token is already as good as revoked.
        with contextlib.suppress(DomainError):
            await sync_to_async(token_revoke)(refresh=tokens["refresh"])
    await request.session.aflush()
