"""Token endpoints (``/api/auth/``) and the JWKS: thin views over identity.services."""

from __future__ import annotations

from dataclasses import asdict

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from identity.keys import jwks
from identity.serializers import (
    JwksSerializer,
    RefreshSerializer,
    TokenObtainSerializer,
    TokenPairSerializer,
)
from identity.services import token_obtain, token_refresh, token_revoke
from identity.throttles import LoginEmailThrottle, LoginIpThrottle


class _PublicApi(APIView):
    """No credentials are read: a stray Authorization header must not turn these into 401s."""

    permission_classes = [AllowAny]
    authentication_classes: list = []


class TokenObtainApi(_PublicApi):
    """Log in: email and password in, an access and a refresh token out."""

    throttle_classes = [LoginIpThrottle, LoginEmailThrottle]

    @extend_schema(request=TokenObtainSerializer, responses={200: TokenPairSerializer})
    def post(self, request: Request) -> Response:
        serializer = TokenObtainSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(asdict(token_obtain(**serializer.validated_data)))


class TokenRefreshApi(_PublicApi):
    """A new pair for a refresh token, which is then spent (rotation)."""

    @extend_schema(request=RefreshSerializer, responses={200: TokenPairSerializer})
    def post(self, request: Request) -> Response:
        serializer = RefreshSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(asdict(token_refresh(refresh=serializer.validated_data["refresh"])))


class LogoutApi(_PublicApi):
    """Revoke a refresh token."""

    @extend_schema(request=RefreshSerializer, responses={204: None})
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
