"""The catalog's API by version (common.versioning): today's answers are version 1."""

import pytest

from catalog.tests.factories import ProductFactory

pytestmark = pytest.mark.django_db
PRODUCTS = "/api/catalog/products/"


def test_version_1_gets_the_same_answer_as_no_version(api_client):
    ProductFactory()

    unversioned = api_client.get(PRODUCTS)
    versioned = api_client.get(PRODUCTS, HTTP_ACCEPT="application/json; version=1")

    assert versioned.status_code == 200
    assert versioned.json() == unversioned.json()
    assert versioned.json()["count"] == 1


def test_version_2_is_refused_with_406_problem_details(api_client):
    response = api_client.get(PRODUCTS, HTTP_ACCEPT="application/json; version=2")

    assert response.status_code == 406
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "unknown_api_version"
    assert "'2'" in response.json()["detail"]


def test_a_write_with_an_unknown_version_changes_nothing(staff_api):
    product = ProductFactory()

    response = staff_api.patch(
        f"{PRODUCTS}{product.pk}/", {"price": "99.00"}, HTTP_ACCEPT="application/json; version=2"
    )

    assert response.status_code == 406
    product.refresh_from_db()
    assert str(product.price) == "10.00"
