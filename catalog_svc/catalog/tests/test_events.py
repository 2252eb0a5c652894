"""Choreography: sold counts follow order.approved and order.cancelled, once per event."""

from __future__ import annotations

import json
import uuid

import pytest

from catalog.models import Stock, StockReservation
from catalog.services import LineRequest, stock_release, stock_reserve
from catalog.tests.factories import ProductFactory
from common.events.consumer import EventConsumer, Outcome
from common.testing.signing import consume_signed

pytestmark = pytest.mark.django_db


def envelope(event_type: str, lines: list[dict], event_id: str = "") -> str:
    return json.dumps(
        {
            "id": event_id or str(uuid.uuid4()),
            "type": event_type,
            "source": "orders",
            "time": "2026-11-22T10:00:00.000000+00:00",
            "subject": str(uuid.uuid4()),
            "trace": {},
            "data": {"customer_id": "7", "total": "1.00", "currency": "EUR", "lines": lines},
        }
    )


def test_an_approved_order_adds_to_each_products_sold_count_once():
    kettle, mug = ProductFactory(), ProductFactory()
    consumer = EventConsumer()
    body = envelope(
        "order.approved",
        [
            {"product_id": kettle.pk, "quantity": 2},
            {"product_id": mug.pk, "quantity": 1},
            {"product_id": kettle.pk, "quantity": 1},
        ],
    )

    assert consume_signed(consumer, body) is Outcome.HANDLED
    assert consume_signed(consumer, body) is Outcome.DUPLICATE  # redelivered: counted once

    kettle.refresh_from_db()
    mug.refresh_from_db()
    assert (kettle.sold_count, mug.sold_count) == (3, 1)


def test_a_cancelled_order_gives_its_units_back_but_never_below_zero():
    kettle = ProductFactory()
    consumer = EventConsumer()
    line = [{"product_id": kettle.pk, "quantity": 2}]
    consume_signed(consumer, envelope("order.approved", line))

    consume_signed(consumer, envelope("order.cancelled", line))
    kettle.refresh_from_db()
    assert kettle.sold_count == 0

    consume_signed(consumer, envelope("order.cancelled", line))
    kettle.refresh_from_db()
    assert kettle.sold_count == 0


def test_a_product_gone_since_is_skipped_and_the_others_counted():
    mug = ProductFactory()
    consumer = EventConsumer()
    body = envelope(
        "order.approved",
        [{"product_id": 999999, "quantity": 1}, {"product_id": mug.pk, "quantity": 4}],
    )

    assert consume_signed(consumer, body) is Outcome.HANDLED
    mug.refresh_from_db()
    assert mug.sold_count == 4


def test_the_most_sold_products_come_first_in_the_catalog(api_client):
    quiet, popular = ProductFactory(), ProductFactory()
    consume_signed(
        EventConsumer(), envelope("order.approved", [{"product_id": popular.pk, "quantity": 5}])
    )

    response = api_client.get("/api/catalog/products/", {"ordering": "-sold"})

    ids = [item["id"] for item in response.json()["results"]]
    assert ids.index(popular.pk) < ids.index(quiet.pk)
    assert response.json()["results"][0]["sold"] == 5


# --- the order's decision finishes catalog's part in its saga -------------------------


def decision(event_type: str, order_id: uuid.UUID, lines: list[dict]) -> str:
    body = json.loads(envelope(event_type, lines))
    body["subject"] = str(order_id)
    if event_type == "order.rejected":
        body["data"] = {"reason": "credit_limit_exceeded"}
    return json.dumps(body)


def held(product, quantity: int) -> uuid.UUID:
    order_id = uuid.uuid4()
    stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, quantity)])
    return order_id


def stock_of(product) -> tuple[int, int]:
    stock = Stock.objects.get(pk=product.pk)
    return stock.on_hand, stock.reserved


def test_order_approved_commits_the_held_stock_once():
    kettle = ProductFactory(on_hand=10)
    order_id = held(kettle, 3)
    body = decision("order.approved", order_id, [{"product_id": kettle.pk, "quantity": 3}])

    assert consume_signed(EventConsumer(), body) is Outcome.HANDLED
    assert consume_signed(EventConsumer(), body) is Outcome.DUPLICATE

    assert stock_of(kettle) == (7, 0)
    assert StockReservation.objects.get(order_id=order_id).state == "committed"


def test_order_rejected_releases_the_held_stock():
    kettle = ProductFactory(on_hand=10)
    order_id = held(kettle, 3)

    assert consume_signed(EventConsumer(), decision("order.rejected", order_id, [])) is (
        Outcome.HANDLED
    )

    assert stock_of(kettle) == (10, 0)
    assert StockReservation.objects.get(order_id=order_id).state == "released"


def test_order_rejected_before_its_reserve_makes_the_reserve_hold_nothing():
    """A timed-out order: its reserve is still queued when the rejection arrives."""
    kettle = ProductFactory(on_hand=10)
    order_id = uuid.uuid4()

    consume_signed(EventConsumer(), decision("order.rejected", order_id, []))
    late = stock_reserve(order_id=order_id, lines=[LineRequest(kettle.pk, 3)])

    assert late.state == "released"
    assert stock_of(kettle) == (10, 0)


def test_order_approved_after_its_cancel_released_the_stock_leaves_it_released():
    """The cancel saga's release command may reach catalog before order.approved does."""
    kettle = ProductFactory(on_hand=10)
    order_id = held(kettle, 3)
    stock_release(order_id=order_id)
    body = decision("order.approved", order_id, [{"product_id": kettle.pk, "quantity": 3}])

    assert consume_signed(EventConsumer(), body) is Outcome.HANDLED

    assert stock_of(kettle) == (10, 0)
    assert StockReservation.objects.get(order_id=order_id).state == "released"
    kettle.refresh_from_db()
    assert kettle.sold_count == 3  # order.cancelled, which follows, takes them off
