"""The order saga when things break (issue #5): the broker stops, workers die, a participant
stays away, every message arrives twice. Real PostgreSQL, RabbitMQ and processes.

One shop for the module, the saga watchdog running beside it as a process, on
a private RabbitMQ node (``tests/chaos.py``) that the tests stop and start,
leaving the machine's shared broker alone. Each test first sets the settings
it needs (``reconfigure`` restarts the processes whose environment changes):

- ``BASE``: 2 s deadlines and 10 attempts, enough for workers to reconnect
  after an outage (Celery's worker retries at 2, 6, 12, 20... s), while an
  outage of a few deadlines shows whether the watchdog counts attempts it
  should not;
- a watchdog allowed 2 attempts, to see a saga give up;
- ``CHAOS_DUPLICATE_DELIVERY``: every command, reply and event sent twice.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest

from tests.chaos import (
    PrivateRabbitMQ,
    command_publish,
    kill,
    rabbitmq_available,
    reconfigure,
    shell_json,
    shop_start,
    watchdog_restart,
    worker_of,
)
from tests.harness import ServiceLauncher, wait_until
from tests.test_saga import (
    Shop,
    credit,
    place,
    product,
    quick_customers,
    settled,
    signed_headers,
)

pytestmark = pytest.mark.system

STEP_TIMEOUT = 2.0
BASE = {
    "SAGA_STEP_TIMEOUT_SECONDS": str(STEP_TIMEOUT),
    "SAGA_MAX_ATTEMPTS": "10",
    "CHAOS_DUPLICATE_DELIVERY": "0",
}
LATE = ("credit_reserve", "stock_reserve")
APPROVED_HISTORY = [
    "order.placed",
    "order.stock_reserved",
    "order.credit_reserved",
    "order.approved",
]


@pytest.fixture(scope="module")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbitMQ]:
    # A missing RabbitMQ is a broken test machine, not a reason to skip (make test needs it).
    if reason := rabbitmq_available():
        pytest.fail(reason)
    node = PrivateRabbitMQ(tmp_path_factory.mktemp("rabbitmq"))
    node.start(wait=False)  # it boots while the services migrate; they wait for it to be ready
    try:
        yield node
    finally:
        node.close()


@pytest.fixture(scope="module")
def module_shop(
    rabbitmq: PrivateRabbitMQ, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    launcher = ServiceLauncher(tmp_path_factory.mktemp("services"))
    try:
        shop = shop_start(launcher, env={"BROKER_URL": rabbitmq.url, **BASE})
        rabbitmq.wait_ready()
        yield shop
    finally:
        for service in launcher.running:  # nothing of theirs is kept: no need to drain
            service.stop_workers(signal.SIGKILL)
        launcher.stop_all()  # before the broker goes


@pytest.fixture
def shop(module_shop: Shop, rabbitmq: PrivateRabbitMQ) -> Shop:
    """The module's shop with the base settings and its broker up."""
    if not rabbitmq.reachable():
        rabbitmq.start()
    reconfigure_shop(module_shop, BASE)
    return module_shop


def reconfigure_shop(shop: Shop, env: dict[str, str]) -> None:
    """Every process that sends commands, replies or events gets ``env``: orders' server
    (first commands), worker (next steps), watchdog (resends) and relay (events), and the
    participants' workers (replies). Catalog's and users' web servers send nothing: they
    keep running as they are."""
    with ThreadPoolExecutor(3) as pool:
        restarts = [
            pool.submit(reconfigure, shop.orders, env),
            pool.submit(reconfigure, shop.catalog, env, server=False),
            pool.submit(reconfigure, shop.users, env, server=False),
        ]
        for restart in restarts:
            restart.result()


@pytest.fixture
def strict_watchdog(shop: Shop) -> Iterator[None]:
    """The watchdog gives up after 2 attempts (2 s each) instead of 10."""
    watchdog_restart(shop.orders, {"SAGA_MAX_ATTEMPTS": "2"})
    yield
    watchdog_restart(shop.orders)


def sagas(shop: Shop, order_ids: list[str]) -> dict[str, dict]:
    """The orders' place sagas as the orders database holds them: state, attempts, late."""
    return shell_json(
        shop.orders,
        "from django.utils import timezone\n"
        "from orders.models import Saga\n"
        "now = timezone.now()\n"
        f"rows = Saga.objects.filter(order_id__in={order_ids!r}, kind='place')\n"
        "{str(s.order_id): {'state': s.state, 'attempts': s.attempts, 'outcome': s.outcome,"
        " 'late': s.deadline is not None and s.deadline < now} for s in rows}",
    )


def stock_row(shop: Shop, product_id: int) -> dict:
    return shell_json(
        shop.catalog,
        "from catalog.models import Stock\n"
        f"s = Stock.objects.get(product_id={product_id})\n"
        "{'on_hand': s.on_hand, 'reserved': s.reserved}",
    )


def credit_rows(shop: Shop, customer_id: str, order_id: str) -> dict:
    """The customer's reserved credit and the saga's reservation in users (state or None)."""
    return shell_json(
        shop.users,
        "from accounts.models import CreditAccount, CreditReservation\n"
        f"r = CreditReservation.objects.filter(order_id='{order_id}').first()\n"
        f"{{'reserved': str(CreditAccount.objects.get(pk={customer_id}).reserved),"
        " 'reservation': r and r.state}",
    )


def customer_id(shop: Shop, headers: dict[str, str]) -> str:
    return str(httpx.get(shop.url("/api/users/me/"), headers=headers).json()["id"])


def order_get(shop: Shop, headers: dict[str, str], order_id: str) -> dict:
    return httpx.get(shop.url(f"/api/orders/{order_id}/"), headers=headers).json()


def status(shop: Shop, headers: dict[str, str], order_id: str) -> str:
    return order_get(shop, headers, order_id)["status"]


def ignored_replies(shop: Shop, order_id: str, step: str) -> int:
    """How many replies of ``step`` for the order orders has ignored (its worker's log):
    duplicates, and answers to commands no saga waits for any more."""
    log = (shop.orders.var_dir / "worker.log").read_text(errors="replace")
    return log.count(f"Saga reply {step} for order {order_id} ignored")


def history(order: dict) -> list[str]:
    return [event["type"] for event in order["history"]]


# --- 1. the broker stops ---------------------------------------------------------------


def test_orders_placed_while_the_broker_is_down_all_complete_once_it_is_back(
    shop: Shop, rabbitmq: PrivateRabbitMQ
):
    """The API takes orders without a broker (their commands wait on the saga's deadline),
    the watchdog counts no attempt while the broker is away, and once it is back every
    order is approved: exact stock, credit and sold counts, nothing lost, nothing twice."""
    warm_up, *buyers = quick_customers(shop, 6)  # warm up: every connection made before
    assert (
        settled(shop, warm_up, place(shop, warm_up, [{"product_id": 6, "quantity": 1}]))["status"]
        == "APPROVED"
    )
    before = product(shop, 6)

    rabbitmq.stop()
    stopped = time.monotonic()
    order_ids, slowest = [], 0.0
    for headers in buyers:
        started = time.monotonic()
        order_ids.append(place(shop, headers, [{"product_id": 6, "quantity": 1}]))  # 202
        slowest = max(slowest, time.monotonic() - started)
    # Several deadlines pass with the broker away; the watchdog checks every 0.5 s.
    time.sleep(max(0.0, stopped + 4 * STEP_TIMEOUT - time.monotonic()))
    during = sagas(shop, order_ids)
    pending = [status(shop, h, i) for h, i in zip(buyers, order_ids, strict=True)]
    rabbitmq.start()

    assert slowest < 2.0, f"a POST took {slowest:.2f}s with the broker down"
    assert pending == ["PENDING"] * 5
    assert {s["state"] for s in during.values()} == {"reserving_stock"}, during
    assert all(s["late"] for s in during.values()), during
    assert [s["attempts"] for s in during.values()] == [0] * 5, "attempts counted in the outage"

    orders = [settled(shop, h, i) for h, i in zip(buyers, order_ids, strict=True)]
    assert [order["status"] for order in orders] == ["APPROVED"] * 5
    assert all(history(order) == APPROVED_HISTORY for order in orders)
    price = Decimal(before["price"])
    assert {Decimal(credit(shop, headers)) for headers in buyers} == {Decimal("1000.00") - price}
    assert product(shop, 6)["stock_available"] == before["stock_available"] - 5
    # Events too: the relay's sweep publishes what was appended meanwhile (its writer
    # could not), and catalog counts it.
    assert wait_until(lambda: product(shop, 6)["sold"] == before["sold"] + 5, timeout=30)


# --- 2. a participant's worker is killed ----------------------------------------------


@pytest.mark.parametrize("participant", ["catalog", "users"])
def test_a_participant_worker_killed_mid_saga_completes_after_it_restarts(
    shop: Shop, participant: str
):
    """SIGKILL loses nothing: unacknowledged commands go back to the queue (acks late),
    the watchdog resends what is late, and every command is idempotent."""
    victim = getattr(shop, participant)
    buyers = quick_customers(shop, 8)
    stock_before = product(shop, 5)["stock_available"]  # 49.90 feature phones

    in_flight = [(h, place(shop, h, [{"product_id": 5, "quantity": 1}])) for h in buyers[:4]]
    kill(victim, worker_of(victim), signal.SIGKILL)
    while_dead = [(h, place(shop, h, [{"product_id": 5, "quantity": 1}])) for h in buyers[4:]]
    time.sleep(STEP_TIMEOUT)  # a deadline passes: the watchdog resends into the queue
    victim.start_worker()

    orders = [settled(shop, h, order_id) for h, order_id in in_flight + while_dead]
    assert [order["status"] for order in orders] == ["APPROVED"] * 8
    assert all(history(order) == APPROVED_HISTORY for order in orders)
    assert product(shop, 5)["stock_available"] == stock_before - 8
    price = Decimal(product(shop, 5)["price"])
    assert {Decimal(credit(shop, headers)) for headers in buyers} == {Decimal("1000.00") - price}
    assert stock_row(shop, 5)["reserved"] == 0


# --- 3. a participant stays away past the deadline ------------------------------------


def test_a_participant_gone_past_the_deadline_times_the_order_out_and_holds_nothing(
    shop: Shop, rabbitmq: PrivateRabbitMQ, strict_watchdog: None
):
    """Users' worker is down: credit is asked for 1 + 2 times (each resend of the stock
    command, which catalog passes on to users again), then the saga gives up: the
    order is rejected (``timeout``) and the saga is done. Catalog releases the stock and
    users' event consumer (up: only the worker is away) leaves a release marker when
    order.rejected reaches them. Once users' worker is back, the reserves still queued,
    and a late reserve sent afterwards, hold nothing: the marker turns them into no-ops."""
    headers = quick_customers(shop, 1)[0]
    buyer = customer_id(shop, headers)
    available = product(shop, 6)["stock_available"]
    kill(shop.users, worker_of(shop.users), signal.SIGTERM)

    order_id = place(shop, headers, [{"product_id": 6, "quantity": 2}])
    # Catalog takes the stock and passes the credit step on to users (the routing slip).
    reserved = wait_until(lambda: product(shop, 6)["stock_available"] == available - 2, 15)
    # Only a saga that gave up releases stock; catalog is up, so that is done at once.
    released = wait_until(lambda: product(shop, 6)["stock_available"] == available, 30)
    marked = wait_until(lambda: credit_rows(shop, buyer, order_id)["reservation"] == "released", 30)
    while_away = order_get(shop, headers, order_id)
    saga_while_away = sagas(shop, [order_id])[order_id]["state"]
    shop.users.start_worker()
    order = order_get(shop, headers, order_id)

    assert (reserved, released, marked) == (True, True, True)
    assert (while_away["status"], while_away["rejection_reason"]) == ("REJECTED", "timeout")
    assert saga_while_away == "done"  # the releases are the participants' part now
    assert history(order) == history(while_away)
    assert history(order)[-1] == "order.rejected"
    assert credit(shop, headers) == "1000.00"

    # A reserve of each kind arriving after the release (a slow network, a stuck worker).
    # Each participant answers once it is done, and orders ignores the answer: that is
    # how the test knows both were handled.
    # First the reserve and its two resends, queued while users was away, all answered.
    answered = wait_until(lambda: ignored_replies(shop, order_id, "credit_reserve") == 3, 30)
    before = {step: ignored_replies(shop, order_id, step) for step in LATE}
    prefix = shop.orders.env["QUEUE_PREFIX"]
    amount = str(2 * Decimal(product(shop, 6)["price"]))
    command_publish(
        rabbitmq.url,
        f"{prefix}users",
        "users.credit_reserve",
        signed_by=shop.orders,
        order_id=order_id,
        customer_id=buyer,
        amount=amount,
    )
    command_publish(
        rabbitmq.url,
        f"{prefix}catalog",
        "catalog.stock_reserve",
        signed_by=shop.orders,
        order_id=order_id,
        lines=[{"product_id": 6, "quantity": 2}],
    )
    handled = wait_until(
        lambda: all(ignored_replies(shop, order_id, step) > before[step] for step in LATE), 30
    )

    assert answered
    assert handled
    assert credit_rows(shop, buyer, order_id) == {"reserved": "0.00", "reservation": "released"}
    assert product(shop, 6)["stock_available"] == available
    assert stock_row(shop, 6)["reserved"] == 0
    assert history(order_get(shop, headers, order_id)) == history(order)


# --- 4. everything delivered twice ----------------------------------------------------


def flows(shop: Shop) -> dict[str, dict]:
    """Approve, out of stock, over the credit limit and cancel, one new customer each."""
    sold_out = httpx.get(shop.url("/api/catalog/products/"), params={"in_stock": "false"})
    cases = {
        "approved": {"product_id": 3, "quantity": 2},
        "out_of_stock": {"product_id": sold_out.json()["results"][0]["id"], "quantity": 1},
        "credit_exceeded": {"product_id": 1, "quantity": 2},  # 549.00 each
        "cancelled": {"product_id": 6, "quantity": 1, "cancel": True},
    }
    buyers = quick_customers(shop, len(cases))
    with ThreadPoolExecutor(len(cases)) as pool:  # one product each: they cannot interfere
        running = {
            name: pool.submit(flow, shop, headers, **case)
            for headers, (name, case) in zip(buyers, cases.items(), strict=True)
        }
        return {name: future.result() for name, future in running.items()}


def flow(
    shop: Shop, headers: dict[str, str], *, product_id: int, quantity: int, cancel: bool = False
) -> dict:
    """One order of a new customer, cancelled once approved if asked: what it ends with
    (status, reason, history, stock, credit, and the sold and order counts the events keep)."""
    me = customer_id(shop, headers)
    staff = signed_headers(shop, "1", staff=True)
    before = product(shop, product_id)

    def counts() -> tuple[int, int]:
        account = httpx.get(shop.url(f"/api/users/{me}/"), headers=staff).json()
        return product(shop, product_id)["sold"] - before["sold"], account["order_count"]

    order_id = place(shop, headers, [{"product_id": product_id, "quantity": quantity}])
    order = settled(shop, headers, order_id)
    if cancel:
        assert order["status"] == "APPROVED"
        assert wait_until(lambda: counts() == (quantity, 1), timeout=15), counts()
        httpx.post(shop.url(f"/api/orders/{order_id}/cancel/"), headers=headers)
        order = settled(shop, headers, order_id, status="CANCELLED")
    counted = (quantity, 1) if order["status"] == "APPROVED" else (0, 0)
    assert wait_until(lambda: counts() == counted, timeout=15), counts()
    time.sleep(1)  # a duplicate event, had it been counted, would show by now
    return {
        "order_id": order_id,
        "status": order["status"],
        "reason": order["rejection_reason"],
        "history": history(order),
        "stock_change": product(shop, product_id)["stock_available"] - before["stock_available"],
        "credit": credit(shop, headers),
        "sold_and_order_count_change": counts(),
    }


def test_every_command_reply_and_event_delivered_twice_gives_the_same_final_state(shop: Shop):
    """The same four flows, then again with every sender sending everything twice."""
    once = flows(shop)
    reconfigure_shop(shop, {"CHAOS_DUPLICATE_DELIVERY": "1"})
    twice = flows(shop)
    twice_ids = [result.pop("order_id") for result in twice.values()]
    for result in once.values():
        del result["order_id"]

    # The switch did its work: every order's first reply came twice (catalog's refusal,
    # or users' answer for both steps on the routing slip).
    assert all(
        ignored_replies(shop, order_id, "stock_reserve")
        + ignored_replies(shop, order_id, "credit_reserve")
        for order_id in twice_ids
    )
    assert twice == once
    assert {name: (r["status"], r["reason"]) for name, r in twice.items()} == {
        "approved": ("APPROVED", ""),
        "out_of_stock": ("REJECTED", "out_of_stock"),
        "credit_exceeded": ("REJECTED", "credit_limit_exceeded"),
        "cancelled": ("CANCELLED", ""),
    }
    assert twice["approved"]["history"] == APPROVED_HISTORY
    assert twice["approved"]["stock_change"] == -2
    assert twice["approved"]["sold_and_order_count_change"] == (2, 1)
    assert twice["cancelled"]["stock_change"] == 0
    assert twice["cancelled"]["credit"] == "1000.00"
    assert twice["cancelled"]["sold_and_order_count_change"] == (0, 0)
    assert twice["credit_exceeded"]["stock_change"] == 0
