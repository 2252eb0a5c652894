"""The gateway's gRPC client against real gRPC servers on loopback (stand-ins for users and
catalog that answer as told and record what reached them): deadlines, retries of idempotent
calls only, the breaker, the metadata, and the errors callers turn into problem details."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest
from eshop_contracts.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from eshop_contracts.users.v1 import users_pb2, users_pb2_grpc
from proxy.composition import _products

from common.auth import TokenUser, token_decode
from common.tracing import tracer
from identity.clients import InvalidCredentials, UpstreamUnavailable, credentials_check
from identity.tokens import service_token
from rpc import calls
from rpc.client import targets


@dataclass
class StandIn(users_pb2_grpc.UsersServiceServicer, catalog_pb2_grpc.CatalogServiceServicer):
    """Fails the first ``failures`` calls with ``failure``, sleeps ``delay``; records metadata."""

    failures: int = 0
    failure: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    delay: float = 0.0
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _enter(self, name: str, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.calls.append((name, dict(context.invocation_metadata())))
            failing = len(self.calls) <= self.failures
        if self.delay:
            time.sleep(self.delay)
        if failing:
            context.abort(self.failure, "told to fail")

    def CheckCredentials(self, request, context):
        self._enter("CheckCredentials", context)
        if request.password != "right":
            return users_pb2.CheckCredentialsResponse(valid=False)
        claims = users_pb2.Claims(sub="7", email=request.email, roles=["customer"])
        return users_pb2.CheckCredentialsResponse(valid=True, claims=claims)

    def GetCustomerSummary(self, request, context):
        self._enter("GetCustomerSummary", context)
        if request.user_id != "7":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such customer")
        return users_pb2.CustomerSummary(id=7, email="ann@example.com", is_active=True)

    def GetProducts(self, request, context):
        self._enter("GetProducts", context)
        found = [catalog_pb2.Product(id=pid, sku=f"SKU-{pid}") for pid in request.ids if pid < 100]
        missing = [pid for pid in request.ids if pid >= 100]
        return catalog_pb2.GetProductsResponse(products=found, missing_ids=missing)


@pytest.fixture
def stand_in(settings, gateway_keys) -> Iterator[StandIn]:
    servicer = StandIn()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    users_pb2_grpc.add_UsersServiceServicer_to_server(servicer, server)
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    address = f"127.0.0.1:{port}"
    settings.GATEWAY_GRPC = {
        **settings.GATEWAY_GRPC,
        "TARGETS": {"users": address, "catalog": address},
        "DEADLINE_SECONDS": 0.5,
        "LOGIN_DEADLINE_SECONDS": 0.5,
        "RETRIES": 2,
    }
    settings.GATEWAY = {
        **settings.GATEWAY,
        "REDIS_URL": "",
        "BREAKER_FAIL_MAX": 3,
        "BREAKER_RESET_TIMEOUT": 30.0,
    }
    targets.reset()
    service_token.clear()
    yield servicer
    server.stop(None).wait()
    targets.reset()


def test_a_login_goes_over_grpc_with_the_gateways_service_token(stand_in):
    claims = credentials_check(email="ann@example.com", password="right")

    assert claims == {
        "sub": "7",
        "email": "ann@example.com",
        "name": "",
        "is_staff": False,
        "roles": ["customer"],
    }
    [(name, metadata)] = stand_in.calls
    scheme, token = metadata["authorization"].split()
    assert (name, scheme) == ("CheckCredentials", "Bearer")
    assert TokenUser.from_claims(token_decode(token)).is_service


def test_wrong_credentials_are_invalid_credentials(stand_in):
    with pytest.raises(InvalidCredentials):
        credentials_check(email="ann@example.com", password="wrong")


def test_a_login_is_not_retried(stand_in):
    stand_in.failures = 1

    with pytest.raises(UpstreamUnavailable):
        credentials_check(email="ann@example.com", password="right")

    assert len(stand_in.calls) == 1


def test_a_read_is_retried_after_unavailable(stand_in):
    stand_in.failures = 2

    summary = calls.customer_summary(user_id="7")

    assert summary["id"] == 7
    assert [name for name, _ in stand_in.calls] == ["GetCustomerSummary"] * 3


def test_a_read_is_not_retried_after_an_answer(stand_in):
    stand_in.failures, stand_in.failure = 1, grpc.StatusCode.INVALID_ARGUMENT

    with pytest.raises(calls.RpcRefused):
        calls.customer_summary(user_id="7")

    assert len(stand_in.calls) == 1


def test_an_unknown_customer_is_none(stand_in):
    assert calls.customer_summary(user_id="8") is None


def test_a_call_past_its_deadline_is_unavailable_and_not_retried(stand_in):
    stand_in.delay = 1.0
    started = time.monotonic()

    with pytest.raises(UpstreamUnavailable, match="did not answer in time"):
        calls.customer_summary(user_id="7")

    assert time.monotonic() - started < 0.9
    assert len(stand_in.calls) == 1


def test_the_breaker_opens_and_then_fails_fast_without_calling(stand_in, settings):
    settings.GATEWAY_GRPC = {**settings.GATEWAY_GRPC, "RETRIES": 0}
    stand_in.failures = 100

    for _ in range(3):
        with pytest.raises(UpstreamUnavailable, match="could not be reached"):
            calls.customer_summary(user_id="7")
    with pytest.raises(UpstreamUnavailable, match="circuit is open"):
        calls.customer_summary(user_id="7")

    assert len(stand_in.calls) == 3
    [breaker] = targets.breakers().values()
    assert breaker.state == "open"


def test_a_dead_target_is_unavailable(stand_in, settings):
    settings.GATEWAY_GRPC = {**settings.GATEWAY_GRPC, "TARGETS": {"users": "127.0.0.1:1"}}
    targets.reset()

    with pytest.raises(UpstreamUnavailable, match="could not be reached"):
        calls.customer_summary(user_id="7")


def test_the_products_of_an_order_are_one_call(stand_in):
    found, missing = asyncio.run(calls.products_get_async(ids=[3, 4, 500]))

    assert sorted(found) == [3, 4]
    assert found[3]["sku"] == "SKU-3"
    assert missing == [500]
    assert [name for name, _ in stand_in.calls] == ["GetProducts"]


def test_the_async_read_is_retried_too(stand_in):
    stand_in.failures = 1

    summary = asyncio.run(calls.customer_summary_async(user_id="7"))

    assert summary["email"] == "ann@example.com"
    assert len(stand_in.calls) == 2


def test_the_callers_trace_context_travels_in_the_metadata(stand_in, spans):
    with tracer.start_as_current_span("login") as span:
        credentials_check(email="ann@example.com", password="right")
        trace_id = span.get_span_context().trace_id

    [(_, metadata)] = stand_in.calls
    assert metadata["traceparent"].split("-")[1] == f"{trace_id:032x}"
    client_span = spans.named("/users.v1.UsersService/CheckCredentials")
    assert client_span.context.trace_id == trace_id


def test_the_composition_asks_only_for_ids_that_can_be_products(stand_in):
    odd = ["3", "٣", "99999999999999999999999", "0", "None", "500"]

    found, warnings = asyncio.run(_products(odd))

    assert list(found) == ["3"]
    assert [name for name, _ in stand_in.calls] == ["GetProducts"]  # one call, no 500
    assert sorted(warning.split(":")[0] for warning in warnings) == sorted(
        f"product {pid}" for pid in odd[1:]
    )
