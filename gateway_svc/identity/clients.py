"""The gateway's calls to users_svc's internal API, with a service token it mints itself."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import httpx
from django.conf import settings
from rest_framework import status

from common.discovery import discovery_from_settings
from common.observability import context_headers
from common.problems import DomainError


class InvalidCredentials(DomainError):
    code = "invalid_credentials"
    status = status.HTTP_401_UNAUTHORIZED
    title = "Email or password is wrong."


class UpstreamUnavailable(DomainError):
    code = "upstream_unavailable"
    status = status.HTTP_503_SERVICE_UNAVAILABLE
    title = "A service needed for this request is unavailable."


class _ServiceTokenCache:
    """The gateway's own service token, renewed a minute before it expires."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._token = ""
        self._expires_at = 0.0

    def get(self) -> str:
        if time.time() > self._expires_at - 60:
            from identity.services import service_token_issue

            with self._lock:
                if time.time() > self._expires_at - 60:
                    minutes = settings.JWT["SERVICE_TOKEN_MINUTES"]
                    self._token = service_token_issue(service="gateway", minutes=minutes)
                    self._expires_at = time.time() + minutes * 60
        return self._token


service_token = _ServiceTokenCache()
# One pooled keep-alive client for the process (httpx.Client is thread-safe).
_client = httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0))
_turn = itertools.count()


def _call(method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Call users_svc, trying each instance discovery knows (round-robin) until one answers."""
    discovery = discovery_from_settings()
    discovery.start()  # idempotent; the proxy's runtime usually started it already
    instances = discovery.instances("users")
    if not instances:
        raise UpstreamUnavailable("No instance of the users service is registered.")
    start = next(_turn)
    headers = {"Authorization": f"Bearer {service_token.get()}", **context_headers()}
    for offset in range(len(instances)):
        instance = instances[(start + offset) % len(instances)]
        try:
            response = _client.request(method, instance.url + path, headers=headers, **kwargs)
        except httpx.TransportError:
            continue  # this instance is gone; the next may answer
        if response.status_code >= 500:
            raise UpstreamUnavailable(f"The users service answered {response.status_code}.")
        return response
    raise UpstreamUnavailable("The users service cannot be reached.")


def credentials_check(*, email: str, password: str) -> dict[str, Any]:
    """The claims of the user with these credentials, or ``InvalidCredentials``."""
    response = _call(
        "POST", "/internal/credentials/verify/", json={"email": email, "password": password}
    )
    if response.status_code in (400, 401):
        raise InvalidCredentials()
    if response.status_code != 200:
        raise UpstreamUnavailable(f"The users service answered {response.status_code}.")
    return response.json()


def customer_summary(*, user_id: str) -> dict[str, Any] | None:
    """What users_svc says of a customer now, or None if there is no such customer."""
    response = _call("GET", f"/internal/customers/{user_id}/")
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise UpstreamUnavailable(f"The users service answered {response.status_code}.")
    return response.json()
