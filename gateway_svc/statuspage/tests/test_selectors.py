import json
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
import httpx
import pytest
from eshop_contracts.orders.v1 import orders_pb2, orders_pb2_grpc
from rpc.client import targets

from common.auth import TokenUser, token_decode
from common.discovery.static import StaticDiscovery
from identity.tokens import service_token
from statuspage.figures import metrics_parse
from statuspage.selectors import (
    DOWN,
    NO_INSTANCE,
    NOT_READY,
    READY,
    SAGA_LIST_LIMIT,
    Probe,
    snapshot_build,
    status_snapshot,
)
from statuspage.tests.metrics_samples import CATALOG, GATEWAY, ORDERS

CATALOG_A, CATALOG_B = "http://catalog-a:8001", "http://catalog-b:8001"
ORDERS_A = "http://orders-a:8003"
ORDER_ID = "0b1c6a52-8f5e-4c43-9d37-4a5f0f0d9d11"
SAGA = {"order_id": ORDER_ID, "kind": "place", "state": "reserving_credit", "waiting": ["credit"]}


@dataclass
class OrdersStandIn(orders_pb2_grpc.OrdersServiceServicer):
    """orders.v1 on loopback: answers one open saga, or fails with ``failure``; records calls."""

    failure: grpc.StatusCode | None = None
    calls: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    def ListUnfinishedSagas(self, request, context):
        self.calls.append((request.limit, dict(context.invocation_metadata())))
        if self.failure is not None:
            context.abort(self.failure, "told to fail")
        saga = orders_pb2.Saga(**SAGA, attempts=1, started_at="2026-12-06T08:00:00Z")
        return orders_pb2.ListUnfinishedSagasResponse(limit=request.limit, sagas=[saga])


@pytest.fixture(autouse=True)
def orders_grpc(settings, gateway_keys) -> Iterator[OrdersStandIn]:
    servicer = OrdersStandIn()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    orders_pb2_grpc.add_OrdersServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    settings.GATEWAY_GRPC = {
        **settings.GATEWAY_GRPC,
        "TARGETS": {**settings.GATEWAY_GRPC["TARGETS"], "orders": f"127.0.0.1:{port}"},
        "DEADLINE_SECONDS": 2.0,
        "RETRIES": 0,
    }
    settings.GATEWAY = {**settings.GATEWAY, "REDIS_URL": ""}
    targets.reset()
    service_token.clear()
    yield servicer
    server.stop(None).wait()
    targets.reset()


def discovery(**urls: list[str]) -> StaticDiscovery:
    return StaticDiscovery(urls=urls)


def transport(*, down: set[str] = frozenset(), not_ready: set[str] = frozenset()):
    """Instances answering as the services do; those in ``down`` refuse connections."""

    def handle(request: httpx.Request) -> httpx.Response:
        base = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        if base in down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if request.url.path == "/ready/":
            if base in not_ready:
                return httpx.Response(503, json={"Database": "OK", "RabbitMQ": "unavailable"})
            return httpx.Response(200, json={"Database": "OK", "RabbitMQ": "OK"})
        if request.url.path == "/metrics":
            return httpx.Response(200, text=ORDERS if "orders" in base else CATALOG)
        return httpx.Response(404)

    return httpx.MockTransport(handle)


def snapshot(found: StaticDiscovery, mock: httpx.MockTransport, runtime=None) -> dict:
    with httpx.Client(transport=mock) as client:
        return status_snapshot(
            services=["catalog", "orders"],
            discovery=found,
            runtime=runtime,
            local_metrics=lambda: GATEWAY,
            client=client,
        )


def service(data: dict, name: str) -> dict:
    return next(row for row in data["services"] if row["name"] == name)


def test_every_instance_of_every_service_is_shown_with_its_readiness():
    data = snapshot(discovery(catalog=[CATALOG_A, CATALOG_B], orders=[ORDERS_A]), transport())

    assert [row["name"] for row in data["services"]] == ["gateway", "catalog", "orders"]
    assert [i["ready"] for i in service(data, "catalog")["instances"]] == [READY, READY]
    assert service(data, "catalog")["state"] == READY


def test_an_instance_that_does_not_answer_is_down_with_the_error():
    data = snapshot(
        discovery(catalog=[CATALOG_A, CATALOG_B], orders=[ORDERS_A]),
        transport(down={CATALOG_B}),
    )

    catalog = service(data, "catalog")
    assert catalog["state"] == "DEGRADED"
    assert catalog["instances"][1]["ready"] == DOWN
    assert "Connection refused" in catalog["instances"][1]["detail"]


def test_a_service_whose_every_instance_is_down_is_down_and_has_no_figures():
    found = discovery(catalog=[CATALOG_A], orders=[ORDERS_A])
    data = snapshot(found, transport(down={CATALOG_A}))

    catalog = service(data, "catalog")
    assert (catalog["state"], catalog["figures"]) == (DOWN, {})
    assert f"catalog {found.instances('catalog')[0].id} is DOWN" in data["problems"]


def test_a_not_ready_instance_names_the_failing_check():
    data = snapshot(
        discovery(catalog=[CATALOG_A], orders=[ORDERS_A]), transport(not_ready={CATALOG_A})
    )

    instance = service(data, "catalog")["instances"][0]
    assert (instance["ready"], instance["detail"]) == (NOT_READY, "RabbitMQ: unavailable")


def test_a_service_with_no_instance_registered_says_so():
    data = snapshot(discovery(catalog=[], orders=[ORDERS_A]), transport())

    assert service(data, "catalog")["state"] == NO_INSTANCE


def test_the_saga_list_is_read_over_grpc_with_the_service_token_and_links_each_orders_history(
    orders_grpc,
):
    data = snapshot(discovery(catalog=[CATALOG_A], orders=[ORDERS_A]), transport())

    [(limit, metadata)] = orders_grpc.calls
    scheme, token = metadata["authorization"].split()
    assert (limit, scheme) == (SAGA_LIST_LIMIT, "Bearer")
    assert TokenUser.from_claims(token_decode(token)).is_service
    [saga] = data["sagas"]["list"]
    assert (saga["order_id"], saga["waiting"], saga["attempts"]) == (ORDER_ID, ["credit"], 1)
    assert saga["history_url"] == f"{ORDERS_A}/admin/orders/orderevent/?order_id={ORDER_ID}"
    assert saga["deadline"] is None  # none set: null, as the REST endpoint wrote it
    assert data["sagas"]["list_error"] == ""


def test_with_orders_down_the_saga_list_is_unavailable_and_nothing_is_asked_of_it(orders_grpc):
    data = snapshot(discovery(catalog=[CATALOG_A], orders=[ORDERS_A]), transport(down={ORDERS_A}))

    assert data["sagas"]["list"] == []
    assert data["sagas"]["list_error"] == "no orders instance is ready"
    assert (data["sagas"]["counts"], data["orders"]) == (None, None)
    assert orders_grpc.calls == []


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (grpc.StatusCode.UNAVAILABLE, "could not be reached (UNAVAILABLE)"),
        (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED: told to fail"),
    ],
)
def test_a_failing_saga_list_is_the_error_text_and_the_rest_of_the_page_stands(
    orders_grpc, failure, error
):
    orders_grpc.failure = failure

    data = snapshot(discovery(catalog=[CATALOG_A], orders=[ORDERS_A]), transport())

    assert data["sagas"]["list"] == []
    assert error in data["sagas"]["list_error"]
    assert service(data, "orders")["state"] == READY
    assert data["sagas"]["counts"]["needing_attention"] == 1  # from orders' /metrics


def test_saga_and_order_figures_come_from_orders_metrics():
    data = snapshot(discovery(catalog=[CATALOG_A], orders=[ORDERS_A]), transport())

    assert data["sagas"]["counts"]["needing_attention"] == 1
    assert data["orders"]["per_minute"]["approved"] == 12.0


def test_breakers_and_bulkheads_come_from_the_proxys_runtime():
    runtime = {
        "discovery": "static",
        "upstreams": {
            "catalog": {
                "bulkhead": {"in_flight": 3, "limit": 100},
                "instances": [
                    {
                        "id": "catalog-catalog-a-8001",
                        "url": CATALOG_A,
                        "breaker": "open",
                        "retry_after": 4.2,
                    }
                ],
            }
        },
    }
    found = discovery(catalog=[CATALOG_A], orders=[ORDERS_A])
    instance_id = found.instances("catalog")[0].id
    runtime["upstreams"]["catalog"]["instances"][0]["id"] = instance_id

    data = snapshot(found, transport(), runtime=runtime)

    catalog = service(data, "catalog")
    assert catalog["bulkhead"] == {"in_flight": 3, "limit": 100}
    assert (catalog["instances"][0]["breaker"], catalog["instances"][0]["retry_after"]) == (
        "open",
        4.2,
    )
    assert f"catalog {instance_id}: circuit open" in data["problems"]


def test_without_the_proxys_runtime_the_breakers_are_unknown_not_invented():
    data = snapshot(discovery(catalog=[CATALOG_A], orders=[ORDERS_A]), transport())

    assert data["proxy_started"] is False
    assert service(data, "catalog")["instances"][0]["breaker"] is None


def test_dead_letters_and_a_long_outbox_lag_are_listed_as_problems():
    data = snapshot_build(
        probes={"catalog": []},
        runtime=None,
        local=metrics_parse(text=CATALOG),  # the gateway's own figures, here catalog's
    )

    assert "gateway: 3 dead letters" in data["problems"]
    assert "gateway: outbox lag 96 s" in data["problems"]


def test_a_service_that_cannot_read_its_broker_is_listed_as_a_problem():
    data = snapshot_build(probes={}, runtime=None, local=metrics_parse(text=ORDERS))

    assert "gateway: its queues could not be read from the broker" in data["problems"]


def test_the_gateways_own_figures_come_from_its_own_metrics():
    data = snapshot_build(probes={}, runtime=None, local=metrics_parse(text=CATALOG))

    assert service(data, "gateway")["figures"]["outbox_unpublished"] == 7


def test_the_snapshot_is_plain_json():
    probe = Probe(instance=discovery(catalog=[CATALOG_A]).instances("catalog")[0], ready=READY)
    data = snapshot_build(
        probes={"catalog": [probe]}, runtime=None, local=None, sagas=[SAGA], orders_url=ORDERS_A
    )

    assert json.loads(json.dumps(data)) == data


def test_each_saga_says_how_long_it_has_been_open():
    now = datetime(2026, 12, 6, 8, 0, 30, tzinfo=UTC)
    started = {**SAGA, "started_at": "2026-12-06T08:00:00Z"}

    data = snapshot_build(probes={}, runtime=None, local=None, sagas=[started, SAGA], now=now)

    assert [saga["age_seconds"] for saga in data["sagas"]["list"]] == [30.0, None]
