"""gRPC inside, with real processes: each of catalog, users and orders serves
`manage.py grpc_serve` next to its HTTP server, and the gateway calls them over gRPC for
logins, customer summaries and the order composition's products (one batched call);
the status page's saga list (orders) is tests/test_status_page.py's.
"""

from __future__ import annotations

import os
import re
import signal
import uuid
from dataclasses import dataclass

import grpc
import httpx
import pytest
from eshop_contracts.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.harness import RunningService, ServiceLauncher, free_port

pytestmark = pytest.mark.system

PASSWORD = "correct horse battery"
GET_PRODUCTS = "/catalog.v1.CatalogService/GetProducts"


@dataclass
class Shop:
    gateway: RunningService
    users: RunningService
    catalog: RunningService
    orders: RunningService | None = None


def shop_start(launcher: ServiceLauncher, *, orders: bool, **gateway_env: str) -> Shop:
    port = free_port()
    verifier = {"JWT_JWKS_URL": f"http://127.0.0.1:{port}/.well-known/jwks.json"}
    users = launcher.start("users", env=verifier)
    catalog = launcher.start("catalog", seed=True, env=verifier)
    orders_service = launcher.start("orders", env=verifier) if orders else None
    gateway = launcher.start(
        "gateway",
        port=port,
        env={
            "CATALOG_URL": catalog.url,
            "USERS_URL": users.url,
            "ORDERS_URL": orders_service.url if orders_service else "http://127.0.0.1:1",
            "LOGIN_RATE_PER_IP": "1000/min",
            **gateway_env,
        },
    )
    return Shop(gateway=gateway, users=users, catalog=catalog, orders=orders_service)


@pytest.fixture(scope="module")
def shop(module_services: ServiceLauncher) -> Shop:
    return shop_start(module_services, orders=True)


def customer(gateway_url: str) -> tuple[dict[str, str], str]:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    registered = httpx.post(
        f"{gateway_url}/api/users/register/", json={"email": email, "password": PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    credentials = {"email": email, "password": PASSWORD}
    login = httpx.post(f"{gateway_url}/api/auth/token/", json=credentials)
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access']}"}, str(registered.json()["id"])


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from a /metrics page, 0 when it is not there yet."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


def test_the_gateway_logs_in_through_users_grpc_and_the_rest_internals_are_gone(shop):
    headers, user_id = customer(shop.gateway.url)
    service_token = shop.gateway.manage("issue_service_token", "tester").stdout.strip()

    me = httpx.get(f"{shop.gateway.url}/api/users/me/", headers=headers)
    old_verify = httpx.post(
        f"{shop.users.url}/internal/credentials/verify/",
        json={"email": "a@example.com", "password": PASSWORD},
        headers={"Authorization": f"Bearer {service_token}"},
    )
    metrics = httpx.get(f"{shop.gateway.url}/metrics").text

    assert me.status_code == 200
    assert str(me.json()["id"]) == user_id
    assert old_verify.status_code == 404
    checks = "/users.v1.UsersService/CheckCredentials"
    assert metric(metrics, "gateway_grpc_client_calls_total", method=checks, code="OK") >= 1


def test_the_composition_gets_every_product_in_one_grpc_call(shop):
    headers, user_id = customer(shop.gateway.url)
    body = {"lines": [{"product_id": 1, "quantity": 1}, {"product_id": 2, "quantity": 3}]}
    order = httpx.post(f"{shop.gateway.url}/api/orders/", json=body, headers=headers)
    assert order.status_code == 202, order.text
    before = httpx.get(f"{shop.gateway.url}/metrics").text

    details = httpx.get(
        f"{shop.gateway.url}/api/orders/{order.json()['id']}/details/", headers=headers
    )

    after = httpx.get(f"{shop.gateway.url}/metrics").text
    assert details.status_code == 200, details.text
    answer = details.json()
    assert answer["warnings"] == []
    for line in answer["lines"]:
        rest = httpx.get(f"{shop.catalog.url}/api/catalog/products/{line['product_id']}/").json()
        assert line["product"] == rest  # the same product the public API shows
    assert str(answer["customer"]["id"]) == user_id
    assert answer["customer"]["is_active"] is True
    calls = [
        metric(text, "gateway_grpc_client_calls_total", method=GET_PRODUCTS, code="OK")
        for text in (before, after)
    ]
    assert calls[1] - calls[0] == 1


def _stub(address: str, stub_class):
    channel = grpc.insecure_channel(address)
    return channel, stub_class(channel)


@pytest.mark.parametrize(
    ("service", "name"),
    [
        ("users", "users.v1.UsersService"),
        ("catalog", "catalog.v1.CatalogService"),
        ("orders", "orders.v1.OrdersService"),
    ],
)
def test_health_answers_serving_and_reflection_lists_the_services(shop, service, name):
    address = getattr(shop, service).grpc_address
    channel, health = _stub(address, health_pb2_grpc.HealthStub)
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    with channel:
        status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
        answers = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for answer in answers for s in answer.list_services_response.service}

    assert status == health_pb2.HealthCheckResponse.SERVING
    assert {name, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token"])
def test_a_call_without_a_good_service_token_is_unauthenticated(shop, authorization):
    metadata = (("authorization", authorization),) if authorization else ()
    channel, catalog = _stub(shop.catalog.grpc_address, catalog_pb2_grpc.CatalogServiceStub)
    with channel, pytest.raises(grpc.RpcError) as refused:
        catalog.GetProducts(catalog_pb2.GetProductsRequest(ids=[1]), metadata=metadata, timeout=5)

    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_a_call_with_the_gateways_service_token_is_served(shop):
    token = shop.gateway.manage("issue_service_token", "tester").stdout.strip()
    channel, catalog = _stub(shop.catalog.grpc_address, catalog_pb2_grpc.CatalogServiceStub)
    with channel:
        answer = catalog.GetProducts(
            catalog_pb2.GetProductsRequest(ids=[1, 2, 999_999]),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=5,
        )

    assert sorted(product.id for product in answer.products) == [1, 2]
    assert list(answer.missing_ids) == [999_999]


def test_a_killed_users_grpc_server_opens_the_breaker_and_logins_get_a_503(services):
    shop = shop_start(services, orders=False, GATEWAY_BREAKER_FAIL_MAX="2")
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    registered = httpx.post(
        f"{shop.users.url}/api/users/register/", json={"email": email, "password": PASSWORD}
    )
    assert registered.status_code == 201
    credentials = {"email": email, "password": PASSWORD}
    assert httpx.post(f"{shop.gateway.url}/api/auth/token/", json=credentials).status_code == 200

    grpc_server = shop.users.extra["grpc"]
    os.killpg(grpc_server.pid, signal.SIGKILL)
    grpc_server.wait(timeout=10)
    answers = [
        httpx.post(f"{shop.gateway.url}/api/auth/token/", json=credentials, timeout=10)
        for _ in range(3)
    ]

    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["code"] == "upstream_unavailable"
    assert "could not be reached" in answers[0].json()["detail"]
    assert "circuit is open" in answers[-1].json()["detail"]
    metrics = httpx.get(f"{shop.gateway.url}/metrics").text
    checks = "/users.v1.UsersService/CheckCredentials"
    assert metric(metrics, "gateway_grpc_client_calls_total", method=checks, code="BREAKER_OPEN")
    # users' HTTP side is up all along: only its gRPC server is gone
    assert httpx.get(f"{shop.users.url}/ready/").status_code == 200
