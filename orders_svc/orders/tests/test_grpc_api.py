"""orders.v1 over gRPC, through the server `manage.py grpc_serve` runs (in-process, loopback).

These replace the tests of the REST ``/internal/sagas/`` endpoint that gRPC replaced.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
import pytest
from eshop_contracts.orders.v1 import orders_pb2, orders_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from common.contracts import contract_verify, contracts_of, rpc_message_dict
from orders.grpc_api import SAGA_LIST_DEFAULT, SAGA_LIST_MAX
from orders.models import Saga

# The server's threads read the database: the rows must be committed for them to see.
pytestmark = pytest.mark.django_db(transaction=True)

LIST_SAGAS = "orders.v1.OrdersService.ListUnfinishedSagas"


@pytest.fixture
def orders(grpc_serve):
    return orders_pb2_grpc.OrdersServiceStub(grpc_serve())


@pytest.fixture
def service_metadata(make_token):
    token = make_token(sub="service:gateway", scope="internal", roles=["service"])
    return (("authorization", f"Bearer {token}"),)


def saga(state: str, *, needs_attention: bool = False, deadline: datetime | None = None) -> Saga:
    return Saga.objects.create(
        order_id=uuid.uuid4(),
        kind=Saga.Kind.PLACE,
        state=state,
        pending={"stock": {"task": "catalog.stock_reserve"}},
        needs_attention=needs_attention,
        deadline=deadline,
    )


def test_a_saga_whose_stock_command_carries_the_credit_step_waits_for_both(
    orders, service_metadata
):
    slip = saga(Saga.State.RESERVING_STOCK)
    slip.pending = {"stock_reserve": {"order_id": str(slip.order_id), "then": {"grant": {}}}}
    slip.save()

    (row,) = _list(orders, service_metadata).sagas

    assert list(row.waiting) == ["credit_reserve", "stock_reserve"]


def _list(orders, metadata, limit: int = 0) -> orders_pb2.ListUnfinishedSagasResponse:
    request = orders_pb2.ListUnfinishedSagasRequest(limit=limit)
    return orders.ListUnfinishedSagas(request, metadata=metadata, timeout=10)


def test_unfinished_sagas_are_listed_with_those_needing_attention_first(orders, service_metadata):
    waiting = saga(Saga.State.RESERVING_STOCK, deadline=datetime(2026, 12, 6, 8, 0, tzinfo=UTC))
    stuck = saga(Saga.State.RESERVING_CREDIT, needs_attention=True)
    saga(Saga.State.DONE)

    response = _list(orders, service_metadata)

    assert [row.order_id for row in response.sagas] == [str(stuck.order_id), str(waiting.order_id)]
    first, second = response.sagas
    assert (first.needs_attention, list(first.waiting), first.kind) == (True, ["stock"], "place")
    assert first.state == "reserving_credit"
    # Dates as the REST API wrote them; no deadline is no value, not a made-up one.
    assert first.started_at.endswith("Z")
    assert (first.deadline, second.deadline) == ("", "2026-12-06T08:00:00Z")


def test_the_list_is_cut_at_the_limit_asked_for(orders, service_metadata):
    for _ in range(3):
        saga(Saga.State.RESERVING_STOCK)

    response = _list(orders, service_metadata, limit=2)

    assert (response.limit, len(response.sagas)) == (2, 2)


def test_without_a_limit_the_default_applies_and_past_the_maximum_the_maximum(
    orders, service_metadata
):
    saga(Saga.State.RESERVING_STOCK)

    unset, huge = _list(orders, service_metadata), _list(orders, service_metadata, limit=10**6)

    assert (unset.limit, len(unset.sagas)) == (SAGA_LIST_DEFAULT, 1)
    assert huge.limit == SAGA_LIST_MAX


def test_nothing_unfinished_is_an_empty_list(orders, service_metadata):
    saga(Saga.State.DONE)

    assert list(_list(orders, service_metadata).sagas) == []


# --- the interceptor: the same service tokens /internal/ took ---------------------------------


def _refused(orders, metadata) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        _list(orders, metadata)
    return refused.value


def test_a_call_without_a_token_is_unauthenticated(orders):
    assert _refused(orders, ()).code() is grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": 1001, "roles": ["customer"]},
        {"sub": 1, "is_staff": True, "roles": ["staff"]},  # staff are not services either
    ],
)
def test_a_customers_or_staff_token_is_permission_denied(orders, make_token, claims):
    metadata = (("authorization", f"Bearer {make_token(**claims)}"),)

    assert _refused(orders, metadata).code() is grpc.StatusCode.PERMISSION_DENIED


def test_the_rest_endpoint_grpc_replaced_is_gone(service_api):
    assert service_api.get("/internal/sagas/").status_code == 404


def test_reflection_lists_the_service(grpc_serve):
    reflection = reflection_pb2_grpc.ServerReflectionStub(grpc_serve())

    answers = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    names = {
        service.name for answer in answers for service in answer.list_services_response.service
    }

    assert {"orders.v1.OrdersService", "grpc.health.v1.Health"} <= names


# --- what consumers rely on (contracts/consumers/*/orders.v1.*.json) ---------------------


def test_every_consumers_contract_holds_for_the_unfinished_sagas(orders, service_metadata):
    saga(Saga.State.RESERVING_STOCK)
    saga(Saga.State.RESERVING_CREDIT, needs_attention=True)

    response = _list(orders, service_metadata)

    assert contracts_of(message=LIST_SAGAS)  # somebody relies on it: else nothing is checked
    assert len(response.sagas) == 2
    assert contract_verify(LIST_SAGAS, rpc_message_dict(response)) == []
    # A change that would break the gateway's status page fails here, naming it.
    broken = rpc_message_dict(response)
    broken["sagas"][1]["order_id"] = "order 7"
    assert contract_verify(LIST_SAGAS, broken) == [
        f"gateway relies on {LIST_SAGAS} sagas[1].order_id: 'order 7' is not a 'uuid'"
    ]
