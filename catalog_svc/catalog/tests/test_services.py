from decimal import Decimal
from uuid import uuid4

import pytest
from django.db import IntegrityError, transaction

from catalog.errors import (
    InvalidReservation,
    InvalidStockAdjustment,
    ReservationNotFound,
    ReservationStateConflict,
)
from catalog.models import Stock, StockReservation
from catalog.services import (
    LineRequest,
    product_create,
    stock_adjust,
    stock_commit,
    stock_release,
    stock_reserve,
)
from catalog.tests.factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db
State = StockReservation.State


def stock_of(product) -> Stock:
    return Stock.objects.get(pk=product.pk)


def test_reserve_holds_every_line_and_returns_unit_prices():
    phone = ProductFactory(price=Decimal("199.90"), on_hand=5)
    case = ProductFactory(price=Decimal("9.50"), on_hand=10)

    reservation = stock_reserve(
        order_id=uuid4(), lines=[LineRequest(phone.pk, 2), LineRequest(case.pk, 3)]
    )

    assert reservation.state == State.HELD
    assert {
        (line.product_id, line.quantity, line.unit_price) for line in reservation.lines.all()
    } == {
        (phone.pk, 2, Decimal("199.90")),
        (case.pk, 3, Decimal("9.50")),
    }
    assert (stock_of(phone).reserved, stock_of(phone).available) == (2, 3)
    assert (stock_of(case).reserved, stock_of(case).available) == (3, 7)


def test_reserve_is_all_or_nothing_when_one_line_is_short():
    plenty = ProductFactory(on_hand=100)
    scarce = ProductFactory(on_hand=1)

    reservation = stock_reserve(
        order_id=uuid4(), lines=[LineRequest(plenty.pk, 5), LineRequest(scarce.pk, 2)]
    )

    assert reservation.state == State.REFUSED
    assert reservation.reason == "out_of_stock"
    assert reservation.refused_product_ids == [scarce.pk]
    assert stock_of(plenty).reserved == 0
    assert stock_of(scarce).reserved == 0
    assert not reservation.lines.exists()


def test_reserve_refuses_unknown_products():
    product = ProductFactory()
    reservation = stock_reserve(
        order_id=uuid4(), lines=[LineRequest(product.pk, 1), LineRequest(987654, 1)]
    )
    assert (reservation.state, reservation.reason) == (State.REFUSED, "product_not_found")
    assert stock_of(product).reserved == 0


def test_reserve_refuses_inactive_products():
    product = ProductFactory(active=False)
    reservation = stock_reserve(order_id=uuid4(), lines=[LineRequest(product.pk, 1)])
    assert (reservation.state, reservation.reason) == (State.REFUSED, "product_inactive")


def test_reserve_sums_repeated_lines_of_one_product():
    product = ProductFactory(on_hand=5)
    reservation = stock_reserve(
        order_id=uuid4(), lines=[LineRequest(product.pk, 2), LineRequest(product.pk, 3)]
    )
    assert reservation.state == State.HELD
    assert [line.quantity for line in reservation.lines.all()] == [5]
    assert stock_of(product).available == 0


@pytest.mark.parametrize("lines", [[], [LineRequest(1, 0)], [LineRequest(1, -2)]])
def test_reserve_rejects_empty_or_non_positive_lines(lines):
    with pytest.raises(InvalidReservation):
        stock_reserve(order_id=uuid4(), lines=lines)


def test_reserve_twice_with_the_same_order_id_holds_once():
    product = ProductFactory(on_hand=10)
    order_id = uuid4()

    first = stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 4)])
    second = stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 4)])

    assert first.pk == second.pk
    assert stock_of(product).reserved == 4


def test_a_refusal_is_repeated_even_after_stock_arrives():
    product = ProductFactory(on_hand=0)
    order_id = uuid4()
    stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 1)])
    stock_adjust(product=product, delta=10)

    again = stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 1)])

    assert (again.state, again.reason) == (State.REFUSED, "out_of_stock")
    assert stock_of(product).reserved == 0


def test_commit_takes_held_units_off_the_shelf():
    product = ProductFactory(on_hand=10)
    order_id = uuid4()
    stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 3)])

    assert stock_commit(order_id=order_id).state == State.COMMITTED
    assert (stock_of(product).on_hand, stock_of(product).reserved) == (7, 0)


def test_commit_is_idempotent():
    product = ProductFactory(on_hand=10)
    order_id = uuid4()
    stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 3)])

    stock_commit(order_id=order_id)
    stock_commit(order_id=order_id)

    assert (stock_of(product).on_hand, stock_of(product).reserved) == (7, 0)


def test_commit_of_an_unknown_order_is_refused():
    with pytest.raises(ReservationNotFound):
        stock_commit(order_id=uuid4())


def test_commit_after_release_is_a_conflict():
    product = ProductFactory(on_hand=10)
    order_id = uuid4()
    stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 3)])
    stock_release(order_id=order_id)

    with pytest.raises(ReservationStateConflict):
        stock_commit(order_id=order_id)
    assert (stock_of(product).on_hand, stock_of(product).reserved) == (10, 0)


def test_release_of_held_units_makes_them_available_again():
    product = ProductFactory(on_hand=10)
    order_id = uuid4()
    stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 6)])

    assert stock_release(order_id=order_id).state == State.RELEASED
    assert (stock_of(product).on_hand, stock_of(product).reserved) == (10, 0)


def test_release_of_committed_units_returns_them_to_the_shelf():
    product = ProductFactory(on_hand=10)
    order_id = uuid4()
    stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 6)])
    stock_commit(order_id=order_id)

    stock_release(order_id=order_id)

    assert (stock_of(product).on_hand, stock_of(product).reserved) == (10, 0)


def test_release_is_idempotent():
    product = ProductFactory(on_hand=10)
    order_id = uuid4()
    stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 6)])

    stock_release(order_id=order_id)
    stock_release(order_id=order_id)

    assert (stock_of(product).on_hand, stock_of(product).reserved) == (10, 0)


def test_a_reserve_arriving_after_its_release_holds_nothing():
    product = ProductFactory(on_hand=10)
    order_id = uuid4()

    stock_release(order_id=order_id)
    late = stock_reserve(order_id=order_id, lines=[LineRequest(product.pk, 2)])

    assert late.state == State.RELEASED
    assert stock_of(product).reserved == 0


def test_stock_adjust_receives_and_writes_off_units():
    product = ProductFactory(on_hand=10)
    assert stock_adjust(product=product, delta=5).on_hand == 15
    assert stock_adjust(product=product, delta=-15).on_hand == 0


def test_stock_adjust_cannot_write_off_reserved_units():
    product = ProductFactory(on_hand=10)
    stock_reserve(order_id=uuid4(), lines=[LineRequest(product.pk, 8)])

    with pytest.raises(InvalidStockAdjustment):
        stock_adjust(product=product, delta=-3)
    assert stock_of(product).on_hand == 10


def test_product_create_refuses_negative_stock():
    with pytest.raises(InvalidStockAdjustment):
        product_create(
            sku="X-1", name="X", price=Decimal("1.00"), category=CategoryFactory(), on_hand=-1
        )


def test_database_refuses_stock_below_reserved():
    product = ProductFactory(on_hand=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        Stock.objects.filter(pk=product.pk).update(reserved=3)


def test_database_refuses_negative_on_hand():
    product = ProductFactory(on_hand=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        Stock.objects.filter(pk=product.pk).update(on_hand=-1)


@pytest.mark.parametrize("price", [Decimal("0.00"), Decimal("-1.00")])
def test_database_refuses_a_price_that_is_not_positive(price):
    product = ProductFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        type(product).objects.filter(pk=product.pk).update(price=price)
