import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from opentelemetry import trace
from opentelemetry.instrumentation.django import DjangoInstrumentor

from common.testing.tracing import traceparent_of
from orders.models import OrderEvent, OrderSummary
from orders.selectors import order_get
from orders.services import LineRequest, order_place
from orders.tests.test_services import approve

pytestmark = pytest.mark.django_db
ORDERS = "/api/orders/"
BODY = {"lines": [{"product_id": 3, "quantity": 2}]}


def test_placing_an_order_answers_202_pending(as_customer):
    response = as_customer(1001).post(ORDERS, BODY)

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "PENDING"
    assert body["customer_id"] == "1001"
    assert body["lines"] == [{"product_id": 3, "quantity": 2, "unit_price": None}]
    assert response["Location"] == f"/api/orders/{body['id']}/"
    assert [h["type"] for h in body["history"]] == ["order.placed"]


@pytest.fixture
def django_traced():
    """Django's OpenTelemetry middleware in place, as ``common.tracing`` sets it up in a service."""
    instrumentor = DjangoInstrumentor()
    instrumentor.instrument()
    yield
    instrumentor.uninstrument()


def test_the_order_events_carry_the_trace_of_the_request_that_placed_it(
    django_traced, as_customer, spans
):
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    traced = as_customer(1001).post(ORDERS, BODY, HTTP_TRACEPARENT=caller)
    untraced = as_customer(1001).post(ORDERS, BODY)

    served, _ = (span for span in spans.all() if span.kind == trace.SpanKind.SERVER)
    assert f"{served.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert served.attributes["order.id"] == traced.json()["id"]
    placed = OrderEvent.objects.get(order_id=traced.json()["id"]).trace_context
    assert placed == {"traceparent": traceparent_of(served)}  # its span of the client's trace
    started = OrderEvent.objects.get(order_id=untraced.json()["id"]).trace_context["traceparent"]
    assert len(started) == 55
    assert "4bf92f3577b34da6a3ce929d0e0e4736" not in started


def test_the_order_events_keep_the_callers_tracestate(django_traced, as_customer, spans):
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    placed = as_customer(1001).post(
        ORDERS, BODY, HTTP_TRACEPARENT=caller, HTTP_TRACESTATE="shop=a1,vendor=b2"
    )

    event = OrderEvent.objects.get(order_id=placed.json()["id"])
    assert event.trace_context["tracestate"] == "shop=a1,vendor=b2"
    assert event.outbox_envelope()["trace"] == event.trace_context  # what the relay sends


def test_an_idempotency_key_returns_the_same_order(as_customer):
    client = as_customer(1001)
    first = client.post(ORDERS, BODY, HTTP_IDEMPOTENCY_KEY="abc")
    second = client.post(ORDERS, BODY, HTTP_IDEMPOTENCY_KEY="abc")
    other_body = client.post(
        ORDERS, {"lines": [{"product_id": 4, "quantity": 1}]}, HTTP_IDEMPOTENCY_KEY="abc"
    )

    assert first.json()["id"] == second.json()["id"]
    assert OrderSummary.objects.count() == 1
    assert other_body.status_code == 422
    assert other_body.json()["code"] == "idempotency_key_reused"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"lines": []},
        {"lines": [{"product_id": 0, "quantity": 1}]},
        {"lines": [{"product_id": 2**63, "quantity": 1}]},
        {"lines": [{"product_id": 1, "quantity": 0}]},
        {"lines": [{"product_id": 1, "quantity": 1}, {"product_id": 1, "quantity": 2}]},
    ],
)
def test_bad_orders_get_400_and_nothing_is_recorded(as_customer, body):
    response = as_customer(1001).post(ORDERS, body, format="json")
    assert response.status_code == 400
    assert "lines" in response.json()["errors"]
    assert not OrderSummary.objects.exists()


def test_placing_needs_a_token(api_client, jwt_keys):
    assert api_client.post(ORDERS, BODY, format="json").status_code == 401


def test_customers_list_their_own_orders_and_staff_all(as_customer, staff_api):
    order_place(customer_id="1001", lines=[LineRequest(1, 1)])
    order_place(customer_id="1002", lines=[LineRequest(1, 1)])

    own = as_customer(1001).get(ORDERS).json()
    everyone = staff_api.get(ORDERS).json()

    assert [o["customer_id"] for o in own["results"]] == ["1001"]
    assert everyone["count"] == 2


def test_only_the_owner_or_staff_see_an_order(as_customer, staff_api):
    order, _ = order_place(customer_id="1001", lines=[LineRequest(1, 1)])
    url = f"{ORDERS}{order.id}/"

    assert as_customer(1001).get(url).status_code == 200
    assert staff_api.get(url).status_code == 200
    assert as_customer(1002).get(url).status_code == 404
    assert as_customer(1001).get(f"{ORDERS}{uuid.uuid4()}/").status_code == 404
    assert as_customer(1001).get(f"{ORDERS}not-a-uuid/").status_code == 404


def test_cancel_of_an_approved_order_is_accepted_and_of_a_pending_one_refused(as_customer):
    pending, _ = order_place(customer_id="1001", lines=[LineRequest(1, 1)])
    approved, _ = order_place(customer_id="1001", lines=[LineRequest(1, 1)])
    approve(approved)
    client = as_customer(1001)

    refused = client.post(f"{ORDERS}{pending.id}/cancel/")
    accepted = client.post(f"{ORDERS}{approved.id}/cancel/")

    assert refused.status_code == 409
    assert refused.json()["code"] == "order_state_conflict"
    assert accepted.status_code == 202
    assert order_get(order_id=approved.id).cancel_requested
    assert as_customer(1002).post(f"{ORDERS}{approved.id}/cancel/").status_code == 404


def test_the_list_carries_each_orders_lines(as_customer):
    approved = approve(
        order_place(customer_id="1001", lines=[LineRequest(1, 2), LineRequest(7, 1)])[0]
    )
    pending, _ = order_place(customer_id="1001", lines=[LineRequest(3, 4)])
    order_place(customer_id="1002", lines=[LineRequest(1, 1)])

    listed = as_customer(1001).get(ORDERS).json()["results"]

    assert {summary["id"]: summary["lines"] for summary in listed} == {
        str(approved.id): [
            {"product_id": 1, "quantity": 2, "unit_price": "10.00"},
            {"product_id": 7, "quantity": 1, "unit_price": "5.50"},
        ],
        str(pending.id): [{"product_id": 3, "quantity": 4, "unit_price": None}],
    }


def test_a_page_of_orders_reads_all_their_lines_with_one_query(
    as_customer, django_assert_num_queries
):
    client = as_customer(1001)
    order_place(customer_id="1001", lines=[LineRequest(1, 1)])
    with CaptureQueriesContext(connection) as one_order:
        client.get(ORDERS)
    for product_id in range(2, 7):
        order_place(customer_id="1001", lines=[LineRequest(product_id, 1)])

    with django_assert_num_queries(len(one_order)):
        assert len(client.get(ORDERS).json()["results"]) == 6
