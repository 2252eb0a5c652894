import pytest
from rest_framework.test import APIClient


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def staff_client(django_user_model) -> APIClient:
    user = django_user_model.objects.create_user(
        username="staff@example.com", email="staff@example.com", password="x", is_staff=True
    )
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def customer_client(django_user_model) -> APIClient:
    user = django_user_model.objects.create_user(
        username="ann@example.com", email="ann@example.com", password="x"
    )
    client = APIClient()
    client.force_authenticate(user)
    return client
