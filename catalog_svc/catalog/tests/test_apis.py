from decimal import Decimal
from uuid import uuid4

import pytest

from catalog.models import Product, Stock
from catalog.services import LineRequest, stock_reserve
from catalog.tests.factories import CategoryFactory, ProductFactory
from common.testing.tokens import generate_key_pair

pytestmark = pytest.mark.django_db

PRODUCTS = "/api/catalog/products/"


def detail(product_id: int) -> str:
    return f"{PRODUCTS}{product_id}/"


def skus(response) -> list[str]:
    return [item["sku"] for item in response.json()["results"]]


# --- reading --------------------------------------------------------------------------------


def test_product_detail_has_the_documented_fields(api_client):
    product = ProductFactory(price=Decimal("12.50"), on_hand=7)
    stock_reserve(order_id=uuid4(), lines=[LineRequest(product.pk, 2)])

    body = api_client.get(detail(product.pk)).json()

    assert set(body) >= {
        "id",
        "sku",
        "name",
        "slug",
        "description",
        "price",
        "currency",
        "category",
        "stock_available",
        "sold",
        "created_at",
        "updated_at",
    }
    assert body["price"] == "12.50"
    assert body["currency"] == "EUR"
    assert body["stock_available"] == 5


def test_product_list_is_paginated(api_client):
    ProductFactory.create_batch(25)

    first = api_client.get(PRODUCTS).json()
    second = api_client.get(PRODUCTS, {"page": 2}).json()

    assert first["count"] == 25
    assert len(first["results"]) == 20
    assert first["previous"] is None
    assert "page=2" in first["next"]
    assert len(second["results"]) == 5
    assert second["next"] is None


def test_page_size_is_honoured_and_bounded(api_client):
    ProductFactory.create_batch(3)
    assert len(api_client.get(PRODUCTS, {"page_size": 2}).json()["results"]) == 2
    ProductFactory.create_batch(110)
    assert len(api_client.get(PRODUCTS, {"page_size": 1000}).json()["results"]) == 100


def test_a_page_past_the_end_is_404_problem(api_client):
    response = api_client.get(PRODUCTS, {"page": 9})
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


def test_filter_by_category_includes_subcategories(api_client):
    electronics = CategoryFactory(slug="electronics")
    phones = CategoryFactory(slug="phones", parent=electronics)
    ProductFactory(sku="TV", category=electronics)
    ProductFactory(sku="PHONE", category=phones)
    ProductFactory(sku="BOOK")

    by_slug = api_client.get(PRODUCTS, {"category": "electronics"})
    by_id = api_client.get(PRODUCTS, {"category": phones.pk})

    assert sorted(skus(by_slug)) == ["PHONE", "TV"]
    assert skus(by_id) == ["PHONE"]


def test_filter_by_unknown_category_finds_nothing(api_client):
    ProductFactory()
    assert api_client.get(PRODUCTS, {"category": "no-such"}).json()["count"] == 0


def test_filter_by_price_range(api_client):
    for sku, price in [("CHEAP", "5.00"), ("MID", "50.00"), ("DEAR", "500.00")]:
        ProductFactory(sku=sku, price=Decimal(price))

    response = api_client.get(PRODUCTS, {"min_price": "10", "max_price": "100"})

    assert skus(response) == ["MID"]


def test_filter_in_stock(api_client):
    ProductFactory(sku="HAS", on_hand=3)
    ProductFactory(sku="NONE", on_hand=0)
    held = ProductFactory(sku="HELD", on_hand=1)
    stock_reserve(order_id=uuid4(), lines=[LineRequest(held.pk, 1)])

    assert skus(api_client.get(PRODUCTS, {"in_stock": "true"})) == ["HAS"]
    assert sorted(skus(api_client.get(PRODUCTS, {"in_stock": "false"}))) == ["HELD", "NONE"]


def test_search_matches_name_or_sku_case_insensitively(api_client):
    ProductFactory(sku="AB-1", name="Trail running shoes")
    ProductFactory(sku="SHOE-9", name="Sandals")
    ProductFactory(sku="ZZ", name="Yoga mat")

    assert sorted(skus(api_client.get(PRODUCTS, {"search": "shoe"}))) == ["AB-1", "SHOE-9"]


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        ("price", ["A", "B", "C"]),
        ("-price", ["C", "B", "A"]),
        ("name", ["C", "A", "B"]),
        ("-sold", ["B", "C", "A"]),
        ("created_at", ["A", "B", "C"]),
        ("", ["C", "A", "B"]),  # empty, as a form sends it: the default order, by name
    ],
)
def test_ordering(api_client, ordering, expected):
    ProductFactory(sku="A", name="Beta", price=Decimal("1.00"), sold_count=0)
    ProductFactory(sku="B", name="Gamma", price=Decimal("2.00"), sold_count=9)
    ProductFactory(sku="C", name="Alpha", price=Decimal("3.00"), sold_count=4)

    assert skus(api_client.get(PRODUCTS, {"ordering": ordering})) == expected


def test_filter_by_ids_answers_many_products_in_one_request(api_client):
    wanted = [ProductFactory(sku=sku) for sku in ("ONE", "TWO", "THREE")]
    ProductFactory(sku="OTHER")
    retired = ProductFactory(sku="RETIRED", active=False)

    ids = ",".join(str(p.pk) for p in [*wanted, retired]) + ",999999"
    response = api_client.get(PRODUCTS, {"ids": ids})

    assert sorted(skus(response)) == ["ONE", "THREE", "TWO"]  # unknown and retired: absent


def test_filter_by_ids_refuses_more_than_a_page_of_ids_and_non_ids(api_client):
    too_many = api_client.get(PRODUCTS, {"ids": ",".join(str(n) for n in range(1, 102))})
    not_ids = api_client.get(PRODUCTS, {"ids": "1,two"})
    negative = api_client.get(PRODUCTS, {"ids": "-1"})

    assert too_many.status_code == not_ids.status_code == negative.status_code == 400
    assert set(too_many.json()["errors"]) == {"ids"}


def test_an_empty_ids_filter_is_no_filter(api_client):
    ProductFactory(sku="ANY")
    assert skus(api_client.get(PRODUCTS, {"ids": ""})) == ["ANY"]


def test_a_malformed_filter_gets_400_with_field_errors(api_client):
    response = api_client.get(PRODUCTS, {"min_price": "cheap", "in_stock": "maybe"})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert set(body["errors"]) == {"min_price", "in_stock"}


def test_unknown_product_is_404_problem(api_client):
    response = api_client.get(detail(424242))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "product_not_found"
    assert body["status"] == 404
    assert {"type", "title", "detail"} <= set(body)


def test_retired_products_are_hidden_from_the_public_but_not_from_staff(api_client, staff_api):
    retired = ProductFactory(active=False)
    assert api_client.get(detail(retired.pk)).status_code == 404
    assert api_client.get(PRODUCTS).json()["count"] == 0
    assert staff_api.get(detail(retired.pk)).status_code == 200
    assert staff_api.get(PRODUCTS).json()["count"] == 1


def test_categories_are_listed(api_client):
    parent = CategoryFactory(name="Electronics")
    CategoryFactory(name="Phones", parent=parent)

    body = api_client.get("/api/catalog/categories/").json()

    assert [(c["name"], c["parent"]) for c in body["results"]] == [
        ("Electronics", None),
        ("Phones", parent.pk),
    ]


# --- conditional GET --------------------------------------------------------------------------


def test_detail_carries_an_etag_and_answers_304_when_it_matches(api_client):
    product = ProductFactory()
    etag = api_client.get(detail(product.pk))["ETag"]

    response = api_client.get(detail(product.pk), HTTP_IF_NONE_MATCH=etag)

    assert etag.startswith('"')
    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag


def test_weak_and_listed_etags_match_too(api_client):
    product = ProductFactory()
    etag = api_client.get(detail(product.pk))["ETag"]

    response = api_client.get(detail(product.pk), HTTP_IF_NONE_MATCH=f'"other", W/{etag}')

    assert response.status_code == 304


def test_a_stale_etag_gets_the_full_product(api_client, staff_api):
    product = ProductFactory(on_hand=5)
    etag = api_client.get(detail(product.pk))["ETag"]
    staff_api.post(f"{detail(product.pk)}stock/", {"delta": 1})

    response = api_client.get(detail(product.pk), HTTP_IF_NONE_MATCH=etag)

    assert response.status_code == 200
    assert response["ETag"] != etag
    assert response.json()["stock_available"] == 6


# --- staff writes -----------------------------------------------------------------------------


def new_product(in_category, **overrides):
    return {
        "sku": "NEW-1",
        "name": "New thing",
        "price": "19.99",
        "category": in_category.pk,
        **overrides,
    }


def test_staff_create_a_product_with_initial_stock(staff_api):
    category = CategoryFactory()

    response = staff_api.post(PRODUCTS, new_product(category, on_hand=12))

    assert response.status_code == 201
    body = response.json()
    assert response["Location"] == detail(body["id"])
    assert (body["sku"], body["price"], body["stock_available"]) == ("NEW-1", "19.99", 12)
    assert body["slug"] == "new-thing-new-1"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"price": "-5.00"}, "price"),
        ({"price": "0.00"}, "price"),
        ({"price": "abc"}, "price"),
        ({"on_hand": -1}, "on_hand"),
        ({"category": 999999}, "category"),
        ({"sku": ""}, "sku"),
    ],
)
def test_bad_product_input_gets_400_naming_the_field(staff_api, overrides, field):
    response = staff_api.post(PRODUCTS, new_product(CategoryFactory(), **overrides))

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert field in response.json()["errors"]
    assert not Product.objects.exists()


def test_a_duplicate_sku_is_refused(staff_api):
    ProductFactory(sku="NEW-1")
    response = staff_api.post(PRODUCTS, new_product(CategoryFactory()))
    assert response.status_code == 400
    assert "sku" in response.json()["errors"]


def test_malformed_json_gets_400_problem(staff_api):
    response = staff_api.post(PRODUCTS, data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"


def test_staff_update_a_product(staff_api):
    product = ProductFactory(price=Decimal("10.00"))

    response = staff_api.patch(detail(product.pk), {"price": "12.00", "name": "Renamed"})

    assert response.status_code == 200
    assert (response.json()["price"], response.json()["name"]) == ("12.00", "Renamed")


def test_update_refuses_a_negative_price(staff_api):
    product = ProductFactory(price=Decimal("10.00"))
    response = staff_api.patch(detail(product.pk), {"price": "-1"})
    assert response.status_code == 400
    product.refresh_from_db()
    assert product.price == Decimal("10.00")


def test_staff_delete_retires_the_product(staff_api, api_client):
    product = ProductFactory()

    assert staff_api.delete(detail(product.pk)).status_code == 204

    assert api_client.get(detail(product.pk)).status_code == 404
    product.refresh_from_db()
    assert product.active is False


def test_staff_receive_and_write_off_stock(staff_api):
    product = ProductFactory(on_hand=5)

    received = staff_api.post(f"{detail(product.pk)}stock/", {"delta": 10})
    written_off = staff_api.post(f"{detail(product.pk)}stock/", {"delta": -3})

    assert received.status_code == 200
    assert received.json() == {
        "product_id": product.pk,
        "on_hand": 15,
        "reserved": 0,
        "available": 15,
    }
    assert written_off.json()["on_hand"] == 12


def test_stock_cannot_go_below_what_is_on_the_shelf(staff_api):
    product = ProductFactory(on_hand=5)
    stock_reserve(order_id=uuid4(), lines=[LineRequest(product.pk, 4)])

    response = staff_api.post(f"{detail(product.pk)}stock/", {"delta": -2})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_stock_adjustment"
    assert response.json()["errors"] == {"delta": ["Must be at least -1."]}
    assert Stock.objects.get(pk=product.pk).on_hand == 1


@pytest.mark.parametrize("delta", [0, "many", None])
def test_a_bad_stock_delta_gets_400(staff_api, delta):
    product = ProductFactory()
    body = {} if delta is None else {"delta": delta}
    response = staff_api.post(f"{detail(product.pk)}stock/", body)
    assert response.status_code == 400
    assert "delta" in response.json()["errors"]


@pytest.mark.parametrize(
    ("method", "path_of", "body"),
    [
        ("post", lambda p: PRODUCTS, {"sku": "X"}),
        ("patch", lambda p: detail(p.pk), {"name": "X"}),
        ("delete", lambda p: detail(p.pk), None),
        ("post", lambda p: f"{detail(p.pk)}stock/", {"delta": 1}),
        ("post", lambda p: "/api/catalog/categories/", {"name": "X"}),
    ],
)
def test_customers_cannot_write(customer_api, method, path_of, body):
    product = ProductFactory(name="Unchanged", on_hand=3)

    response = getattr(customer_api, method)(path_of(product), body)

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    product.refresh_from_db()
    assert (product.name, product.active, Stock.objects.get(pk=product.pk).on_hand) == (
        "Unchanged",
        True,
        3,
    )


def test_anonymous_clients_cannot_write(api_client):
    response = api_client.post(PRODUCTS, new_product(CategoryFactory()))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["code"] == "not_authenticated"
    assert not Product.objects.exists()


def test_a_staff_token_signed_with_another_key_cannot_write(api_client, make_token, tmp_path):
    forged_key = generate_key_pair(tmp_path).private_pem
    token = make_token(is_staff=True, private_pem=forged_key)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    response = api_client.post(PRODUCTS, new_product(CategoryFactory()))

    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert not Product.objects.exists()


def test_staff_create_a_category(staff_api):
    response = staff_api.post("/api/catalog/categories/", {"name": "Garden & Patio"})
    assert response.status_code == 201
    assert response.json()["slug"] == "garden-patio"


def test_the_schema_declares_bearer_auth_so_swagger_ui_can_send_a_token(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    create = schema["paths"]["/api/catalog/products/"]["post"]
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert {"bearerAuth": []} in create["security"]
