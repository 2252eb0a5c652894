from uuid import uuid4

import pytest
from django.urls import reverse

from catalog.models import Stock
from catalog.services import LineRequest, stock_reserve
from catalog.tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(admin_client):
    product = ProductFactory(on_hand=10)
    stock_reserve(order_id=uuid4(), lines=[LineRequest(product.pk, 4)])
    return admin_client, product


@pytest.mark.parametrize("model", ["category", "product", "stock", "stockreservation"])
def test_every_admin_list_and_search_works(staff, model):
    client, _ = staff
    url = reverse(f"admin:catalog_{model}_changelist")
    assert client.get(url).status_code == 200
    assert client.get(url, {"q": "x"}).status_code == 200


def test_product_page_shows_its_stock_inline(staff):
    client, product = staff
    response = client.get(reverse("admin:catalog_product_change", args=[product.pk]))
    assert response.status_code == 200
    assert b"available" in response.content


def test_stock_is_adjusted_by_a_delta_in_the_admin(staff):
    client, product = staff
    url = reverse("admin:catalog_stock_change", args=[product.pk])

    response = client.post(url, {"delta": "5"})

    assert response.status_code == 302
    stock = Stock.objects.get(pk=product.pk)
    assert (stock.on_hand, stock.reserved) == (11, 0)  # 10 - 4 taken by an order + 5


def test_the_admin_refuses_writing_off_units_orders_took(staff):
    client, product = staff
    url = reverse("admin:catalog_stock_change", args=[product.pk])

    response = client.post(url, {"delta": "-8"})

    assert response.status_code == 200  # the form again, with its error
    assert b"only 6 units are on the shelf" in response.content
    assert Stock.objects.get(pk=product.pk).on_hand == 6
