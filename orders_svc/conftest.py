import pytest
from rest_framework.test import APIClient

from common.testing.grpc import grpc_serve  # noqa: F401 - the service's gRPC server, in-process
from common.testing.signing import signing_keys  # noqa: F401 - the session's message signing keys
from common.testing.tokens import *  # noqa: F403 - make_token, customer_api (sub 1001), staff_api
from common.testing.tracing import spans  # noqa: F401 - in-memory spans of the session's provider


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def as_customer(make_token):
    def client_for(customer_id: int) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(sub=customer_id)}")
        return client

    return client_for
