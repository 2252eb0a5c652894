"""GraphQL reads at the gateway (/graphql/) against real services: auth, the caller's own
data only, and batching proven by counting the requests each service really served.

The count comes from each service's own /metrics (django-prometheus counts a request
by view before the view runs, so once the gateway has answered, every request it made
is counted): no mock between the gateway and the services.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter

import httpx
import pytest

from tests.harness import RunningService, ServiceLauncher, free_port

pytestmark = pytest.mark.system

PASSWORD = "correct horse battery"
_REQUESTS = re.compile(
    r"^django_http_requests_total_by_view_transport_method_total\{(?P<labels>[^}]*)\} (?P<n>\S+)$",
    re.MULTILINE,
)
_VIEW = re.compile(r'view="([^"]*)"')

MY_ORDERS = """
{
  me { email }
  orders {
    totalCount
    items { id status lines { productId quantity product { id sku name price } } }
  }
}
"""


@pytest.fixture(scope="module")
def shop(module_services: ServiceLauncher) -> dict[str, RunningService]:
    port = free_port()
    verifier = {"JWT_JWKS_URL": f"http://127.0.0.1:{port}/.well-known/jwks.json"}
    users = module_services.start("users", env=verifier)
    catalog = module_services.start("catalog", seed=True, env=verifier)
    orders = module_services.start("orders", env=verifier)
    gateway = module_services.start(
        "gateway",
        port=port,
        env={"CATALOG_URL": catalog.url, "USERS_URL": users.url, "ORDERS_URL": orders.url},
    )
    return {"gateway": gateway, "catalog": catalog, "users": users, "orders": orders}


def customer(gateway_url: str) -> tuple[dict[str, str], str]:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    httpx.post(f"{gateway_url}/api/users/register/", json={"email": email, "password": PASSWORD})
    token = httpx.post(
        f"{gateway_url}/api/auth/token/", json={"email": email, "password": PASSWORD}
    ).json()["access"]
    return {"Authorization": f"Bearer {token}"}, email


def graphql(gateway_url: str, query: str, headers: dict[str, str] | None = None) -> dict:
    response = httpx.post(f"{gateway_url}/graphql/", json={"query": query}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def served(service: RunningService) -> Counter[str]:
    """Requests the service has served so far, by view (its /metrics scrapes left out)."""
    counts: Counter[str] = Counter()
    for match in _REQUESTS.finditer(httpx.get(f"{service.url}/metrics").text):
        view = _VIEW.search(match["labels"])
        if view and view[1] != "prometheus-django-metrics":
            counts[view[1]] += int(float(match["n"]))
    return counts


def served_during(shop: dict[str, RunningService], action) -> tuple[object, dict[str, Counter]]:
    before = {name: served(shop[name]) for name in ("catalog", "users", "orders")}
    result = action()
    after = {name: served(shop[name]) for name in ("catalog", "users", "orders")}
    return result, {name: after[name] - before[name] for name in before}


def place(gateway_url: str, headers: dict[str, str], lines: list[tuple[int, int]]) -> str:
    body = {"lines": [{"product_id": p, "quantity": q} for p, q in lines]}
    placed = httpx.post(f"{gateway_url}/api/orders/", json=body, headers=headers)
    assert placed.status_code == 202, placed.text
    return placed.json()["id"]


def test_my_orders_with_every_line_and_product_cost_one_request_per_service(shop):
    gateway_url = shop["gateway"].url
    headers, email = customer(gateway_url)
    # 9 lines over 3 orders, 6 distinct products (some on several orders).
    placed = [
        place(gateway_url, headers, [(1, 1), (2, 2)]),
        place(gateway_url, headers, [(2, 1), (3, 1), (4, 3)]),
        place(gateway_url, headers, [(1, 2), (4, 1), (5, 1), (6, 1)]),
    ]

    answer, requests = served_during(shop, lambda: graphql(gateway_url, MY_ORDERS, headers))

    assert "errors" not in answer, answer
    data = answer["data"]
    assert data["me"]["email"] == email
    assert {order["id"] for order in data["orders"]["items"]} == set(placed)
    lines = [line for order in data["orders"]["items"] for line in order["lines"]]
    assert len(lines) == 9
    assert all(line["product"]["id"] == line["productId"] for line in lines)
    assert requests == {
        "catalog": Counter({"catalog:product-list": 1}),
        "users": Counter({"accounts:me": 1}),
        "orders": Counter({"orders:order-list": 1}),
    }


def test_products_named_anywhere_in_a_query_are_fetched_together(shop):
    gateway_url = shop["gateway"].url
    query = "{ a: product(id: 1) { sku } b: product(id: 2) { sku } c: product(id: 999999) { sku } }"

    answer, requests = served_during(shop, lambda: graphql(gateway_url, query))

    assert answer["data"]["a"]["sku"] != answer["data"]["b"]["sku"]
    assert answer["data"]["c"] is None  # no such product: null, not an error
    assert requests["catalog"] == Counter({"catalog:product-list": 1})


def test_anonymous_callers_read_the_catalog_but_not_me_or_orders(shop):
    gateway_url = shop["gateway"].url

    answer = graphql(
        gateway_url,
        "{ products(pageSize: 2) { totalCount items { sku } } me { id } orders { totalCount } }",
    )

    assert len(answer["data"]["products"]["items"]) == 2
    assert answer["data"]["me"] is None
    assert answer["data"]["orders"] is None
    refused = {tuple(error["path"]): error["extensions"] for error in answer["errors"]}
    assert refused[("me",)]["code"] == refused[("orders",)]["code"] == "not_authenticated"
    assert refused[("me",)]["status"] == 401


def test_a_customer_never_sees_another_customers_orders_or_profile(shop):
    gateway_url = shop["gateway"].url
    ann, _ = customer(gateway_url)
    bob, bob_email = customer(gateway_url)
    anns_order = place(gateway_url, ann, [(1, 1)])

    as_bob = graphql(gateway_url, MY_ORDERS, bob)

    assert as_bob["data"]["me"]["email"] == bob_email
    assert as_bob["data"]["orders"]["totalCount"] == 0
    assert anns_order not in str(as_bob)


def test_a_bad_token_is_refused_for_the_whole_request(shop):
    response = httpx.post(
        f"{shop['gateway'].url}/graphql/",
        json={"query": "{ products { totalCount } }"},
        headers={"Authorization": "Bearer not-a-token"},
    )

    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "authentication_failed"


def test_upstream_refusals_come_back_with_their_problem_code(shop):
    answer = graphql(shop["gateway"].url, "{ products(page: 999) { totalCount } }")

    assert answer["data"]["products"] is None
    assert answer["errors"][0]["extensions"]["status"] == 404  # catalog: a page past the end


def test_graphiql_is_served_with_its_assets_from_the_gateway(shop):
    gateway_url = shop["gateway"].url

    page = httpx.get(f"{gateway_url}/graphql/", headers={"Accept": "text/html"})
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)

    assert page.status_code == 200
    assert assets
    assert all(asset.startswith("/static/") for asset in assets)
    assert all(httpx.get(f"{gateway_url}{asset}").status_code == 200 for asset in assets)
