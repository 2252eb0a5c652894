import select
import time
from decimal import Decimal

import pytest
from django.db import transaction

from orders.domain import Order
from orders.errors import ConcurrencyConflict, IdempotencyKeyReused, OrderStateConflict
from orders.models import OrderEvent, OrderEventType, OrderStatus, OrderSummary
from orders.selectors import order_get
from orders.services import (
    LineRequest,
    order_append,
    order_cancel_request,
    order_place,
    read_models_rebuild,
)

pytestmark = pytest.mark.django_db
LINES = [LineRequest(1, 2), LineRequest(7, 1)]


def approve(order: Order) -> Order:
    order = order_append(
        order=order,
        type=OrderEventType.STOCK_RESERVED,
        data={
            "lines": [
                {"product_id": 1, "quantity": 2, "unit_price": "10.00"},
                {"product_id": 7, "quantity": 1, "unit_price": "5.50"},
            ],
            "total": "25.50",
        },
    )
    order = order_append(order=order, type=OrderEventType.CREDIT_RESERVED, data={"amount": "25.50"})
    return order_append(order=order, type=OrderEventType.APPROVED, data=order.settled_data())


def test_placing_an_order_records_its_first_event_and_a_pending_summary():
    order, created = order_place(customer_id="42", lines=LINES)

    assert created
    assert [e.type for e in OrderEvent.objects.filter(order_id=order.id)] == ["order.placed"]
    summary = OrderSummary.objects.get(order_id=order.id)
    assert (summary.customer_id, summary.status, summary.item_count) == ("42", "PENDING", 3)


def test_the_aggregate_is_rebuilt_from_its_events():
    order, _ = order_place(customer_id="42", lines=LINES)
    approve(order)

    loaded = order_get(order_id=order.id)

    assert loaded.status == OrderStatus.APPROVED
    assert loaded.total == Decimal("25.50")
    assert [line.unit_price for line in loaded.lines] == [Decimal("10.00"), Decimal("5.50")]
    assert [kind for kind, _ in loaded.history] == [
        "order.placed",
        "order.stock_reserved",
        "order.credit_reserved",
        "order.approved",
    ]


def test_two_writers_of_the_same_version_conflict():
    order, _ = order_place(customer_id="42", lines=LINES)
    stale = order_get(order_id=order.id)
    order_append(order=order, type=OrderEventType.REJECTED, data={"reason": "out_of_stock"})

    # The stale writer's whole transaction fails, as every caller's does.
    with pytest.raises(ConcurrencyConflict), transaction.atomic():
        order_append(order=stale, type=OrderEventType.CANCEL_REQUESTED, data={"requested_by": "1"})
    assert order_get(order_id=order.id).status == OrderStatus.REJECTED


def test_the_same_idempotency_key_gives_the_same_order():
    first, created = order_place(customer_id="42", lines=LINES, idempotency_key="k-1")
    again, created_again = order_place(customer_id="42", lines=LINES, idempotency_key="k-1")

    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert OrderEvent.objects.count() == 1


def test_a_key_is_per_customer():
    first, _ = order_place(customer_id="42", lines=LINES, idempotency_key="k-1")
    other, created = order_place(customer_id="43", lines=LINES, idempotency_key="k-1")
    assert created
    assert other.id != first.id


def test_the_same_key_for_other_lines_is_refused():
    order_place(customer_id="42", lines=LINES, idempotency_key="k-1")
    with pytest.raises(IdempotencyKeyReused):
        order_place(customer_id="42", lines=[LineRequest(1, 5)], idempotency_key="k-1")


def test_only_an_approved_order_can_be_cancelled():
    order, _ = order_place(customer_id="42", lines=LINES)
    with pytest.raises(OrderStateConflict):
        order_cancel_request(order_id=order.id, requested_by="42")

    approve(order)
    cancelling = order_cancel_request(order_id=order.id, requested_by="42")
    again = order_cancel_request(order_id=order.id, requested_by="42")

    assert cancelling.cancel_requested
    assert again.version == cancelling.version  # asked once


def test_the_rebuilt_read_model_equals_the_live_one():
    for customer in ("1", "2", "3"):
        order, _ = order_place(customer_id=customer, lines=LINES)
        if customer != "2":
            approve(order)
    rejected, _ = order_place(customer_id="2", lines=LINES)
    order_append(
        order=rejected, type=OrderEventType.REJECTED, data={"reason": "credit_limit_exceeded"}
    )
    live = list(OrderSummary.objects.order_by("order_id").values())

    count = read_models_rebuild()

    assert count == 4
    assert list(OrderSummary.objects.order_by("order_id").values()) == live


@pytest.mark.django_db(transaction=True)
def test_without_publishing_on_commit_a_committed_append_wakes_the_relay(settings):
    import psycopg2
    from django.db import connection

    from common.events.outbox import notify_channel

    settings.OUTBOX_PUBLISH_ON_COMMIT = False  # the relay publishes everything

    listener = psycopg2.connect(**connection.get_connection_params())
    listener.autocommit = True
    try:
        with listener.cursor() as cursor:
            cursor.execute(f"LISTEN {notify_channel(settings.SERVICE_NAME)}")
        with transaction.atomic():
            order_place(customer_id="42", lines=LINES)
            listener.poll()
            assert listener.notifies == []  # nothing before the commit

        # Sent at commit: wait for it to reach the socket (an event, not a sleep).
        deadline = time.monotonic() + 10
        while not listener.notifies and time.monotonic() < deadline:
            select.select([listener], [], [], deadline - time.monotonic())
            listener.poll()
        assert [note.channel for note in listener.notifies] == [
            notify_channel(settings.SERVICE_NAME)
        ]
    finally:
        listener.close()
