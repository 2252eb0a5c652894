"""The saga through a broker outage: orders still taken, no attempt counted while it is down.

Real PostgreSQL, and a real broker connection: "down" is a loopback port that
refuses connections, as a stopped RabbitMQ does. The commands the watchdog
resends are captured (``sent``), except in the API test, where the request's
own commit publishes for real.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import timedelta

import pytest
from celery import Celery, current_app
from django.core.management import call_command
from django.utils import timezone

from common.commands import BrokerUnreachable
from orders.models import OrderStatus, Saga
from orders.saga import saga_deadlines_check
from orders.selectors import order_get
from orders.services import LineRequest, order_place

pytestmark = pytest.mark.django_db


def refusing_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"amqp://guest:guest@127.0.0.1:{port}//"


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, dict]]:
    """The commands the orchestrator sends, in order: (task, kwargs)."""
    commands: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        "orders.saga.command_send",
        lambda *, service, task, **kwargs: commands.append((task, kwargs)),
    )
    return commands


@pytest.fixture
def broker_down(settings) -> Iterator[None]:
    """The broker the watchdog checks (the service's, from settings) refuses connections."""
    up = settings.CELERY_BROKER_URL
    settings.CELERY_BROKER_URL = refusing_url()
    yield
    settings.CELERY_BROKER_URL = up


def place() -> str:
    order, _ = order_place(customer_id="7", lines=[LineRequest(1, 2)])
    return str(order.id)


def hours(n: int):
    return timezone.now() + timedelta(hours=n)


def test_late_sagas_are_left_alone_while_the_broker_is_down(sent, broker_down):
    order_id = place()
    before = Saga.objects.get(order_id=order_id)

    with pytest.raises(BrokerUnreachable):
        saga_deadlines_check(now=hours(1))

    after = Saga.objects.get(order_id=order_id)
    assert (after.attempts, after.pending, after.deadline) == (0, before.pending, before.deadline)
    assert [task for task, _ in sent] == ["catalog.stock_reserve"]  # only the first ask


def test_an_outage_longer_than_every_attempt_does_not_time_the_order_out(
    sent, settings, broker_down
):
    settings.SAGA_MAX_ATTEMPTS = 2
    order_id = place()
    for hour in range(1, 6):
        with pytest.raises(BrokerUnreachable):
            saga_deadlines_check(now=hours(hour))

    saga = Saga.objects.get(order_id=order_id)
    assert (saga.state, saga.attempts) == (Saga.State.RESERVING_STOCK, 0)
    assert order_get(order_id=order_id).status == OrderStatus.PENDING


def test_the_first_check_with_the_broker_back_resends_and_counts_one_attempt(sent, settings):
    order_id = place()
    up = settings.CELERY_BROKER_URL
    settings.CELERY_BROKER_URL = refusing_url()
    with pytest.raises(BrokerUnreachable):
        saga_deadlines_check(now=hours(1))
    settings.CELERY_BROKER_URL = up

    assert saga_deadlines_check(now=hours(2)) == 1

    assert Saga.objects.get(order_id=order_id).attempts == 1
    assert [task for task, _ in sent] == ["catalog.stock_reserve"] * 2


def test_a_check_with_nothing_late_does_not_need_the_broker(sent, broker_down):
    place()
    assert saga_deadlines_check() == 0  # deadline not passed: no connection tried


@pytest.mark.django_db(transaction=True)  # the command manages its connection as in production
def test_the_watchdog_waits_for_the_broker_and_says_so(sent, broker_down, caplog):
    order_id = place()
    Saga.objects.filter(order_id=order_id).update(deadline=hours(-1))

    with caplog.at_level(logging.WARNING, logger="orders.management.commands.saga_watchdog"):
        call_command("saga_watchdog", "--once")

    assert "broker is unreachable" in caplog.text
    assert Saga.objects.get(order_id=order_id).attempts == 0


@pytest.mark.django_db(transaction=True)
def test_an_order_placed_while_the_broker_is_down_is_accepted(as_customer):
    """The request commits, then its command fails to publish: 202 all the same, and the
    saga's deadline stands for the watchdog to resend it."""
    previous = current_app._get_current_object()
    down = Celery("broker-down", broker=refusing_url(), set_as_current=True)
    try:
        response = as_customer(1001).post(
            "/api/orders/", {"lines": [{"product_id": 3, "quantity": 2}]}, format="json"
        )
    finally:
        previous.set_current()
        down.close()

    assert response.status_code == 202
    saga = Saga.objects.get(order_id=response.json()["id"])
    assert (saga.state, saga.attempts) == (Saga.State.RESERVING_STOCK, 0)
    assert saga.deadline is not None
    assert list(saga.pending) == ["stock_reserve"]
