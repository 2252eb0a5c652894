"""Many reservations at once, on the real database: nothing is sold twice."""

import threading
from collections.abc import Callable
from uuid import UUID, uuid4

import pytest
from django.db import connections

from catalog.models import Stock, StockReservation
from catalog.services import LineRequest, stock_reserve
from catalog.tests.factories import ProductFactory

# Real transactions, one connection per thread: on PostgreSQL (make test) the
# row locks decide; on SQLite its single writer does.
pytestmark = pytest.mark.django_db(transaction=True)


def run_at_once(count: int, work: Callable[[int], object]) -> list[object]:
    """Run ``work(i)`` in ``count`` threads released together; return results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def runner(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as error:  # the test inspects it
            results[i] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_twenty_threads_reserving_the_last_units_never_oversell():
    product = ProductFactory(on_hand=5)

    results = run_at_once(
        20, lambda i: stock_reserve(order_id=uuid4(), lines=[LineRequest(product.pk, 1)]).state
    )

    assert results.count(StockReservation.State.COMMITTED) == 5
    assert results.count(StockReservation.State.REFUSED) == 15
    stock = Stock.objects.get(pk=product.pk)
    assert (stock.on_hand, stock.reserved, stock.available) == (0, 0, 0)
    product.refresh_from_db()
    assert product.sold_count == 5


def test_orders_locking_products_in_opposite_order_do_not_deadlock():
    first = ProductFactory(on_hand=100)
    second = ProductFactory(on_hand=100)

    def reserve(i: int) -> str:
        a, b = (first, second) if i % 2 else (second, first)
        lines = [LineRequest(a.pk, 1), LineRequest(b.pk, 1)]
        return stock_reserve(order_id=uuid4(), lines=lines).state

    results = run_at_once(20, reserve)

    assert results == [StockReservation.State.COMMITTED] * 20
    assert Stock.objects.get(pk=first.pk).on_hand == 80
    assert Stock.objects.get(pk=second.pk).on_hand == 80
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.sold_count, second.sold_count) == (20, 20)


def test_the_same_command_delivered_concurrently_reserves_once():
    product = ProductFactory(on_hand=10)
    order_id: UUID = uuid4()

    results = run_at_once(
        8, lambda i: stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 3)]).pk
    )

    assert len(set(results)) == 1, results
    assert Stock.objects.get(pk=product.pk).on_hand == 7
    product.refresh_from_db()
    assert product.sold_count == 3
