"""A backbone that trusts no one: forged commands, replies and events change nothing.

The whole shop as real processes on the run's RabbitMQ, each service with its own
signing key (tests/harness.py lays them out as `make run` does). The tests play an
intruder that can publish to the broker: unsigned messages, messages signed with the
wrong key, messages signed by a service that may not send them, and genuine
signatures replayed on another order. Each must leave orders, sagas, stock, credit
and counts as they were, and wait in the receiver's dead-letter queue with the
reason, where `manage.py dlq` shows it.
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from kombu import Connection, Exchange, Producer

from common.signing import (
    attestation_payload,
    event_payload,
    private_key_load,
    sign,
    signature_headers,
)
from tests.chaos import command_publish, kill, shell_json, worker_of
from tests.harness import BROKER_URL, RunningService, ServiceLauncher, shop_start, wait_until
from tests.test_saga import Shop, place, quick_customers, settled

pytestmark = pytest.mark.system

PRODUCT = 6
DEAD_LETTER_TIMEOUT = 60


@pytest.fixture(scope="module")
def shop(module_services: ServiceLauncher) -> Shop:
    started = shop_start(
        module_services,
        gateway_env={
            "GATEWAY_RATE_LIMIT_AUTHENTICATED": "100000/min",
            "LOGIN_RATE_PER_IP": "100000/min",
        },
    )
    return Shop(**started)


@pytest.fixture(scope="module")
def approved(shop: Shop) -> dict[str, Any]:
    """An approved order of one unit of PRODUCT, its customer's headers and id."""
    headers = quick_customers(shop, 1)[0]
    order_id = place(shop, headers, [{"product_id": PRODUCT, "quantity": 1}])
    order = settled(shop, headers, order_id)
    assert order["status"] == "APPROVED", order
    # The participants settle when order.approved reaches them: a moment after.
    assert wait_until(lambda: participants_settled(shop, order_id), timeout=30)
    buyer = str(httpx.get(shop.url("/api/users/me/"), headers=headers).json()["id"])
    return {"order_id": order_id, "headers": headers, "customer_id": buyer, "order": order}


def participants_settled(shop: Shop, order_id: str) -> bool:
    """Catalog committed the order's stock and users captured its credit."""
    stock = shell_json(
        shop.catalog,
        "from catalog.models import StockReservation\n"
        f"StockReservation.objects.get(order_id='{order_id}').state",
    )
    credit = shell_json(
        shop.users,
        "from accounts.models import CreditReservation\n"
        f"CreditReservation.objects.get(order_id='{order_id}').state",
    )
    return (stock, credit) == ("committed", "captured")


def queue_size(name: str) -> int:
    with Connection(BROKER_URL, connect_timeout=5) as connection:
        try:
            _, count, _ = connection.default_channel.queue_declare(queue=name, passive=True)
        except connection.channel_errors:
            return 0  # not declared yet: nothing died there
    return int(count)


def dead_letters(service: RunningService, *, commands: bool) -> list[dict[str, Any]]:
    """What `manage.py dlq list` shows an operator, one dict per message."""
    kind = ["--commands"] if commands else []
    output = service.manage("dlq", *kind, "list", "--json").stdout
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def wait_dead(service: RunningService, *, commands: bool, count: int) -> list[dict[str, Any]]:
    """The service's dead letters once ``count`` are there (or what is there at the end)."""
    prefix = service.env["QUEUE_PREFIX"]
    name = (
        f"{prefix}{service.name}.commands.dlq" if commands else f"{prefix}{service.name}.events.dlq"
    )
    wait_until(lambda: queue_size(name) >= count, timeout=DEAD_LETTER_TIMEOUT, interval=0.2)
    return dead_letters(service, commands=commands)


def world(shop: Shop, approved: dict[str, Any], *order_ids: str) -> dict[str, Any]:
    """Everything a forged message could change: orders (events, status), sagas, the
    product's stock and sold count, the customer's credit, reservations and order count."""
    ids = [approved["order_id"], *order_ids]
    orders = {
        order_id: httpx.get(
            shop.url(f"/api/orders/{order_id}/"), headers=approved["headers"]
        ).json()
        for order_id in ids
    }
    return {
        "orders": {
            order_id: (order["status"], [event["type"] for event in order["history"]])
            for order_id, order in orders.items()
        },
        "sagas": shell_json(
            shop.orders,
            "from orders.models import Saga\n"
            f"rows = Saga.objects.filter(order_id__in={ids!r}).order_by('order_id', 'kind')\n"
            "[[str(s.order_id), s.kind, s.state, s.pending, s.attempts, s.outcome] for s in rows]",
        ),
        "catalog": shell_json(
            shop.catalog,
            "from catalog.models import Product, StockReservation\n"
            f"p = Product.objects.select_related('stock').get(pk={PRODUCT})\n"
            f"held = sorted([str(r.order_id), r.state] for r in StockReservation.objects.filter("
            f"order_id__in={ids!r}))\n"
            "[p.stock.on_hand, p.stock.reserved, p.sold_count, held]",
        ),
        "users": shell_json(
            shop.users,
            "from accounts.models import CreditAccount, CreditReservation, User\n"
            f"a = CreditAccount.objects.get(pk={approved['customer_id']})\n"
            f"held = sorted([str(r.order_id), r.state, str(r.amount)] for r in "
            f"CreditReservation.objects.filter(order_id__in={ids!r}))\n"
            f"[str(a.reserved), User.objects.get(pk={approved['customer_id']}).order_count, held]",
        ),
    }


def command(
    shop: Shop,
    to: RunningService,
    task: str,
    *,
    signed_by: RunningService | None = None,
    **options: Any,
) -> str:
    """Publish a Celery command to ``to``'s queue as an intruder on the broker would."""
    queue = f"{to.env['QUEUE_PREFIX']}{to.name}"
    return command_publish(BROKER_URL, queue, task, signed_by=signed_by, **options)


def attestation_signed(service: RunningService, order_id: str, stock: dict) -> dict:
    """``service``'s attestation of a reserve's priced lines, as catalog's worker makes it
    (claim ``catalog.stock_reserved``), signed with that service's key file."""
    key = private_key_load(Path(service.env["MESSAGE_SIGNING_KEY"]))
    fields = {"order_id": order_id, **stock}
    payload = attestation_payload(claim="catalog.stock_reserved", fields=fields, signer="catalog")
    return {"signer": "catalog", "signature": sign(key, payload)}


# --- commands --------------------------------------------------------------------------


def test_forged_commands_to_release_an_approved_orders_stock_and_credit_change_nothing(
    shop: Shop, approved: dict[str, Any]
):
    order_id, other_order = approved["order_id"], str(uuid.uuid4())
    before = world(shop, approved)
    sent: dict[str, dict[str, str]] = {}
    for participant, task in (
        (shop.catalog, "catalog.stock_release"),
        (shop.users, "users.credit_release"),
    ):
        sent[participant.name] = {
            command(shop, participant, task, order_id=order_id): "unsigned: no x-signer",
            # users' key, but the headers say orders sent it
            command(
                shop, participant, task, signed_by=shop.users, signer="orders", order_id=order_id
            ): "bad signature",
            # a genuine signature of a service that may not send this
            command(
                shop, participant, task, signed_by=shop.users, order_id=order_id
            ): "'users' may not send",
            # orders' genuine signature of the command for another order, replayed on this one
            command(
                shop,
                participant,
                task,
                signed_by=shop.orders,
                signed_kwargs={"order_id": other_order},
                order_id=order_id,
            ): "bad signature",
        }

    dead = {
        participant.name: wait_dead(participant, commands=True, count=4)
        for participant in (shop.catalog, shop.users)
    }

    for name, expected in sent.items():
        reasons = {letter["id"]: letter["reason"] for letter in dead[name]}
        assert set(reasons) == set(expected), (name, dead[name])
        for task_id, why in expected.items():
            assert why in reasons[task_id], (name, reasons[task_id])
    assert world(shop, approved) == before


# --- replies -----------------------------------------------------------------------------


def test_forged_replies_to_a_saga_waiting_for_credit_change_nothing(
    shop: Shop, approved: dict[str, Any]
):
    """Catalog took the stock and passed the credit step on to users (the routing slip),
    whose worker is away: the saga waits for users' answer for both steps."""
    kill(shop.users, worker_of(shop.users), signal.SIGTERM)  # the saga will wait on users
    headers = approved["headers"]
    order_id = place(shop, headers, [{"product_id": PRODUCT, "quantity": 1}])
    waiting = wait_until(
        lambda: (
            shell_json(
                shop.catalog,
                "from catalog.models import StockReservation\n"
                f"StockReservation.objects.filter(order_id='{order_id}')"
                ".values_list('state', flat=True).first()",
            )
            == "committed"
        ),
        timeout=30,
        interval=0.3,
    )
    saga = shell_json(
        shop.orders,
        "from orders.models import Saga\n"
        f"s = Saga.objects.get(order_id='{order_id}')\n[s.state, s.pending]",
    )
    asked = saga[1]["stock_reserve"]
    price = httpx.get(shop.url(f"/api/catalog/products/{PRODUCT}/")).json()["price"]
    stock = {
        "lines": [{"product_id": PRODUCT, "quantity": 1, "unit_price": price}],
        "total": price,
    }
    claim = {"customer_id": asked["then"]["customer_id"], "amount": price}
    # What catalog attested, as users would pass it on: catalog's own key signs it here.
    attestation = attestation_signed(shop.catalog, order_id, stock)
    reply = {
        "order_id": order_id,
        "step": "credit_reserve",
        "ok": True,
        "reason": "",
        "data": {**claim, "stock": {**stock, "attestation": attestation}},
    }
    cheaper = {**stock["lines"][0], "unit_price": "0.01"}
    before = world(shop, approved, order_id)

    expected = {
        command(shop, shop.orders, "orders.saga_reply", **reply): "unsigned: no x-signer",
        # catalog's key, but the headers say users sent it
        command(
            shop, shop.orders, "orders.saga_reply", signed_by=shop.catalog, signer="users", **reply
        ): "bad signature",
        # catalog may send replies, but not for a step of users
        command(
            shop, shop.orders, "orders.saga_reply", signed_by=shop.catalog, **reply
        ): "a credit_reserve reply must come from users, not catalog",
        # users' genuine reply for another order, replayed with this order's id
        command(
            shop,
            shop.orders,
            "orders.saga_reply",
            signed_by=shop.users,
            signed_kwargs={**reply, "order_id": approved["order_id"]},
            **reply,
        ): "bad signature",
        # genuinely from users, but not what was asked
        command(
            shop,
            shop.orders,
            "orders.saga_reply",
            signed_by=shop.users,
            **{**reply, "data": {**reply["data"], "amount": "0.01"}},
        ): "amount '0.01'",
        # genuinely from users, with catalog's prices changed on the way
        command(
            shop,
            shop.orders,
            "orders.saga_reply",
            signed_by=shop.users,
            **{
                **reply,
                "data": {
                    **claim,
                    "amount": "0.01",
                    "stock": {"lines": [cheaper], "total": "0.01", "attestation": attestation},
                },
            },
        ): "does not verify with catalog's key",
        # genuinely from users, without catalog's part
        command(
            shop, shop.orders, "orders.saga_reply", signed_by=shop.users, **{**reply, "data": claim}
        ): "no stock part",
    }
    dead = wait_dead(shop.orders, commands=True, count=len(expected))
    after = world(shop, approved, order_id)
    shop.users.start_worker()  # the genuine reply comes now
    order = settled(shop, headers, order_id)

    assert waiting
    assert saga[0] == "reserving_stock"  # both steps answered by users, at once
    reasons = {letter["id"]: letter["reason"] for letter in dead}
    assert set(reasons) == set(expected), dead
    for task_id, why in expected.items():
        assert why in reasons[task_id], reasons[task_id]
    assert after == before
    assert order["status"] == "APPROVED"  # the real reply from users still gets through


# --- events ------------------------------------------------------------------------------


def event_publish(shop: Shop, body: bytes, headers: dict[str, str]) -> None:
    """Publish to the shop's events exchange, as the orders relay does."""
    exchange = Exchange(f"{shop.orders.env['QUEUE_PREFIX']}events", type="topic", durable=True)
    with Connection(BROKER_URL, connect_timeout=5) as connection:
        Producer(connection.default_channel).publish(
            body,
            exchange=exchange,
            routing_key="order.cancelled",
            content_type="application/json",
            content_encoding="utf-8",
            headers=headers,
        )


def event_signed(service: RunningService, body: bytes, signer: str | None = None) -> dict:
    signer = signer or service.name
    key = private_key_load(Path(service.env["MESSAGE_SIGNING_KEY"]))
    return signature_headers(
        signer=signer, payload=event_payload(body=body, signer=signer), private_key=key
    )


def cancelled(approved: dict[str, Any], *, order_id: str = "", source: str = "orders") -> bytes:
    """An order.cancelled envelope for the approved order, as orders' relay would send it."""
    order = approved["order"]
    data = {
        "customer_id": approved["customer_id"],
        "total": order["total"],
        "currency": order.get("currency", "EUR"),
        "lines": [
            {
                "product_id": line["product_id"],
                "quantity": line["quantity"],
                "unit_price": line["unit_price"],
            }
            for line in order["lines"]
        ],
    }
    return json.dumps(
        {
            "id": str(uuid.uuid4()),
            "type": "order.cancelled",
            "source": source,
            "time": "2026-12-06T10:00:00.000000+00:00",
            "subject": order_id or approved["order_id"],
            "trace": {},
            "data": data,
        }
    ).encode()


def test_forged_order_cancelled_events_change_no_sold_or_order_count(
    shop: Shop, approved: dict[str, Any]
):
    before = world(shop, approved)
    bodies: dict[str, str] = {}

    def send(body: bytes, headers: dict[str, str], why: str) -> None:
        bodies[json.loads(body)["id"]] = why
        event_publish(shop, body, headers)

    body = cancelled(approved)
    send(body, {}, "unsigned: no x-signer")
    body = cancelled(approved)
    send(body, event_signed(shop.users, body, signer="orders"), "bad signature")
    body = cancelled(approved, source="users")
    send(body, event_signed(shop.users, body), "'users' may not send 'order.cancelled'")
    # orders' genuine signature of another order's event, on this one's
    other = cancelled(approved, order_id=str(uuid.uuid4()))
    send(cancelled(approved), event_signed(shop.orders, other), "bad signature")

    dead = {
        consumer.name: wait_dead(consumer, commands=False, count=len(bodies))
        for consumer in (shop.catalog, shop.users)
    }

    for name, letters in dead.items():
        reasons = {letter["id"]: letter["reason"] for letter in letters}
        assert set(reasons) == set(bodies), (name, letters)
        for event_id, why in bodies.items():
            assert why in reasons[event_id], (name, reasons[event_id])
            assert reasons[event_id].startswith("refused event")
    assert world(shop, approved) == before
