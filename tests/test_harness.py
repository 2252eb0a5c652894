"""The harness itself: a real catalog process on its own database, read over HTTP."""

import httpx
import pytest

from tests.harness import database_create, database_drop

pytestmark = pytest.mark.system


def test_catalog_serves_a_seeded_product_over_http(services):
    catalog = services.start("catalog", seed=True)

    listing = httpx.get(f"{catalog.url}/api/catalog/products/", params={"search": "espresso"})
    product = listing.json()["results"][0]
    detail = httpx.get(f"{catalog.url}/api/catalog/products/{product['id']}/")
    not_modified = httpx.get(
        f"{catalog.url}/api/catalog/products/{product['id']}/",
        headers={"If-None-Match": detail.headers["ETag"]},
    )

    assert listing.status_code == 200
    assert product["name"] == "Espresso machine, 15 bar"
    assert detail.json()["price"] == "329.00"
    assert detail.json()["stock_available"] == 12
    assert not_modified.status_code == 304
    assert detail.headers["X-Request-ID"]


def test_each_service_gets_its_own_database_and_stops_cleanly(services):
    first = services.start("catalog", seed=True)
    second = services.start("catalog")

    assert first.database_name != second.database_name
    assert httpx.get(f"{first.url}/api/catalog/products/").json()["count"] >= 50
    assert httpx.get(f"{second.url}/api/catalog/products/").json()["count"] == 0

    second.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{second.url}/health/", timeout=2)


@pytest.mark.parametrize("name", ["users", "orders", "gateway"])
def test_every_skeleton_service_boots_and_is_ready(services, name):
    service = services.start(name)
    assert httpx.get(f"{service.url}/health/").json()["service"] == name


def test_databases_are_created_and_dropped():
    url = database_create("it_probe_harness")
    try:
        assert url.endswith("/it_probe_harness")
    finally:
        database_drop("it_probe_harness")
