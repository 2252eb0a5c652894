"""The orders API by version (common.versioning): today's answers are version 1."""

import pytest

from orders.models import OrderEvent

pytestmark = pytest.mark.django_db
ORDERS = "/api/orders/"
BODY = {"lines": [{"product_id": 3, "quantity": 2}]}


def test_version_1_places_an_order_as_no_version_does(as_customer):
    response = as_customer(1001).post(ORDERS, BODY, HTTP_ACCEPT="application/json; version=1")

    assert response.status_code == 202
    assert response.json()["status"] == "PENDING"


def test_version_2_is_refused_with_406_and_places_nothing(as_customer):
    response = as_customer(1001).post(ORDERS, BODY, HTTP_ACCEPT="application/json; version=2")

    assert response.status_code == 406
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "unknown_api_version"
    assert not OrderEvent.objects.exists()
