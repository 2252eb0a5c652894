import uuid

import pytest

from orders.models import Saga

pytestmark = pytest.mark.django_db
SAGAS = "/internal/sagas/"


def saga(state: str, *, needs_attention: bool = False, kind: str = "place") -> Saga:
    return Saga.objects.create(
        order_id=uuid.uuid4(),
        kind=kind,
        state=state,
        pending={"stock": {"task": "catalog.stock_reserve"}},
        needs_attention=needs_attention,
    )


def test_unfinished_sagas_are_listed_with_those_needing_attention_first(service_api):
    waiting = saga(Saga.State.RESERVING_STOCK)
    stuck = saga(Saga.State.RESERVING_CREDIT, needs_attention=True)
    saga(Saga.State.DONE)

    body = service_api.get(SAGAS).json()

    assert [row["order_id"] for row in body["sagas"]] == [
        str(stuck.order_id),
        str(waiting.order_id),
    ]
    assert body["sagas"][0]["needs_attention"] is True
    assert body["sagas"][0]["waiting"] == ["stock"]


def test_the_list_is_cut_at_the_limit_asked_for(service_api):
    for _ in range(3):
        saga(Saga.State.RESERVING_STOCK)

    body = service_api.get(SAGAS, {"limit": 2}).json()

    assert (body["limit"], len(body["sagas"])) == (2, 2)


def test_a_customer_token_gets_403_on_the_saga_list(customer_api):
    assert customer_api.get(SAGAS).status_code == 403


def test_staff_tokens_are_not_services_either(staff_api):
    assert staff_api.get(SAGAS).status_code == 403


def test_the_saga_list_needs_a_token(api_client):
    assert api_client.get(SAGAS).status_code == 401
