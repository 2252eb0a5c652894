"""How long an order's approval takes to reach a client of the push channel (SSE).

    make bench-push     # or: .venv/bin/python bench/push_bench.py [--orders 200 --clients 8 ...]

Starts the whole shop as the tests do (tests/harness.py ``shop_start``: real gunicorn
processes, Celery workers, orders' outbox relay, the event consumers, the gateway),
once per broker (``--brokers rabbitmq,filesystem``: RabbitMQ, and the embedded
``filesystem://`` broker of ``make run``), on a private PostgreSQL and RabbitMQ of
its own (tests/servers.py) unless ``TEST_POSTGRES_URL`` and ``TEST_BROKER_URL`` name
running ones. The gateway's fallback reads are pushed out of reach (10 minutes), so
every event measured came through the broker.

``--clients`` customers (credit raised by staff, tokens signed with the gateway's own
key) each loop: place an order of one unit of a random product, open its stream
(``GET /api/orders/{id}/events/``, httpx + httpx-sse), read until the final event. The
figure is the time from the ``order.approved`` event's ``at`` (its ``occurred_at``,
stamped by orders_svc as the row is written, in the transaction that commits it) to
the client's clock when the event's block arrives: commit, outbox relay, broker,
the gateway's subscription, its read of the order from orders_svc, the stream. One
machine, one clock. The row's ``published_at`` (the relay claims it just before
publishing) splits that into commit → relay and relay → client. An approval that
happened before its stream was open (it came in the stream's replay of the history,
not pushed) is counted apart and left out.

Results go to ``bench/results/push.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_OUTPUT = REPO / "bench" / "results" / "push.json"
FAR = "600"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200, help="orders per broker")
    parser.add_argument("--clients", type=int, default=8, help="customers placing at once")
    parser.add_argument("--brokers", default="rabbitmq,filesystem")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser.parse_args()


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


async def one_order(client: Any, gateway: str, headers: dict[str, str]) -> dict[str, Any]:
    """Place an order, stream it to its end; the approval's delay if it was pushed."""
    from httpx_sse import aconnect_sse

    placed = await client.post(
        f"{gateway}/api/orders/",
        json={"lines": [{"product_id": random.randint(1, 20), "quantity": 1}]},  # noqa: S311
        headers=headers,
    )
    placed.raise_for_status()
    order_id = placed.json()["id"]
    url = f"{gateway}/api/orders/{order_id}/events/"
    async with aconnect_sse(client, "GET", url, headers=dict(headers)) as source:
        opened = time.time()
        async for event in source.aiter_sse():
            if not event.data:
                continue
            received = time.time()
            data = event.json()
            if not data["final"]:
                continue
            committed = datetime.fromisoformat(data["at"]).timestamp()
            return {
                "order_id": order_id,
                "received": received,
                "type": data["type"],
                "delay_ms": (received - committed) * 1000,
                "pushed": committed >= opened,
            }
    raise RuntimeError(f"the stream of {order_id} ended without a final event")


async def run_orders(gateway: str, customers: list[dict[str, str]], total: int) -> list[dict]:
    import httpx

    results: list[dict[str, Any]] = []
    remaining = iter(range(total))

    async def customer_loop(headers: dict[str, str]) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0)) as client:
            for _ in remaining:
                results.append(await one_order(client, gateway, headers))

    await asyncio.gather(*(customer_loop(headers) for headers in customers))
    return results


def relay_times(shop: Any, order_ids: list[str]) -> dict[str, tuple[float, float]]:
    """Per order, its ``order.approved`` row's ``occurred_at`` and ``published_at`` (when
    the outbox relay claimed it, just before publishing: PostgreSQL marks it so)."""
    import psycopg2

    with psycopg2.connect(shop.orders.env["DATABASE_URL"]) as connection:
        cursor = connection.cursor()
        cursor.execute(
            "SELECT order_id::text, occurred_at, published_at FROM orders_orderevent "
            "WHERE type = 'order.approved' AND order_id::text = ANY(%s)",
            (order_ids,),
        )
        rows = cursor.fetchall()
    connection.close()
    return {
        order_id: (occurred.timestamp(), published.timestamp())
        for order_id, occurred, published in rows
        if published is not None
    }


def bench_broker(broker: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import httpx

    from tests.harness import ServiceLauncher, shop_start
    from tests.test_saga import Shop, quick_customers, signed_headers

    launcher = ServiceLauncher(workdir / broker)
    env = (
        {"BROKER_URL": "filesystem://", "BROKER_FOLDER": str(workdir / broker / "broker")}
        if broker == "filesystem"
        else {}
    )
    try:
        shop = Shop(
            **shop_start(
                launcher,
                env={**env, "ACCESS_LOG": "false"},
                gateway_env={
                    "GATEWAY_RATE_LIMIT_AUTHENTICATED": "1000000/min",
                    "GATEWAY_PUSH_POLL_SECONDS": FAR,
                    "GATEWAY_PUSH_RESYNC_SECONDS": FAR,
                },
            )
        )
        customers = quick_customers(shop, args.clients)
        staff = signed_headers(shop, "1", staff=True)
        for headers in customers:
            me = httpx.get(shop.url("/api/users/me/"), headers=headers).json()
            httpx.patch(
                shop.url(f"/api/users/{me['id']}/"),
                json={"credit_limit": "1000000000.00"},
                headers=staff,
            ).raise_for_status()
        print(f"{broker}: shop up, {args.orders} orders by {args.clients} customers...")
        started = time.monotonic()
        results = asyncio.run(run_orders(shop.gateway.url, customers, args.orders))
        elapsed = time.monotonic() - started
        relayed = relay_times(shop, [r["order_id"] for r in results])
    finally:
        launcher.stop_all()
    pushed = [r["delay_ms"] for r in results if r["type"] == "order.approved" and r["pushed"]]
    # The split: commit to the relay's claim of the row (outbox), then to the client.
    split = [
        relayed[r["order_id"]]
        for r in results
        if r["type"] == "order.approved" and r["pushed"] and r["order_id"] in relayed
    ]
    to_relay = [(claimed - committed) * 1000 for committed, claimed in split]
    after_relay = [
        (r["received"] - relayed[r["order_id"]][1]) * 1000
        for r in results
        if r["type"] == "order.approved" and r["pushed"] and r["order_id"] in relayed
    ]
    summary = {
        "orders": len(results),
        "approved_pushed": len(pushed),
        "approved_in_replay": sum(
            1 for r in results if r["type"] == "order.approved" and not r["pushed"]
        ),
        "rejected": sum(1 for r in results if r["type"] == "order.rejected"),
        "seconds": round(elapsed, 1),
        "p50_ms": round(percentile(pushed, 0.50) or 0, 1),
        "p90_ms": round(percentile(pushed, 0.90) or 0, 1),
        "p99_ms": round(percentile(pushed, 0.99) or 0, 1),
        "max_ms": round(max(pushed, default=0), 1),
        "mean_ms": round(statistics.fmean(pushed), 1) if pushed else None,
        "commit_to_relay_p50_ms": round(percentile(to_relay, 0.50) or 0, 1),
        "relay_to_client_p50_ms": round(percentile(after_relay, 0.50) or 0, 1),
        "relay_to_client_p99_ms": round(percentile(after_relay, 0.99) or 0, 1),
        "load_average_1m": round(os.getloadavg()[0], 1),
    }
    print(f"{broker}: {json.dumps(summary)}")
    return summary


def main() -> int:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    private = None
    if "TEST_POSTGRES_URL" not in os.environ or "TEST_BROKER_URL" not in os.environ:
        from tests.servers import PrivateServers

        private = PrivateServers()
        print("starting a private PostgreSQL, RabbitMQ and Redis...")
        private.start()
        os.environ.update(private.env())
    workdir = Path(tempfile.mkdtemp(prefix="push-bench-"))
    try:
        runs = {
            broker: bench_broker(broker, args, workdir)
            for broker in args.brokers.split(",")
            if broker
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if private is not None:
            private.close()
    results = {
        "what": "order.approved commit (occurred_at) to an SSE client receiving it, ms",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "orders_per_broker": args.orders,
        "clients": args.clients,
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"Written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
