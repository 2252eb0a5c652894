"""Choreography: a rejected order's units come back, a cancelled order's sold counts go,
once per event."""

from __future__ import annotations

import json
import uuid

import pytest

from catalog.models import Product, Stock, StockReservation
from catalog.services import LineRequest, stock_release, stock_reserve
from catalog.tests.factories import ProductFactory
from common.events.broker import events_exchange
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


def taken(product, quantity: int) -> uuid.UUID:
    """An order whose reserve took ``quantity`` units of ``product``."""
    order_id = uuid.uuid4()
    stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, quantity)])
    return order_id


def decision(event_type: str, order_id: uuid.UUID, lines: list[dict]) -> str:
    body = json.loads(envelope(event_type, lines))
    body["subject"] = str(order_id)
    if event_type == "order.rejected":
        body["data"] = {"reason": "credit_limit_exceeded"}
    return json.dumps(body)


def shelf(product) -> tuple[int, int, int]:
    """(on hand, reserved, sold count) of a product."""
    stock = Stock.objects.get(pk=product.pk)
    product.refresh_from_db()
    return stock.on_hand, stock.reserved, product.sold_count


def test_an_approved_order_needs_nothing_more_from_catalog():
    """Its units left the shelf, counted sold, when catalog reserved them; catalog no
    longer binds order.approved, and one arriving on a binding left from before is
    acknowledged without effect (not dead-lettered)."""
    kettle = ProductFactory(on_hand=10)
    order_id = taken(kettle, 3)
    body = decision("order.approved", order_id, [{"product_id": kettle.pk, "quantity": 3}])

    through_binding = {"exchange": events_exchange().name, "routing_key": "order.approved"}
    assert consume_signed(EventConsumer(), body, **through_binding) is Outcome.IGNORED

    assert shelf(kettle) == (7, 0, 3)
    assert StockReservation.objects.get(order_id=order_id).state == "committed"


def test_a_cancelled_order_is_taken_out_of_the_sold_counts_once_never_below_zero():
    kettle, mug = ProductFactory(on_hand=10), ProductFactory(on_hand=10)
    order_id = uuid.uuid4()
    stock_reserve(order_id=order_id, lines=[LineRequest(kettle.pk, 2), LineRequest(mug.pk, 1)])
    stock_release(order_id=order_id)  # the cancel saga's step, before its event
    lines = [{"product_id": kettle.pk, "quantity": 2}, {"product_id": mug.pk, "quantity": 1}]
    body = decision("order.cancelled", order_id, lines)

    assert consume_signed(EventConsumer(), body) is Outcome.HANDLED
    assert consume_signed(EventConsumer(), body) is Outcome.DUPLICATE  # redelivered
    assert (shelf(kettle), shelf(mug)) == ((10, 0, 0), (10, 0, 0))

    consume_signed(EventConsumer(), decision("order.cancelled", uuid.uuid4(), lines))
    assert (shelf(kettle), shelf(mug)) == ((10, 0, 0), (10, 0, 0))


def test_a_product_gone_since_is_skipped_and_the_others_counted():
    mug = ProductFactory()
    Product.objects.filter(pk=mug.pk).update(sold_count=5)
    body = envelope(
        "order.cancelled",
        [{"product_id": 999999, "quantity": 1}, {"product_id": mug.pk, "quantity": 4}],
    )

    assert consume_signed(EventConsumer(), body) is Outcome.HANDLED
    mug.refresh_from_db()
    assert mug.sold_count == 1


def test_the_most_sold_products_come_first_in_the_catalog(api_client):
    quiet, popular = ProductFactory(), ProductFactory()
    taken(popular, 5)

    response = api_client.get("/api/catalog/products/", {"ordering": "-sold"})

    ids = [item["id"] for item in response.json()["results"]]
    assert ids.index(popular.pk) < ids.index(quiet.pk)
    assert response.json()["results"][0]["sold"] == 5


# --- a rejection undoes catalog's part in the saga --------------------------------------


def test_order_rejected_gives_the_units_back_and_uncounts_them_once():
    kettle = ProductFactory(on_hand=10)
    order_id = taken(kettle, 3)
    body = decision("order.rejected", order_id, [])

    assert consume_signed(EventConsumer(), body) is Outcome.HANDLED
    assert consume_signed(EventConsumer(), body) is Outcome.DUPLICATE

    assert shelf(kettle) == (10, 0, 0)
    assert StockReservation.objects.get(order_id=order_id).state == "released"


def test_order_rejected_before_its_reserve_makes_the_reserve_take_nothing():
    """A timed-out order: its reserve is still queued when the rejection arrives."""
    kettle = ProductFactory(on_hand=10)
    order_id = uuid.uuid4()

    consume_signed(EventConsumer(), decision("order.rejected", order_id, []))
    late = stock_reserve(order_id=order_id, lines=[LineRequest(kettle.pk, 3)])

    assert late.state == "released"
    assert shelf(kettle) == (10, 0, 0)
