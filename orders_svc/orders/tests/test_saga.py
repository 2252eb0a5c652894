"""The orchestrator's decisions, reply by reply (commands are captured, not sent).

The same flows run over RabbitMQ with real participants in tests/test_saga.py.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from common.testing.tracing import traceparent_of
from common.tracing import traceparent_current, tracer
from orders.models import OrderEvent, OrderStatus, Saga
from orders.saga import saga_deadlines_check, saga_reply
from orders.selectors import order_events, order_get
from orders.services import LineRequest, order_cancel_request, order_place

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    """The commands the orchestrator sends, in order: (task, kwargs)."""
    commands: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        "orders.saga.command_send",
        lambda *, service, task, **kwargs: commands.append((task, kwargs)),
    )
    return commands


def place() -> str:
    order, _ = order_place(customer_id="7", lines=[LineRequest(1, 2)])
    return str(order.id)


STOCK_OK = {"lines": [{"product_id": 1, "quantity": 2, "unit_price": "10.00"}], "total": "20.00"}
# Every reply of an approval, in order.
APPROVAL = [
    ("stock_reserve", STOCK_OK),
    ("credit_reserve", {}),
    ("stock_commit", {}),
    ("credit_capture", {}),
]


def test_the_happy_path_reserves_stock_then_credit_then_approves(sent):
    order_id = place()
    saga_reply(order_id=order_id, step="stock_reserve", ok=True, data=STOCK_OK)
    saga_reply(order_id=order_id, step="credit_reserve", ok=True)
    saga_reply(order_id=order_id, step="stock_commit", ok=True)
    saga_reply(order_id=order_id, step="credit_capture", ok=True)

    assert [task for task, _ in sent] == [
        "catalog.stock_reserve",
        "users.credit_reserve",
        "catalog.stock_commit",
        "users.credit_capture",
    ]
    assert sent[1][1] == {"order_id": order_id, "customer_id": "7", "amount": "20.00"}
    order = order_get(order_id=order_id)
    assert order.status == OrderStatus.APPROVED
    assert Saga.objects.get(order_id=order_id).state == Saga.State.DONE


def test_no_stock_rejects_with_the_reason(sent):
    order_id = place()
    saga_reply(order_id=order_id, step="stock_reserve", ok=False, reason="out_of_stock")
    order = order_get(order_id=order_id)
    assert (order.status, order.rejection_reason) == (OrderStatus.REJECTED, "out_of_stock")
    assert [task for task, _ in sent] == ["catalog.stock_reserve"]


def test_refused_credit_releases_the_stock_then_rejects(sent):
    order_id = place()
    saga_reply(order_id=order_id, step="stock_reserve", ok=True, data=STOCK_OK)
    saga_reply(order_id=order_id, step="credit_reserve", ok=False, reason="credit_limit_exceeded")
    assert order_get(order_id=order_id).status == OrderStatus.PENDING  # until the release is done

    saga_reply(order_id=order_id, step="stock_release", ok=True)

    order = order_get(order_id=order_id)
    assert (order.status, order.rejection_reason) == (OrderStatus.REJECTED, "credit_limit_exceeded")
    assert sent[-1][0] == "catalog.stock_release"


def test_every_reply_delivered_twice_gives_the_same_order(sent):
    order_id = place()
    for step, data in APPROVAL:
        saga_reply(order_id=order_id, step=step, ok=True, data=data)
        saga_reply(order_id=order_id, step=step, ok=True, data=data)

    order = order_get(order_id=order_id)
    assert order.status == OrderStatus.APPROVED
    assert len(order.history) == 4  # placed, stock, credit, approved: nothing twice
    assert len(sent) == 4


def test_cancel_releases_stock_and_credit_then_cancels(sent):
    order_id = place()
    for step, data in APPROVAL:
        saga_reply(order_id=order_id, step=step, ok=True, data=data)
    order_cancel_request(order_id=order_id, requested_by="7")
    saga_reply(order_id=order_id, step="stock_release", ok=True)
    saga_reply(order_id=order_id, step="credit_release", ok=True)

    assert order_get(order_id=order_id).status == OrderStatus.CANCELLED
    assert {task for task, _ in sent[-2:]} == {"catalog.stock_release", "users.credit_release"}


def test_a_late_reply_is_asked_again_then_the_order_times_out(sent, settings):
    settings.SAGA_MAX_ATTEMPTS = 2
    order_id = place()
    later = timezone.now() + timedelta(hours=1)

    saga_deadlines_check(now=later)  # try 1
    saga_deadlines_check(now=later + timedelta(hours=1))  # try 2
    assert [task for task, _ in sent] == ["catalog.stock_reserve"] * 3
    saga_deadlines_check(now=later + timedelta(hours=2))  # gives up: release whatever may be held
    assert sent[-1][0] == "catalog.stock_release"
    order = order_get(order_id=order_id)
    assert (order.status, order.rejection_reason) == (OrderStatus.REJECTED, "timeout")
    assert Saga.objects.get(order_id=order_id).state == Saga.State.COMPENSATING

    saga_reply(order_id=order_id, step="stock_release", ok=True)

    saga = Saga.objects.get(order_id=order_id)
    assert (saga.state, saga.outcome) == (Saga.State.DONE, "rejected:timeout")
    assert [e.type for e in order_events(order_id=order_id)][-1] == "order.rejected"
    assert order_get(order_id=order_id).version == order.version  # rejected once only


def test_resends_and_a_timeout_stay_in_the_trace_that_placed_the_order(
    monkeypatch, settings, spans
):
    settings.SAGA_MAX_ATTEMPTS = 1
    traced: list[tuple[str, str]] = []
    monkeypatch.setattr(
        "orders.saga.command_send",
        lambda *, service, task, **kwargs: traced.append((task, traceparent_current())),
    )
    with tracer.start_as_current_span("placing"):
        order_id = place()
    later = timezone.now() + timedelta(hours=1)

    saga_deadlines_check(now=later)  # resend
    saga_deadlines_check(now=later + timedelta(hours=1))  # gives up: timeout, release

    placing = spans.named("placing").context
    passes = [span for span in spans.all() if span.name == "saga deadline"]
    assert [task for task, _ in traced] == ["catalog.stock_reserve"] * 2 + ["catalog.stock_release"]
    assert [parent for _, parent in traced[1:]] == [traceparent_of(span) for span in passes]
    assert all(span.parent.span_id == placing.span_id for span in passes)
    assert all(span.attributes["order.id"] == order_id for span in passes)
    rejected = OrderEvent.objects.get(order_id=order_id, type="order.rejected")
    assert rejected.traceparent == traceparent_of(passes[1])


def test_a_failing_compensation_is_retried_and_flagged(sent):
    order_id = place()
    saga_reply(order_id=order_id, step="stock_reserve", ok=True, data=STOCK_OK)
    saga_reply(order_id=order_id, step="credit_reserve", ok=False, reason="credit_limit_exceeded")
    saga_reply(order_id=order_id, step="stock_release", ok=False, reason="broken")

    saga = Saga.objects.get(order_id=order_id)
    assert saga.needs_attention
    assert saga.state == Saga.State.COMPENSATING
    assert sent[-1][0] == "catalog.stock_release"  # asked again
