"""Load for the whole shop through its gateway: Locust users who browse, sign up and order.

    make load       # headless: LOAD_HOST, LOAD_USERS, LOAD_TIME; report in var/load/report.json
    make load-ui    # Locust's web UI on 127.0.0.1:8089
    .venv/bin/locust -f bench/locustfile.py --headless --host http://127.0.0.1:8000 \\
        -u 16 -r 4 -t 1m --orders 200 --settle-timeout 60 --report-json var/load/report.json

The gateway address is Locust's own ``--host``, so the same file runs against ``make
run``, the compose stack or a cluster. Two kinds of users, equally many:

- ``Browser`` (anonymous): the product list with search, category, price, stock and
  ordering filters (and its next page now and then), a product's detail (half the
  time with the ``If-None-Match`` of an earlier answer, for a 304), the categories.
- ``Customer``: signs up (a unique email), logs in, browses too, and places orders
  (``Idempotency-Key``, 1-3 lines of in-stock products, 1-2 units each, within the
  credit it has left), follows each one by polling ``GET /api/orders/{id}/`` until it
  is final, cancels about one approved order in five (and follows it to
  ``CANCELLED``), replays an order's POST with the same key now and then (the same
  order must come back), lists its orders, reads the gateway's composition
  ``/details/``, its profile, refreshes its token, logs out and in again. A customer
  whose credit is spent signs up again as somebody new.

Requests have stable names (``/api/orders/[id]/``) so the statistics group per
endpoint. A 429 (rate limit) is not a failure: it is recorded under the endpoint's name
with `` [429]`` appended, so it has its own row in Locust's tables and the report, and
the user backs off for its ``Retry-After`` (at most 5 s). Every 5xx is a failure and
its body is kept for the report; so is an answer the flow did not expect (a 401, a 400
on a valid order...).

Options of this file (besides Locust's own):

- ``--orders N``: stop once N orders were accepted (202) and every one of them is final
  (APPROVED, REJECTED or CANCELLED; an approved order whose cancel was asked for is
  final once CANCELLED), or ``--settle-timeout`` seconds (60) after the Nth was
  accepted. Customers place no order past N; the run time (``-t``) still applies.
- ``--think-scale FACTOR``: multiply the think time between a user's tasks (0.5-2 s) by
  FACTOR; 0 drives the shop as hard as the users can (polling keeps its own pace).
- ``--report-json PATH``: at the end, a JSON summary: duration, requests, failures,
  counts by status code, per endpoint count/failures/p50/p95/p99, orders accepted and
  per second, final by status, still pending (ids), the saga's decision time (placed to
  approved or rejected) p50/p99 by the orders' own event times and as seen by polling,
  the 5xx answers seen, and the id of every accepted order.

A short human summary of the same figures is printed at the very end, after Locust's
tables. The order figures come from this process: run it as one process (the default),
not with ``--processes`` or master/workers, when they matter.

The shop's rate limits count per client IP (anonymous requests, logins) and per user,
and all of this load comes from one IP: start the shop with them raised for a load run
(see bench/README.md), otherwise most of it is 429s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent
from locust import FastHttpUser, between, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

log = logging.getLogger("shop-load")
rng = random.Random()  # noqa: S311 - a load mix, not security

FINAL_STATUSES = ("APPROVED", "REJECTED", "CANCELLED")
PASSWORD = "correct horse battery staple"  # noqa: S105 - throw-away load-test customers
SEARCH_TERMS = ("phone", "laptop", "book", "usb", "speaker", "kettle", "knife", "design", "pro")
ORDERINGS = ("price", "-price", "name", "-name", "created_at", "-created_at", "-sold")
RETRY_AFTER_MAX_S = 5.0
TOKEN_REFRESH_AFTER_S = 10 * 60  # access tokens last 15 minutes (JWT_ACCESS_TOKEN_MINUTES)
CANCEL_SHARE = 0.2
REPLAY_SHARE = 0.05
OVER_BUDGET_SHARE = 0.05  # now and then an order beyond the credit left: a rejection
SAMPLES_KEPT = 50

# Request names: one statistics row per endpoint.
N_PRODUCTS = "/api/catalog/products/"
N_PRODUCT = "/api/catalog/products/[id]/"
N_PRODUCT_COND = "/api/catalog/products/[id]/ (If-None-Match)"
N_CATEGORIES = "/api/catalog/categories/"
N_CATEGORY = "/api/catalog/categories/[id]/"
N_REGISTER = "/api/users/register/"
N_ME = "/api/users/me/"
N_TOKEN = "/api/auth/token/"  # noqa: S105 - a path
N_REFRESH = "/api/auth/token/refresh/"
N_LOGOUT = "/api/auth/logout/"
N_ORDERS = "/api/orders/"
N_ORDERS_REPLAY = "/api/orders/ (Idempotency-Key replay)"
N_ORDER = "/api/orders/[id]/"
N_CANCEL = "/api/orders/[id]/cancel/"
N_DETAILS = "/api/orders/[id]/details/"


# --------------------------------------------------------------------------- options


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("shop load (bench/locustfile.py)")
    group.add_argument(
        "--orders",
        type=int,
        default=0,
        metavar="N",
        help="Stop once N orders were accepted (202) and all of them are final, "
        "or --settle-timeout seconds after the Nth. 0: no limit (the default).",
    )
    group.add_argument(
        "--settle-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="With --orders: how long to wait for the accepted orders to become final (60).",
    )
    group.add_argument(
        "--think-scale",
        type=float,
        default=1.0,
        metavar="FACTOR",
        help="Multiply the users' think time (0.5-2 s between tasks) by FACTOR: "
        "0 for none, more load per user (1).",
    )
    group.add_argument(
        "--report-json",
        default="",
        metavar="PATH",
        help="Write a JSON summary of the run there at the end (orders, percentiles, codes).",
    )


# --------------------------------------------------------------------------- shared state


@dataclass
class TrackedOrder:
    id: str
    placed_at: float  # client wall clock, just before the POST was sent
    lines: int
    status: str = "PENDING"
    cancel_requested: bool = False
    rejection_reason: str = ""
    decided_ms: float | None = None  # placed -> approved/rejected, from the order's events
    observed_ms: float | None = None  # POST sent -> a poll saw approved/rejected
    final_seen_at: float | None = None

    @property
    def final(self) -> bool:
        if self.status == "APPROVED":
            return not self.cancel_requested
        return self.status in FINAL_STATUSES


@dataclass
class OrderBook:
    """Every order this process placed, and the --orders budget."""

    target: int = 0
    settle_timeout: float = 60.0
    orders: dict[str, TrackedOrder] = field(default_factory=dict)
    claims: int = 0  # POSTs in flight that count against the target
    target_reached_at: float | None = None
    replay_mismatches: list[dict[str, str]] = field(default_factory=list)

    def claim(self) -> bool:
        """May a customer place one more order? (Taken back by release() if not accepted.)"""
        if self.target and len(self.orders) + self.claims >= self.target:
            return False
        self.claims += 1
        return True

    def release(self) -> None:
        self.claims -= 1

    def accepted(self, order_id: str, placed_at: float, lines: int) -> TrackedOrder:
        order = self.orders.get(order_id)
        if order is None:
            order = self.orders[order_id] = TrackedOrder(order_id, placed_at, lines)
        if self.target and self.target_reached_at is None and len(self.orders) >= self.target:
            self.target_reached_at = time.time()
        return order

    @property
    def placing_done(self) -> bool:
        return bool(self.target) and len(self.orders) >= self.target

    def pending(self) -> list[TrackedOrder]:
        return [order for order in self.orders.values() if not order.final]


@dataclass
class Catalog:
    """What the users learnt about the catalog: in-stock products, categories, ETags."""

    products: dict[int, float] = field(default_factory=dict)  # id -> price, in stock
    categories: list[dict[str, Any]] = field(default_factory=list)
    etags: dict[int, str] = field(default_factory=dict)

    def learn(self, products: list[dict[str, Any]]) -> None:
        for product in products:
            pid = product.get("id")
            if not isinstance(pid, int):
                continue
            if int(product.get("stock_available") or 0) > 0:
                self.products[pid] = float(product.get("price") or 0)
            else:
                self.products.pop(pid, None)


@dataclass
class RunStats:
    started_at: float | None = None
    stopped_at: float | None = None
    stop_reason: str = ""
    peak_users: int = 0
    codes: Counter = field(default_factory=Counter)
    codes_by_endpoint: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    unexpected: list[dict[str, Any]] = field(default_factory=list)


BOOK = OrderBook()
CATALOG = Catalog()
RUN = RunStats()
ENV: dict[str, Environment] = {}
THINK_SCALE = [1.0]


# --------------------------------------------------------------------------- helpers


@dataclass
class Answer:
    status: int
    data: Any
    headers: Any


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _problem_code(data: Any) -> str:
    return str(data.get("code") or "") if isinstance(data, dict) else ""


def _retry_after(headers: Any) -> float:
    try:
        return min(max(float(headers.get("Retry-After") or 1), 0.1), RETRY_AFTER_MAX_S)
    except (AttributeError, TypeError, ValueError):
        return 1.0


def _at(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def _decision_ms(order: dict[str, Any]) -> float | None:
    """Placed -> approved/rejected, from the order's own event history (the server's clock)."""
    placed = decided = None
    for entry in order.get("history") or []:
        kind = str(entry.get("type", ""))
        if kind.endswith(".placed") and placed is None:
            placed = _at(entry.get("at"))
        elif kind.endswith((".approved", ".rejected")) and decided is None:
            decided = _at(entry.get("at"))
    if placed is None:
        placed = _at(order.get("created_at"))
    if placed is None or decided is None:
        return None
    return (decided - placed).total_seconds() * 1000


def _percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (``share`` in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(share * len(ordered) + 0.999999)))
    return round(ordered[rank - 1], 1)


class ShopUser(FastHttpUser):
    """Calls that classify their answers: expected, 429 (apart, not a failure), failure."""

    abstract = True
    think = between(0.5, 2.0)

    def wait_time(self) -> float:
        return self.think() * THINK_SCALE[0]

    def call(
        self,
        method: str,
        path: str,
        *,
        name: str,
        expect: tuple[int, ...] = (200,),
        **kwargs: Any,
    ) -> Answer:
        with self.client.request(method, path, name=name, catch_response=True, **kwargs) as r:
            status = r.status_code or 0
            data = _json(r.text) if status else None
            if status == 429:
                r.request_meta["name"] = f"{name} [429]"
                r.success()
            elif status in expect:
                r.success()
            elif status >= 500:
                r.failure(f"HTTP {status} {_problem_code(data)}".rstrip())
            elif status:
                r.failure(f"unexpected HTTP {status} {_problem_code(data)}".rstrip())
            # status 0 (no answer): Locust records the connection error itself.
            headers = r.headers
        if status == 429:
            gevent.sleep(_retry_after(headers))
        return Answer(status, data, headers)

    # The catalog, for anyone.

    def browse_products(self) -> None:
        params: dict[str, Any] = {"page_size": rng.choice((12, 20, 50))}
        if rng.random() < 0.35:
            params["search"] = rng.choice(SEARCH_TERMS)
        if CATALOG.categories and rng.random() < 0.35:
            category = rng.choice(CATALOG.categories)
            params["category"] = rng.choice((category.get("slug"), category.get("id")))
        if rng.random() < 0.5:
            params["ordering"] = rng.choice(ORDERINGS)
        if rng.random() < 0.4:
            params["in_stock"] = "true"
        if rng.random() < 0.15:
            params["min_price"] = rng.choice((10, 25, 50))
            params["max_price"] = rng.choice((100, 300, 1000))
        answer = self.call("GET", N_PRODUCTS, name=N_PRODUCTS, params=params)
        page = answer.data if isinstance(answer.data, dict) else {}
        CATALOG.learn(page.get("results") or [])
        following = page.get("next")
        if following and rng.random() < 0.3:  # the next page, by the link the API gave
            parts = urlsplit(following)
            answer = self.call("GET", f"{parts.path}?{parts.query}", name=N_PRODUCTS)
            if isinstance(answer.data, dict):
                CATALOG.learn(answer.data.get("results") or [])

    def view_product(self) -> None:
        if not CATALOG.products:
            self.load_products()
            if not CATALOG.products:
                return
        product_id = rng.choice(list(CATALOG.products))
        etag = CATALOG.etags.get(product_id)
        path = f"/api/catalog/products/{product_id}/"
        if etag and rng.random() < 0.5:
            answer = self.call(
                "GET",
                path,
                name=N_PRODUCT_COND,
                expect=(200, 304),
                headers={"If-None-Match": etag},
            )
        else:
            answer = self.call("GET", path, name=N_PRODUCT, expect=(200, 404))
        if answer.status == 200 and isinstance(answer.data, dict):
            CATALOG.learn([answer.data])
            if answer.headers.get("ETag"):
                CATALOG.etags[product_id] = answer.headers.get("ETag")
        elif answer.status == 404:  # retired by staff meanwhile
            CATALOG.products.pop(product_id, None)

    def view_categories(self) -> None:
        answer = self.call("GET", N_CATEGORIES, name=N_CATEGORIES, params={"page_size": 100})
        data = answer.data
        results = data.get("results") if isinstance(data, dict) else data
        if isinstance(results, list) and results:
            CATALOG.categories = [c for c in results if isinstance(c, dict)]
        if CATALOG.categories and rng.random() < 0.5:
            category = rng.choice(CATALOG.categories)
            self.call("GET", f"/api/catalog/categories/{category.get('id')}/", name=N_CATEGORY)

    def load_products(self) -> None:
        answer = self.call(
            "GET", N_PRODUCTS, name=N_PRODUCTS, params={"in_stock": "true", "page_size": 100}
        )
        if isinstance(answer.data, dict):
            CATALOG.learn(answer.data.get("results") or [])


class Browser(ShopUser):
    """Somebody looking around the catalog without signing in."""

    weight = 1

    def on_start(self) -> None:
        if not CATALOG.categories:
            self.view_categories()

    @task(5)
    def products(self) -> None:
        self.browse_products()

    @task(4)
    def product(self) -> None:
        self.view_product()

    @task(1)
    def categories(self) -> None:
        self.view_categories()


class Customer(ShopUser):
    """Signs up, logs in, orders and follows its orders to the end."""

    weight = 1

    def on_start(self) -> None:
        self.access = self.refresh_jwt = self.email = ""
        self.registered = self.register_tried = False
        self.token_at = 0.0
        self.credit_left = 0.0
        self.my_orders: list[str] = []
        self.unfinished: list[str] = []
        self.session_failures = 0
        self.session_retry_at = 0.0
        if not CATALOG.products:
            self.load_products()
        self.sign_up()

    # Identity

    def auth(self) -> dict[str, str]:
        if self.refresh_jwt and time.monotonic() - self.token_at > TOKEN_REFRESH_AFTER_S:
            self.refresh_token()
        return {"Authorization": f"Bearer {self.access}"}

    def sign_up(self) -> bool:
        """Become a new customer (a unique email): register, then log in."""
        if self.unfinished:  # somebody with orders still moving stays who they are
            return self.signed_in()
        self.email = f"load-{uuid.uuid4().hex[:16]}@example.com"
        self.registered = self.register_tried = False
        self.access = self.refresh_jwt = ""
        self.my_orders = []
        self.session_retry_at = 0.0
        return self.signed_in()

    def signed_in(self) -> bool:
        """Register and log in as far as not done yet; after a failure, back off (1-30 s)."""
        if self.access:
            return True
        if time.monotonic() < self.session_retry_at:
            return False
        if not self.registered:
            self.register()
        if self.registered:
            self.log_in()
        if not self.access:  # the users service is struggling: do not hammer it
            self.session_failures += 1
            backoff = min(2.0**self.session_failures, 30.0) * rng.uniform(0.5, 1.0)
            self.session_retry_at = time.monotonic() + backoff
            return False
        self.session_failures = 0
        self.profile()
        return True

    def register(self) -> None:
        # After a 5xx or no answer the account may exist all the same: a second try with
        # the same email may then be a 400 (taken), which means registered.
        maybe_there = self.register_tried
        self.register_tried = True
        for _ in range(5):
            answer = self.call(
                "POST",
                N_REGISTER,
                name=N_REGISTER,
                expect=(201, 400) if maybe_there else (201,),
                json={"email": self.email, "password": PASSWORD, "name": "Load Customer"},
            )
            if answer.status != 429:
                break
        if answer.status == 201 or (maybe_there and answer.status == 400):
            self.registered = True
            self.credit_left = 1000.0  # CUSTOMER_DEFAULT_CREDIT_LIMIT; /me/ tells the truth

    def log_in(self) -> None:
        for _ in range(5):
            answer = self.call(
                "POST",
                N_TOKEN,
                name=N_TOKEN,
                json={"email": self.email, "password": PASSWORD},
            )
            if answer.status != 429:
                break
        if answer.status == 200 and isinstance(answer.data, dict):
            self.access, self.refresh_jwt = answer.data["access"], answer.data["refresh"]
            self.token_at = time.monotonic()

    def refresh_token(self) -> None:
        answer = self.call("POST", N_REFRESH, name=N_REFRESH, json={"refresh": self.refresh_jwt})
        if answer.status == 200 and isinstance(answer.data, dict):
            self.access, self.refresh_jwt = answer.data["access"], answer.data["refresh"]
            self.token_at = time.monotonic()
        elif answer.status == 401:  # used or revoked: log in again
            self.access = self.refresh_jwt = ""
            self.signed_in()

    def profile(self) -> None:
        answer = self.call("GET", N_ME, name=N_ME, headers=self.auth())
        if answer.status == 200 and isinstance(answer.data, dict):
            with contextlib.suppress(TypeError, ValueError):
                self.credit_left = float(answer.data.get("credit_available"))

    # Orders

    def choose_lines(self) -> tuple[list[dict[str, int]], float]:
        budget = self.credit_left if rng.random() >= OVER_BUDGET_SHARE else float("inf")
        candidates = list(CATALOG.products.items())
        rng.shuffle(candidates)
        lines: list[dict[str, int]] = []
        total = 0.0
        wanted = rng.choice((1, 1, 2, 2, 3))
        for product_id, price in candidates:
            quantity = rng.choice((1, 1, 1, 2))
            if total + price * quantity > budget:
                quantity = 1
                if total + price > budget:
                    continue
            lines.append({"product_id": product_id, "quantity": quantity})
            total += price * quantity
            if len(lines) == wanted:
                break
        return lines, total

    def place_order(self) -> None:
        if not self.signed_in():
            return
        if not CATALOG.products:
            self.load_products()
        lines, total = self.choose_lines()
        if not lines:  # the credit is spent (or nothing is in stock): a new customer
            self.sign_up()
            return
        if not BOOK.claim():
            return
        key = str(uuid.uuid4())
        body = {"lines": lines}
        placed_at = time.time()
        try:
            answer = self.call(
                "POST",
                N_ORDERS,
                name=N_ORDERS,
                expect=(202,),
                json=body,
                headers={**self.auth(), "Idempotency-Key": key},
            )
        finally:
            BOOK.release()
        if answer.status != 202 or not isinstance(answer.data, dict):
            return
        order_id = str(answer.data.get("id"))
        BOOK.accepted(order_id, placed_at, len(lines))
        self.my_orders.append(order_id)
        self.credit_left -= total
        if rng.random() < REPLAY_SHARE:
            self.replay(order_id, key, body)
        self.follow(order_id, started=placed_at)

    def replay(self, order_id: str, key: str, body: dict[str, Any]) -> None:
        """The same POST with the same Idempotency-Key: the same order must come back."""
        with self.client.request(
            "POST",
            N_ORDERS,
            name=N_ORDERS_REPLAY,
            catch_response=True,
            json=body,
            headers={**self.auth(), "Idempotency-Key": key},
        ) as r:
            data = _json(r.text) if r.status_code else None
            again = str(data.get("id")) if isinstance(data, dict) else ""
            if r.status_code == 429:
                r.request_meta["name"] = f"{N_ORDERS_REPLAY} [429]"
                r.success()
            elif r.status_code == 202 and again == order_id:
                r.success()
            elif r.status_code == 202:
                r.failure("the same Idempotency-Key gave another order")
                BOOK.accepted(again, time.time(), len(body["lines"]))
                BOOK.replay_mismatches.append({"first": order_id, "replay": again})
            elif r.status_code:
                r.failure(f"unexpected HTTP {r.status_code} {_problem_code(data)}".rstrip())

    def follow(self, order_id: str, *, started: float) -> None:
        """Poll the order until it is final (cancelling some approved ones on the way)."""
        tracked = BOOK.orders[order_id]
        deadline = time.time() + max(BOOK.settle_timeout, 10.0)
        delays = iter((0.1, 0.15, 0.25, 0.25, 0.5, 0.5, 0.75))
        while time.time() < deadline:
            gevent.sleep(next(delays, 1.0))
            answer = self.call("GET", f"/api/orders/{order_id}/", name=N_ORDER, headers=self.auth())
            if answer.status != 200 or not isinstance(answer.data, dict):
                continue
            order = answer.data
            status = str(order.get("status"))
            if status != tracked.status and status in ("APPROVED", "REJECTED"):
                if tracked.observed_ms is None:
                    tracked.observed_ms = (time.time() - started) * 1000
                tracked.decided_ms = _decision_ms(order)
            tracked.status = status
            tracked.rejection_reason = str(order.get("rejection_reason") or "")
            if status in ("REJECTED", "CANCELLED"):
                if status == "REJECTED" or tracked.cancel_requested:
                    self.credit_left += float(order.get("total") or 0)
                break
            if status == "APPROVED" and not tracked.cancel_requested:
                if rng.random() < CANCEL_SHARE and self.cancel(tracked):
                    continue
                break
        if tracked.final:
            tracked.final_seen_at = time.time()
            if order_id in self.unfinished:
                self.unfinished.remove(order_id)
        elif order_id not in self.unfinished:
            self.unfinished.append(order_id)

    def cancel(self, tracked: TrackedOrder) -> bool:
        tracked.cancel_requested = True  # not final until CANCELLED
        answer = self.call(
            "POST",
            f"/api/orders/{tracked.id}/cancel/",
            name=N_CANCEL,
            expect=(202, 409),
            headers=self.auth(),
        )
        if answer.status != 202:
            tracked.cancel_requested = False
        return tracked.cancel_requested

    # Tasks

    @task(6)
    def order(self) -> None:
        if not self.signed_in():
            return
        if self.unfinished:  # orders whose polling ran out of time: follow them first
            order_id = self.unfinished[0]
            self.follow(order_id, started=BOOK.orders[order_id].placed_at)
        elif not BOOK.placing_done:
            self.place_order()
        else:
            self.browse_products()

    @task(3)
    def products(self) -> None:
        self.browse_products()

    @task(3)
    def product(self) -> None:
        self.view_product()

    @task(2)
    def my_order_list(self) -> None:
        if self.access:
            self.call("GET", N_ORDERS, name=N_ORDERS, params={"page_size": 20}, headers=self.auth())

    @task(2)
    def order_details(self) -> None:
        if self.access and self.my_orders:
            order_id = rng.choice(self.my_orders)
            self.call(
                "GET", f"/api/orders/{order_id}/details/", name=N_DETAILS, headers=self.auth()
            )

    @task(1)
    def me(self) -> None:
        if self.access:
            self.profile()

    @task(1)
    def token_refresh(self) -> None:
        if self.refresh_jwt:
            self.refresh_token()

    @task(1)
    def log_out_and_in(self) -> None:
        if self.refresh_jwt and rng.random() < 0.5:
            self.call(
                "POST",
                N_LOGOUT,
                name=N_LOGOUT,
                expect=(200, 204),
                json={"refresh": self.refresh_jwt},
                headers=self.auth(),
            )
            self.access = self.refresh_jwt = ""
            self.signed_in()

    @task(1)
    def new_customer(self) -> None:
        if rng.random() < 0.2:
            self.sign_up()


# --------------------------------------------------------------------------- events


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    ENV["environment"] = environment
    options = environment.parsed_options
    if options is not None:
        BOOK.target = max(int(getattr(options, "orders", 0) or 0), 0)
        BOOK.settle_timeout = max(float(getattr(options, "settle_timeout", 60.0)), 0.0)
        THINK_SCALE[0] = max(float(getattr(options, "think_scale", 1.0)), 0.0)
    if isinstance(environment.runner, MasterRunner | WorkerRunner) and (
        BOOK.target or getattr(options, "report_json", "")
    ):
        log.warning(
            "--orders and --report-json count this process's users only; "
            "run in one process when their figures matter"
        )


@events.request.add_listener
def _on_request(
    request_type: str,
    name: str,
    response: Any = None,
    exception: Any = None,
    url: str = "",
    **_: Any,
) -> None:
    status = int(getattr(response, "status_code", 0) or 0)
    RUN.codes[str(status)] += 1
    RUN.codes_by_endpoint[f"{request_type} {name}"][str(status)] += 1
    if status >= 500 or (exception is not None and status != 0):
        sample = {
            "method": request_type,
            "name": name,
            "path": urlsplit(url).path if url else "",
            "status": status,
            "request_id": (getattr(response, "headers", None) or {}).get("X-Request-ID"),
            "body": (getattr(response, "text", "") or "")[:1000],
        }
        kept = RUN.server_errors if status >= 500 else RUN.unexpected
        if len(kept) < SAMPLES_KEPT:
            kept.append(sample)


@events.test_start.add_listener
def _test_start(environment: Environment, **_: Any) -> None:
    RUN.started_at = time.time()
    RUN.stopped_at = None
    RUN.stop_reason = ""
    if not isinstance(environment.runner, WorkerRunner):
        gevent.spawn(_watch, environment)


@events.test_stop.add_listener
def _test_stop(environment: Environment, **_: Any) -> None:
    RUN.stopped_at = RUN.stopped_at or time.time()
    RUN.stop_reason = RUN.stop_reason or _stop_reason(environment)


def _stop_reason(environment: Environment) -> str:
    run_time = float(getattr(environment.parsed_options, "run_time", None) or 0)
    # (gevent's timer for -t may fire a fraction of a second before run_time has passed)
    if run_time and RUN.started_at and time.time() - RUN.started_at >= run_time - 1.0:
        return f"run time over ({run_time:g} s)"
    return "stopped by hand (Ctrl-C, SIGTERM or the web UI)"


def _watch(environment: Environment) -> None:
    """The peak user count, and the end of an --orders run."""
    runner = environment.runner
    while runner is not None and RUN.stopped_at is None:
        RUN.peak_users = max(RUN.peak_users, runner.user_count)
        if BOOK.placing_done and BOOK.target_reached_at is not None:
            pending = BOOK.pending()
            settled_for = time.time() - BOOK.target_reached_at
            if not pending or settled_for > BOOK.settle_timeout:
                RUN.stop_reason = (
                    f"--orders {BOOK.target}: every accepted order is final"
                    if not pending
                    else f"--orders {BOOK.target}: settle timeout ({BOOK.settle_timeout:g} s) "
                    f"with {len(pending)} order(s) pending"
                )
                RUN.stopped_at = time.time()
                log.info("Stopping: %s", RUN.stop_reason)
                if getattr(environment.parsed_options, "headless", False):
                    runner.quit()
                else:
                    runner.stop()
                return
        gevent.sleep(0.25)


def report(environment: Environment) -> dict[str, Any]:
    """The run's figures: what --report-json writes and the summary prints."""
    stats = environment.stats
    started = RUN.started_at or time.time()
    duration = max((RUN.stopped_at or time.time()) - started, 1e-9)
    endpoints = []
    for (name, method), entry in sorted(stats.entries.items()):
        if not entry.num_requests and not entry.num_failures:
            continue
        endpoints.append(
            {
                "method": method,
                "name": name,
                "requests": entry.num_requests,
                "failures": entry.num_failures,
                "requests_per_s": round(entry.num_requests / duration, 2),
                "avg_ms": round(entry.avg_response_time, 1),
                "p50_ms": entry.get_response_time_percentile(0.5),
                "p95_ms": entry.get_response_time_percentile(0.95),
                "p99_ms": entry.get_response_time_percentile(0.99),
                "max_ms": round(entry.max_response_time or 0, 1),
                "status_codes": dict(RUN.codes_by_endpoint.get(f"{method} {name}", {})),
            }
        )
    orders = list(BOOK.orders.values())
    final = Counter(o.status for o in orders if o.final)
    reasons = Counter(o.rejection_reason for o in orders if o.status == "REJECTED")
    decided = [o.decided_ms for o in orders if o.decided_ms is not None]
    observed = [o.observed_ms for o in orders if o.observed_ms is not None]
    total = stats.total
    codes = dict(sorted(RUN.codes.items()))
    return {
        "host": environment.host,
        "started_at": datetime.fromtimestamp(started).astimezone().isoformat(),
        "duration_s": round(duration, 2),
        "stop_reason": RUN.stop_reason,
        "peak_users": RUN.peak_users,
        "requests": total.num_requests,
        "failures": total.num_failures,
        "requests_per_s": round(total.num_requests / duration, 2),
        "p50_ms": total.get_response_time_percentile(0.5),
        "p95_ms": total.get_response_time_percentile(0.95),
        "p99_ms": total.get_response_time_percentile(0.99),
        "status_codes": codes,
        "rate_limited_429": RUN.codes.get("429", 0),
        "server_errors_5xx": sum(n for code, n in RUN.codes.items() if int(code) >= 500),
        "no_answer": RUN.codes.get("0", 0),
        "endpoints": endpoints,
        "orders": {
            "target": BOOK.target or None,
            "accepted": len(orders),
            "accepted_per_s": round(len(orders) / duration, 2),
            "final_by_status": dict(sorted(final.items())),
            "rejection_reasons": dict(sorted(reasons.items())),
            "cancel_requested": sum(o.cancel_requested for o in orders),
            "pending": len(orders) - sum(final.values()),
            "pending_ids": sorted(o.id for o in orders if not o.final),
            "decision_ms": {
                "source": "the order's events: placed -> approved/rejected (server clock)",
                "count": len(decided),
                "p50": _percentile(decided, 0.5),
                "p95": _percentile(decided, 0.95),
                "p99": _percentile(decided, 0.99),
                "max": _percentile(decided, 1.0),
            },
            "observed_decision_ms": {
                "source": "POST sent -> a poll saw approved/rejected (client, coarse by polling)",
                "count": len(observed),
                "p50": _percentile(observed, 0.5),
                "p99": _percentile(observed, 0.99),
            },
            "idempotency_replay_mismatches": BOOK.replay_mismatches,
            "accepted_ids": sorted(BOOK.orders),
        },
        "server_error_samples": RUN.server_errors,
        "unexpected_answer_samples": RUN.unexpected,
    }


@events.quitting.add_listener
def _write_report(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    RUN.stopped_at = RUN.stopped_at or time.time()
    RUN.stop_reason = RUN.stop_reason or _stop_reason(environment)
    path = getattr(environment.parsed_options, "report_json", "")
    if path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(report(environment), indent=2) + "\n")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


@events.quit.add_listener
def _print_summary(**_: Any) -> None:
    """After Locust's own tables: the figures that matter for the shop, in a few lines."""
    environment = ENV.get("environment")
    if environment is None or isinstance(environment.runner, WorkerRunner):
        return
    r = report(environment)
    o = r["orders"]
    codes = ", ".join(f"{code}: {n}" for code, n in r["status_codes"].items())
    lines = [
        "",
        f"Shop load summary ({r['host']}, {r['duration_s']:.1f} s, {r['peak_users']} users; "
        f"{r['stop_reason']})",
        f"  requests  {r['requests']} ({r['requests_per_s']:.1f}/s), failures {r['failures']}, "
        f"5xx {r['server_errors_5xx']}, 429 rate-limited {r['rate_limited_429']}, "
        f"no answer {r['no_answer']}",
        f"  latency   p50 {_ms(r['p50_ms'])}, p95 {_ms(r['p95_ms'])}, p99 {_ms(r['p99_ms'])}",
        f"  codes     {codes}",
        f"  orders    {o['accepted']} accepted ({o['accepted_per_s']:.2f}/s); final "
        + (", ".join(f"{s} {n}" for s, n in o["final_by_status"].items()) or "none")
        + (f" (rejected: {dict(o['rejection_reasons'])})" if o["rejection_reasons"] else "")
        + f"; pending {o['pending']}",
        f"  saga      placed -> decided p50 {_ms(o['decision_ms']['p50'])}, "
        f"p99 {_ms(o['decision_ms']['p99'])} (order events, n={o['decision_ms']['count']}); "
        f"seen by polling p50 {_ms(o['observed_decision_ms']['p50'])}, "
        f"p99 {_ms(o['observed_decision_ms']['p99'])}",
    ]
    if o["pending_ids"]:
        lines.append(f"  pending   {', '.join(o['pending_ids'][:10])}")
    if r["rate_limited_429"]:
        limited = [e for e in r["endpoints"] if e["name"].endswith("[429]")]
        lines.append(
            "  429s      "
            + ", ".join(f"{e['method']} {e['name'][:-6]} {e['requests']}" for e in limited)
            + " (raise the shop's rate limits for a load run: bench/README.md)"
        )
    for sample in r["server_error_samples"][:5]:
        lines.append(
            f"  5xx       {sample['method']} {sample['name']} {sample['status']}: "
            f"{sample['body'][:200]}"
        )
    path = getattr(environment.parsed_options, "report_json", "")
    if path:
        lines.append(f"  report    {path}")
    print("\n".join(lines), file=sys.stdout, flush=True)
