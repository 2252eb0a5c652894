import pytest
from rest_framework.test import APIClient

from common.testing.tokens import *  # noqa: F403 - token fixtures: make_token, staff_api, customer_api...


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()
