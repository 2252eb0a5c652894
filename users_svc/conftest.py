import pytest
from rest_framework.test import APIClient

from common.testing.grpc import grpc_serve  # noqa: F401 - the service's gRPC server, in-process
from common.testing.signing import signing_keys  # noqa: F401 - the session's message signing keys
from common.testing.tokens import *  # noqa: F403 - make_token, staff_api, service_api...
from common.testing.tracing import spans  # noqa: F401 - in-memory spans of the session's provider


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Unit tests need hashing, not its deliberate slowness (the system tests keep it)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def as_user(make_token):
    """A client signed in (by token) as the given user."""

    def client_for(user) -> APIClient:
        client = APIClient()
        token = make_token(sub=user.pk, email=user.email, is_staff=user.is_staff)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    return client_for
