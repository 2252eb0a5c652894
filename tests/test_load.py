"""The shop under load as people run it: `make run`'s embedded defaults, and the same on
PostgreSQL and RabbitMQ, each loaded by `make load`'s generator (bench/locustfile.py).

Several customers at once place a fixed number of orders through the gateway while the
catalog's Celery worker is killed with SIGKILL halfway. Then: no answer was a 5xx, every
accepted order is final, and stock and credit add up (no unit sold twice, no credit
spent beyond a limit), checked through the public API as staff.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import (
    BROKER_URL,
    POSTGRES_URL,
    REPO,
    database_create,
    database_drop,
    delete_queues,
    run_queue_names,
    wait_until,
)
from tests.local_run import LocalRun

pytestmark = pytest.mark.system

ORDERS = 60
USERS = 8
# A few products with little stock, so that customers race for the last units.
SCARCE_PRODUCTS, SCARCE_UNITS = 4, 3
# Every process's rate limit out of the way: all the load comes from one address.
UNLIMITED = {
    "GATEWAY_RATE_LIMIT_ANONYMOUS": "1000000/min",
    "GATEWAY_RATE_LIMIT_AUTHENTICATED": "1000000/min",
    "LOGIN_RATE_PER_IP": "1000000/min",
    "LOGIN_RATE_PER_EMAIL": "1000000/min",
}
STAFF = {"email": "admin@example.com", "password": "admin"}  # run.sh's demo staff user
FINAL = {"APPROVED", "REJECTED", "CANCELLED"}


class Staff:
    """The demo staff user, through the gateway."""

    def __init__(self, gateway: str) -> None:
        self.client = httpx.Client(base_url=gateway, timeout=30)
        token = self.client.post("/api/auth/token/", json=STAFF)
        assert token.status_code == 200, token.text
        self.client.headers["Authorization"] = f"Bearer {token.json()['access']}"

    def all_pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        url: str | None = path
        query: dict[str, Any] | None = {"page_size": 100, **params}
        while url:
            page = self.client.get(url, params=query)
            assert page.status_code == 200, page.text
            results.extend(page.json()["results"])
            url, query = page.json()["next"], None
        return results

    def products(self) -> dict[int, dict[str, Any]]:
        return {p["id"]: p for p in self.all_pages("/api/catalog/products/")}

    def make_scarce(self, product_ids: list[int]) -> None:
        for product_id in product_ids:
            product = self.client.get(f"/api/catalog/products/{product_id}/").json()
            delta = SCARCE_UNITS - product["stock_available"]
            answer = self.client.post(
                f"/api/catalog/products/{product_id}/stock/", json={"delta": delta}
            )
            assert answer.status_code == 200, answer.text


def run_load(gateway: str, report: Path, *, during: Any = None) -> dict[str, Any]:
    """bench/locustfile.py for ORDERS orders; ``during(report_so_far)`` runs while it does."""
    command = [
        str(Path(sys.executable).with_name("locust")),
        "-f",
        "bench/locustfile.py",
        "--headless",
        "--only-summary",
        "--host",
        gateway,
        "--users",
        str(USERS),
        "--spawn-rate",
        str(USERS),
        "--run-time",
        "4m",
        "--orders",
        str(ORDERS),
        "--settle-timeout",
        "90",
        "--think-scale",
        "0.2",
        "--report-json",
        str(report),
    ]
    output = report.with_suffix(".log")
    with output.open("wb") as log:
        locust = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            if during is not None:
                during()
            locust.wait(timeout=360)
        finally:
            if locust.poll() is None:
                locust.kill()
                locust.wait()
    assert report.exists(), output.read_text()[-3000:]
    return json.loads(report.read_text())


def check_the_books(staff: Staff, before: dict[int, dict[str, Any]], load: dict[str, Any]) -> None:
    """No 5xx, every order final, stock and credit exactly what the final orders say."""
    assert load["server_errors_5xx"] == 0, load["server_error_samples"]
    assert load["no_answer"] == 0
    assert load["orders"]["accepted"] >= ORDERS
    accepted = load["orders"]["accepted_ids"]

    orders = {order["id"]: order for order in staff.all_pages("/api/orders/")}
    assert set(accepted) <= set(orders)
    statuses = Counter(order["status"] for order in orders.values())
    assert set(statuses) <= FINAL, statuses

    units_held: dict[int, int] = defaultdict(int)
    credit_held: dict[str, Decimal] = defaultdict(Decimal)
    for order in orders.values():
        if order["status"] != "APPROVED":
            continue  # rejected held nothing; cancelled gave it back
        credit_held[str(order["customer_id"])] += Decimal(order["total"])
        detail = staff.client.get(f"/api/orders/{order['id']}/").json()
        for line in detail["lines"]:
            units_held[line["product_id"]] += line["quantity"]
    assert statuses["APPROVED"] > 0

    after = staff.products()
    for product_id, product in before.items():
        now = after[product_id]
        assert now["stock_available"] >= 0
        assert product["stock_available"] - now["stock_available"] == units_held[product_id], (
            product_id
        )

    # Sold counts grow at each reserve and shrink when order.rejected reaches catalog's
    # consumer: they catch up.
    def sold_counts_match() -> bool:
        sold = {p: item["sold"] for p, item in staff.products().items()}
        return all(sold[p] - before[p]["sold"] == units_held[p] for p in before)

    assert wait_until(sold_counts_match, timeout=60, interval=1)

    customers = {str(c["id"]): c for c in staff.all_pages("/api/users/")}
    buyers = {order["customer_id"] for order in orders.values()}
    for customer_id in buyers:
        customer = customers[str(customer_id)]
        spent = Decimal(customer["credit_limit"]) - Decimal(customer["credit_available"])
        assert Decimal(customer["credit_available"]) >= 0
        assert spent == credit_held[str(customer_id)], customer


def kill_catalog_worker_once_orders_flow(shop: LocalRun) -> Any:
    """SIGKILL the catalog worker once orders are being placed; it must come back."""

    def kill() -> None:
        assert wait_until(lambda: _orders_placed(shop) >= ORDERS // 4, timeout=120, interval=0.5)
        old = shop.pid("catalog_worker")
        os.kill(old, signal.SIGKILL)
        assert wait_until(
            lambda: (
                shop.status()["catalog_worker"].state == "RUNNING"
                and shop.pid("catalog_worker") != old
            ),
            timeout=60,
            interval=0.5,
        ), shop.log_tail()

    return kill


def _orders_placed(shop: LocalRun) -> int:
    """Orders placed so far, from the orders service's own metrics."""
    try:
        text = httpx.get(f"{shop.urls['orders']}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0
    total = 0.0
    for line in text.splitlines():
        if line.startswith("orders_by_status{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def load_and_check(shop: LocalRun, tmp_path: Path) -> dict[str, Any]:
    staff = Staff(shop.gateway_url)
    before = staff.products()
    staff.make_scarce(sorted(before)[:SCARCE_PRODUCTS])
    before = staff.products()
    report = tmp_path / "load.json"
    load = run_load(shop.gateway_url, report, during=kill_catalog_worker_once_orders_flow(shop))
    check_the_books(staff, before, load)
    assert "exited: catalog_worker (terminated by SIGKILL" in shop.log()
    return load


@pytest.fixture
def embedded_shop(tmp_path: Path) -> Iterator[LocalRun]:
    run = LocalRun(tmp_path / "shop", env=UNLIMITED)
    try:
        yield run.start()
    finally:
        run.stop()


def test_the_embedded_shop_holds_under_load_and_a_killed_worker(embedded_shop, tmp_path):
    load_and_check(embedded_shop, tmp_path)
    # Nothing the broker could not read, and every process still up.
    assert "unreadable message" not in embedded_shop.log()
    assert {s.state for s in embedded_shop.status().values()} == {"RUNNING"}


@pytest.fixture
def deployed_shop(tmp_path: Path) -> Iterator[LocalRun]:
    """The same processes on PostgreSQL (a database per service) and RabbitMQ."""
    tag = uuid.uuid4().hex[:8]
    databases = {service: f"load_{tag}_{service}" for service in ("catalog", "users", "orders")}
    databases["gateway"] = f"load_{tag}_gateway"
    env = dict(UNLIMITED, BROKER_URL=BROKER_URL, QUEUE_PREFIX=f"load-{tag}.")
    for service, name in databases.items():
        database_create(name)
        env[f"{service.upper()}_DATABASE_URL"] = f"{POSTGRES_URL.rstrip('/')}/{name}"
    run = LocalRun(tmp_path / "shop", env=env)
    try:
        yield run.start()
    finally:
        run.stop()
        delete_queues(run_queue_names(env["QUEUE_PREFIX"]))
        for name in databases.values():
            database_drop(name)


def test_the_shop_on_postgresql_and_rabbitmq_holds_the_same_load(deployed_shop, tmp_path):
    load_and_check(deployed_shop, tmp_path)
