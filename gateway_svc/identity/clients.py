"""The gateway's calls to users_svc for identity: over gRPC (rpc.calls), with its service token."""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rpc import calls
from rpc.client import RpcRefused, ServiceUnavailable

from common.problems import DomainError
from identity.tokens import service_token  # noqa: F401 - statuspage reads it from here

# The name the gateway's views and the storefront know the 503 by.
UpstreamUnavailable = ServiceUnavailable


class InvalidCredentials(DomainError):
    code = "invalid_credentials"
    status = status.HTTP_401_UNAUTHORIZED
    title = "Email or password is wrong."


def credentials_check(*, email: str, password: str) -> dict[str, Any]:
    """The claims of the user with these credentials, or ``InvalidCredentials``."""
    try:
        claims = calls.credentials_check(email=email, password=password)
    except RpcRefused as refused:
        raise UpstreamUnavailable(f"The users service refused the check: {refused}.") from None
    if claims is None:
        raise InvalidCredentials()
    return claims


def customer_summary(*, user_id: str) -> dict[str, Any] | None:
    """What users_svc says of a customer now, or None if there is no such customer."""
    try:
        return calls.customer_summary(user_id=user_id)
    except RpcRefused as refused:
        raise UpstreamUnavailable(f"The users service refused the lookup: {refused}.") from None
