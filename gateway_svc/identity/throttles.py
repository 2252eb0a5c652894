"""Per client address limits on the refresh and logout endpoints (every request counts).

Logins are not throttled this way: only their failures count (identity.login_attempts).
Each refresh costs a call to users_svc, an RS256 signature and two writes, each
logout a write; a client looping on either is slowed down here.
"""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle
from rest_framework.views import APIView


class _ClientThrottle(SimpleRateThrottle):
    def get_cache_key(self, request: Request, view: APIView) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class TokenRefreshThrottle(_ClientThrottle):
    scope = "token_refresh"


class LogoutThrottle(_ClientThrottle):
    scope = "logout"


def client_address(request: Request) -> str:
    """The caller's address as DRF's throttles see it (REMOTE_ADDR, or NUM_PROXIES' entry)."""
    return BaseThrottle().get_ident(request)
