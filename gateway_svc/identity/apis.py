"""Token endpoints (``/api/auth/``) and the JWKS: thin views over identity.services."""

from __future__ import annotations

from dataclasses import asdict

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import Throttled
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.problems import PROBLEM_CONTENT_TYPE
from identity.keys import jwks
from identity.login_attempts import LoginLocked
from identity.serializers import (
    JwksSerializer,
    ProblemSerializer,
    RefreshSerializer,
    TokenObtainSerializer,
    TokenPairSerializer,
)
from identity.services import token_obtain, token_refresh, token_revoke
from identity.throttles import LogoutThrottle, TokenRefreshThrottle, client_address


def _problems(by_status: dict[int, str]) -> dict[tuple[int, str], OpenApiResponse]:
    """Error answers for the schema: problem details, one description per status."""
    return {
        (code, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description=text)
        for code, text in by_status.items()
    }


_RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    description="Seconds to wait before trying again.",
    response=[429],
)
_TOO_MANY = "Too many requests from this client (`code` `too_many_requests`); see Retry-After."


class _PublicApi(APIView):
    """No credentials are read: a stray Authorization header must not turn these into 401s."""

    permission_classes = [AllowAny]
    authentication_classes: list = []


class TokenObtainApi(_PublicApi):
    """Log in: email and password in, an access and a refresh token out."""

    @extend_schema(
        request=TokenObtainSerializer,
        parameters=[_RETRY_AFTER],
        responses={
            200: TokenPairSerializer,
            **_problems(
                {
                    400: "Email or password missing (`validation_error`).",
                    401: "Wrong email or password (`invalid_credentials`).",
                    429: "Too many failed logins from this client, for this account or for any "
                    "(`too_many_requests`); lockouts grow with each one. See Retry-After.",
                    503: "The users service cannot be reached (`upstream_unavailable`).",
                }
            ),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = TokenObtainSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            pair = token_obtain(**serializer.validated_data, client=client_address(request))
        except LoginLocked as locked:
            raise Throttled(
                wait=locked.retry_after,
                detail=f"Too many failed logins; try again in {locked.retry_after} s.",
            ) from locked
        return Response(asdict(pair))


class TokenRefreshApi(_PublicApi):
    """A new pair for a refresh token, which is then spent (rotation)."""

    throttle_classes = [TokenRefreshThrottle]

    @extend_schema(
        request=RefreshSerializer,
        parameters=[_RETRY_AFTER],
        responses={
            200: TokenPairSerializer,
            **_problems(
                {
                    400: "No refresh token (`validation_error`).",
                    401: "Not a valid refresh token, or used or revoked (`invalid_refresh_token`): "
                    "a rotated token used again revokes every token of its login; or the account "
                    "is no longer active (`account_inactive`).",
                    429: _TOO_MANY,
                    503: "The users service cannot be reached (`upstream_unavailable`).",
                }
            ),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = RefreshSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(asdict(token_refresh(refresh=serializer.validated_data["refresh"])))


class LogoutApi(_PublicApi):
    """Revoke a refresh token, and every token rotated from the same login."""

    throttle_classes = [LogoutThrottle]

    @extend_schema(
        request=RefreshSerializer,
        parameters=[_RETRY_AFTER],
        responses={
            204: None,
            **_problems(
                {
                    400: "No refresh token (`validation_error`).",
                    401: "Not a valid refresh token (`invalid_refresh_token`).",
                    429: _TOO_MANY,
                }
            ),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = RefreshSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token_revoke(refresh=serializer.validated_data["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class JwksApi(_PublicApi):
    """The public keys that verify the gateway's tokens (RFC 7517)."""

    @extend_schema(responses={200: JwksSerializer})
    def get(self, request: Request) -> Response:
        # Short cache: services also refetch when they meet an unknown kid.
        return Response(jwks(), headers={"Cache-Control": "public, max-age=300"})
