"""How long the order saga takes, how many orders per second it keeps up with, how fast events go.

    make bench-saga     # or: .venv/bin/python bench/saga_bench.py [--rate 20 --steps 5,10 ...]

Starts the whole shop as in tests/test_saga.py (tests/harness.py: real gunicorn
processes on throw-away PostgreSQL databases, the real RabbitMQ on loopback,
queues apart through QUEUE_PREFIX): gateway (JWKS), catalog (seeded, every
stock raised to 10^8 units), users (credit limit 10^9), orders, a Celery
worker per service (``-P threads -c 4`` as in the Procfile, ``--worker-pool``
and ``--worker-concurrency`` to try others), the saga watchdog, the orders
outbox relay and, where EVENT_HANDLERS name handlers, catalog's and users'
``consume_events``. Customers are created in users_svc without passwords and
get tokens signed with the gateway's own key (no PBKDF2 login per customer).

Load is open loop: POST /api/orders/ through the gateway at fixed scheduled
times (aiohttp on one asyncio loop, the cheapest client on this machine per
PERFORMANCE-NOTES), never waiting for an answer before the next send, so a
slow system gets a backlog instead of a politely slower client. Every order
is one unit of a random product for a random customer (500 of them), so row
locks on stock and credit spread as they would in a shop. The scheduling lag
(actual - planned send) is reported: a loaded client that cannot keep the
schedule shows up there.

Saga latency is POST-sent (client ``time.time()`` just before the request)
to the ``occurred_at`` of the order's ``order.approved`` event, read from the
orders database after the run: no polling adds load while measuring. Both
clocks are this machine's. ``occurred_at`` (like every timestamp used here)
is stamped by Python at the row's insert, before its transaction commits.
The same event store, with the participants' reservation rows (catalog's
``StockReservation``, users' ``CreditReservation``: insert for a reserve,
last update for commit/capture), splits each round trip into "out" (orders
commit, command publish, broker, participant worker up to its write) and
"back" (participant commit, reply, orders worker up to its event): that is
where the milliseconds go. Orders neither approved nor rejected within
``--settle`` seconds of the last send are "stuck".

1. Fixed rate (``--rate``, default 20/s) for ``--duration`` s: p50/p99 saga
   latency, approved/rejected/stuck. It runs last, after a ``--warmup`` s
   warm-up at the lowest rate and the steps, once every saga of those has
   finished (``open_sagas_at_start`` says if the wait ran out): a fixed rate
   beyond the machine leaves a backlog that would spoil any run after it. It
   runs in ``--fixed-slices`` slices (default 4) of ``--duration`` / slices s,
   each after ``SLICE_WARMUP_S`` of unmeasured orders at the rate and once every
   saga before it has finished; the figures are those of all the slices' orders
   together (CPU summed over them, latencies pooled).
2. Steps (``--steps``, 2, 5, 10, 20, ... orders/s, ``--step-duration`` s
   each, each one started once every saga before it has finished). A step keeps up
   when 99% of the POSTs were accepted, nothing is stuck, the last order
   settles within ``--max-drain`` s of the last send (the backlog drains), and
   latency does not grow through the step (p50 of its last third at most twice
   that of its first third plus 50 ms). ``max_orders_per_s`` is the highest
   rate of the run of steps that kept up, from the first (null if the first did
   not); stepping stops at the first that does not.
   CPU per order is reported per process group (utime+stime of the group from
   /proc, reaped children included), for the PostgreSQL backends of this run's
   databases (found by database name in their process title; backends that
   exit during a run, as with one connection per Celery task, are missed),
   for RabbitMQ (the whole broker) and for the load generator. "busy" is the
   share of all cores in use (/proc/stat) and "others" the cores used by
   processes outside the shop meanwhile: this machine is shared, and a run
   with others well above zero is skewed. ``cpu_bound_orders_per_s`` (cores /
   CPU per order) is what the machine could do with the shop alone on it.
3. Event delivery, commit to consumer: for every approved order of phase 1,
   catalog's inbox row (``common.InboxMessage.processed_at`` for message_id =
   the event's ``event_id``, stamped as the handler's transaction begins)
   minus ``OrderEvent.occurred_at``: the saga step's commit, relay wake-up
   (LISTEN/NOTIFY), publish with confirm, routing, consumer. Without
   consumers (no EVENT_HANDLERS) the headline comes from the bench's own tap,
   a plain kombu consumer bound to ``order.approved`` on the same exchange
   (arrival minus ``occurred_at``), reported in any case as ``event_tap_*``;
   ``event_source`` says which one the headline is. ``relay_lag`` is
   ``published_at - occurred_at`` (on PostgreSQL stamped as the relay claims
   the batch, just before publishing it).
4. Floors: kombu, a persistent message published with publisher confirms
   (``broker_connection``'s options) to a durable queue on the same RabbitMQ
   and received by a consumer on another connection (its own thread), p50 of
   the round trip over ``--kombu-messages`` messages before anything starts;
   PostgreSQL, one-row INSERT + COMMIT in the orders database before and
   after phase 1, since every saga step waits for at least one WAL flush.

Side by side (issue #16): by default the same warm-up, steps and fixed rate
also run against ``--baseline`` (a commit, default ``BASELINE_COMMIT``), checked
out with ``git worktree add --detach`` under the temp dir and started by that
commit's own tests/harness.py from the same .venv (its ``common`` first on
PYTHONPATH, ahead of the editable install of the working tree's). Each side is a
whole shop of its own (processes, databases, queue prefix, event exchange); both
are started first, then every phase runs on one side and then the other, never at
once, the side that goes first alternating from step to step and from one slice
of the fixed rate to the next (the machine's speed swings by a fifth within
minutes: with one block per side, a swing between the blocks counted as a
difference between the sides), each after both shops are idle. A side stops stepping at its own
first step that does not keep up. The JSON holds the working tree's figures as
without a baseline, the baseline's under ``baseline`` and the headline
``baseline_*`` keys beside them; ``--no-baseline`` runs the working tree alone.
The worktree is removed at the end, after Ctrl-C too.

``--setting SERVICE:NAME=VALUE`` tries a Django setting without editing a
service (a settings module in the temp dir star-imports the service's and
assigns it), ``--env`` an environment variable, ``--worker-pool`` and
``--worker-concurrency`` the Celery pool: e.g. ``--setting
all:CELERY_DB_REUSE_MAX=100000`` keeps workers' database connections.

Both sides' databases are on a private PostgreSQL server the bench starts
(tests/servers.py, with PostgreSQL's default settings: WAL flushed at commit,
autovacuum on) and deletes afterwards; ``--postgres-url`` names another (its
settings are recorded under ``machine.postgres``). Needs PostgreSQL's programs
(``postgresql``) and RabbitMQ on loopback.

Results go to bench/results/saga.json and a table on stdout. Other work on the
machine skews every figure: ``loadavg_at_start`` is recorded for that reason.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.util
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import aiohttp
import httpx
import jwt
import psycopg2
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.entity import PERSISTENT_DELIVERY_MODE

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
sys.path.insert(0, str(REPO))

from tests.harness import BROKER_URL, RunningService, ServiceLauncher, free_port  # noqa: E402
from tests.servers import PrivatePostgres  # noqa: E402

DEFAULT_OUTPUT = BENCH / "results" / "saga.json"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOCK_UNITS = 100_000_000
CREDIT_LIMIT = "1000000000.00"
TERMINAL = ("order.approved", "order.rejected")
# The saga's steps in the event store, in order: the split of its latency.
STEP_EVENTS = ("order.placed", "order.stock_reserved", "order.credit_reserved", "order.approved")
TOKEN_SECONDS = 4 * 3600
SERVICES = ("catalog", "users", "orders", "gateway")
# The commit before issue #16's saga redesign (HEAD of main when the baseline mode was
# added): the default baseline, so every run of the redesign is measured against the
# saga as it was, in the same run on the same machine.
BASELINE_COMMIT = "5073ee729bebed944bc691f56d6c52289d7d8f56"


@dataclass(frozen=True)
class Settings:
    rate: float
    duration: float
    fixed_slices: int
    warmup: float
    steps: list[float]
    step_duration: float
    settle: float
    max_drain: float
    customers: int
    kombu_messages: int
    web_workers: int
    gateway_workers: int
    worker_pool: str
    worker_concurrency: int
    worker_loglevel: str
    service_env: dict[str, dict[str, str]]
    django_settings: dict[str, dict[str, str]]
    no_events: bool
    keep_workdir: bool
    output: Path
    baseline: str | None  # a commit, or None: the working tree alone
    postgres_url: str | None  # an existing server, or None: a private one


@dataclass
class Sent:
    """One POST: when it was planned, sent and answered (epoch seconds), and its answer."""

    planned: float
    sent: float = 0.0
    answered: float = 0.0
    status: int = 0
    order_id: str | None = None
    error: str = ""


@dataclass
class Shop:
    gateway: RunningService
    catalog: RunningService
    users: RunningService
    orders: RunningService
    # Process groups whose CPU is reported, by label.
    groups: dict[str, list[int]] = field(default_factory=dict)
    consumers: bool = False


class BenchError(RuntimeError):
    pass


@dataclass
class Side:
    """One of the shops compared: the working tree's or the baseline commit's.

    ``pythonpath`` goes ahead of the venv's editable install of the working
    tree's ``common`` in every process of this side, so a worktree runs its own.
    What a run measured on this side accumulates in the fields after ``shop``.
    """

    name: str
    launcher: Any  # that source tree's tests.harness.ServiceLauncher
    pythonpath: list[str] = field(default_factory=list)
    shop: Shop | None = None
    tokens: list[str] = field(default_factory=list)
    products: list[int] = field(default_factory=list)
    db: OrdersDb | None = None
    meter: CpuMeter | None = None
    tap: EventTap | None = None
    commits: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    steps_stopped: str | None = None
    max_rate: float | None = None
    fixed_runs: list[Measured] = field(default_factory=list)
    open_sagas_at_fixed_start: int = 0
    fixed: dict[str, Any] = field(default_factory=dict)
    records: list[Sent] = field(default_factory=list)

    def running(self) -> tuple[Shop, OrdersDb, CpuMeter]:
        """The started shop, its orders database and its CPU meter."""
        if self.shop is None or self.db is None or self.meter is None:
            raise BenchError(f"[{self.name}] the shop was not started")
        return self.shop, self.db, self.meter

    @property
    def stepping(self) -> bool:
        return self.steps_stopped is None and all(step["keeps_up"] for step in self.steps)


# --- CPU time from /proc -----------------------------------------------------


def _proc_stats() -> Iterable[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # The command name may contain spaces and parentheses: split after the last ")".
        yield int(entry.name), raw[raw.rindex(")") + 2 :].split()


def _seconds(fields: list[str]) -> float:
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return (utime + stime + cutime + cstime) / CLOCK_TICKS


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def of_databases(title: str, database_names: Collection[str]) -> bool:
    """Whether a PostgreSQL process title is that of a backend ("postgres: <user> <db>
    127.0.0.1(port) idle") or an autovacuum worker ("postgres: autovacuum worker <db>")
    of one of these databases."""
    return any(f" {name} " in f"{title} " for name in database_names)


class CpuMeter:
    """CPU seconds per labelled group: process groups, this run's PostgreSQL backends, RabbitMQ.

    Reaped children are counted (cutime) so a replaced worker still shows up in
    its parent's figure. Deltas are taken per process, so one that ends between
    two snapshots (a PostgreSQL backend of a closed connection) drops out
    instead of making its group's figure negative.
    """

    def __init__(self, groups: dict[str, list[int]], database_names: Collection[str]) -> None:
        self.groups = groups
        self.database_names = [name for name in database_names if name]

    @property
    def labels(self) -> list[str]:
        return [*self.groups, "postgres", "rabbitmq", "bench client"]

    def snapshot(self) -> dict[tuple[str, int], float]:
        """CPU seconds per (label, pid)."""
        by_pgid = {pgid: label for label, pgids in self.groups.items() for pgid in pgids}
        found: dict[tuple[str, int], float] = {}
        me = os.getpid()
        for pid, fields in _proc_stats():
            pgid = int(fields[2])
            if pgid in by_pgid:
                found[by_pgid[pgid], pid] = _seconds(fields)
            elif pid == me:
                # Only utime+stime: the bench's reaped children are manage.py runs.
                found["bench client", pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            else:
                try:
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                except OSError:
                    continue
                if comm == "postgres":
                    if of_databases(_cmdline(pid), self.database_names):
                        found["postgres", pid] = _seconds(fields)
                elif comm == "beam.smp":
                    found["rabbitmq", pid] = _seconds(fields)
        return found

    def delta(
        self, before: dict[tuple[str, int], float], after: dict[tuple[str, int], float]
    ) -> dict[str, float]:
        """CPU seconds per label between two snapshots (processes alive at the second)."""
        totals = dict.fromkeys(self.labels, 0.0)
        for key, seconds in after.items():
            totals[key[0]] += seconds - before.get(key, 0.0)
        return totals


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return total - idle, total


# --- the shop ----------------------------------------------------------------


def _pid(service: RunningService) -> int:
    if service.process is None:
        raise BenchError(f"{service.name} is not running")
    return service.process.pid  # started in a new session: pid == process group id


def start_worker(service: RunningService, settings: Settings) -> subprocess.Popen[bytes]:
    """The service's Celery worker as tests/harness.py starts it, with the pool asked for."""
    queue = service.env.get("QUEUE_PREFIX", "") + service.name
    log = (service.var_dir / "worker.log").open("ab")
    worker = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            f"{service.name}_svc",
            "worker",
            "-Q",
            queue,
            "-n",
            f"{queue}@%h",
            "-P",
            settings.worker_pool,
            "-c",
            str(settings.worker_concurrency),
            "-l",
            settings.worker_loglevel,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=service.project_dir,
        env=service.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    service.extra.setdefault("workers", []).append(worker)
    return worker


def start_manage(service: RunningService, *args: str) -> subprocess.Popen[bytes]:
    """A long-running manage.py command (relay, consumer, watchdog), stopped with the workers."""
    if hasattr(service, "start_manage"):
        return service.start_manage(*args)
    log = (service.var_dir / f"{args[0]}.log").open("ab")
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "manage.py", *args],
        cwd=service.project_dir,
        env=service.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    service.extra.setdefault("workers", []).append(process)
    return process


def event_handlers(service: RunningService) -> dict[str, str]:
    output = service.manage(
        "shell",
        "-c",
        "import json; from django.conf import settings; "
        "print(json.dumps(getattr(settings, 'EVENT_HANDLERS', {})))",
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def settings_overrides(
    workdir: Path, django_settings: dict[str, dict[str, str]]
) -> dict[str, dict[str, str]]:
    """Environment that makes a service load its settings plus ``--setting`` overrides.

    For trying a settings change without editing the service: a module in the
    temp dir star-imports the service's settings and assigns the values.
    """
    if not django_settings:
        return {}
    folder = workdir / "bench_settings"
    folder.mkdir(exist_ok=True)
    env: dict[str, dict[str, str]] = {}
    for service, values in django_settings.items():
        module = f"bench_{service}_settings"
        lines = [f"from {service}_svc.settings import *  # noqa: F403"]
        lines += [f"{name} = {value}" for name, value in values.items()]
        (folder / f"{module}.py").write_text("\n".join(lines) + "\n")
        path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH", "")]))
        env[service] = {"DJANGO_SETTINGS_MODULE": module, "PYTHONPATH": path}
    return env


def start_shop(settings: Settings, launcher: ServiceLauncher, pythonpath: list[str]) -> Shop:
    port = free_port()
    verifier = {"JWT_JWKS_URL": f"http://127.0.0.1:{port}/.well-known/jwks.json"}
    base = {"ACCESS_LOG": "false", "WEB_CONCURRENCY": str(settings.web_workers)}
    overrides = settings_overrides(launcher.workdir, settings.django_settings)

    def env(name: str, **extra: str) -> dict[str, str]:
        # The gateway signs with its own key; the others fetch its public keys (JWKS).
        own = {} if name == "gateway" else verifier
        values = {
            **base,
            **own,
            **extra,
            **overrides.get(name, {}),
            **settings.service_env.get(name, {}),
        }
        if pythonpath:  # the baseline's own source ahead of the working tree's install
            inherited = values.get("PYTHONPATH") or os.environ.get("PYTHONPATH", "")
            values["PYTHONPATH"] = os.pathsep.join(filter(None, [*pythonpath, inherited]))
        return values

    catalog = launcher.start("catalog", seed=True, env=env("catalog"))
    catalog.manage(
        "shell",
        "-c",
        "from catalog.models import Stock; "
        f"Stock.objects.update(on_hand={STOCK_UNITS}, reserved=0)",
    )
    users = launcher.start("users", env=env("users", CUSTOMER_DEFAULT_CREDIT_LIMIT=CREDIT_LIMIT))
    orders = launcher.start("orders", env=env("orders"))
    gateway = launcher.start(
        "gateway",
        port=port,
        env={
            **env("gateway"),
            "WEB_CONCURRENCY": str(settings.gateway_workers),
            "CATALOG_URL": catalog.url,
            "USERS_URL": users.url,
            "ORDERS_URL": orders.url,
            "GATEWAY_RATE_LIMIT_AUTHENTICATED": "100000000/min",
            "LOGIN_RATE_PER_IP": "100000/min",
            **settings.service_env.get("gateway", {}),
        },
    )
    shop = Shop(gateway=gateway, catalog=catalog, users=users, orders=orders)
    shop.groups = {
        "gateway": [_pid(gateway)],
        "orders web": [_pid(orders)],
        "catalog web": [_pid(catalog)],
        "users web": [_pid(users)],
    }
    for service in (orders, catalog, users):
        worker = start_worker(service, settings)
        shop.groups[f"{service.name} worker"] = [worker.pid]
    shop.groups["orders watchdog"] = [start_manage(orders, "saga_watchdog").pid]
    if settings.no_events:
        return shop
    shop.groups["orders relay"] = [start_manage(orders, "outbox_relay").pid]
    consumers: list[int] = []
    for service in (catalog, users):
        # Started whatever events it handles: its idle work is part of the shop's cost,
        # and a rejection's compensation may be its job (it is since #16's second step).
        if not event_handlers(service):
            print(f"{service.name}: no EVENT_HANDLERS: no consumer", flush=True)
            continue
        consumers.append(start_manage(service, "consume_events").pid)
    if consumers:
        shop.groups["consumers"] = consumers
        shop.consumers = True
    return shop


def quick_customers(shop: Shop, count: int) -> list[str]:
    """Customers created in users_svc without a password (no slow hashing), with access tokens
    signed by the gateway's own key, as a login would issue them (tests/test_saga.py)."""
    created = (
        shop.users.manage(
            "shell",
            "-c",
            "import uuid; from accounts.models import User; "
            f"print(*[User.objects.create_user(f'{{uuid.uuid4().hex}}@example.com').pk "
            f"for _ in range({count})], sep=',')",
        )
        .stdout.strip()
        .splitlines()[-1]
        .split(",")
    )
    if len(created) != count:
        raise BenchError(f"asked for {count} customers, got {len(created)}")
    key = (shop.gateway.var_dir / "jwt" / "private.pem").read_bytes()
    kid = httpx.get(f"{shop.gateway.url}/.well-known/jwks.json").json()["keys"][0]["kid"]
    now = int(time.time())
    return [
        "Bearer "
        + jwt.encode(
            {
                "sub": user_id,
                "email": "",
                "name": "",
                "is_staff": False,
                "roles": ["customer"],
                "token_type": "access",
                "iat": now,
                "exp": now + TOKEN_SECONDS,
                "jti": uuid.uuid4().hex,
                "iss": "eshop-gateway",
                "aud": "eshop",
            },
            key,
            algorithm="RS256",
            headers={"kid": kid},
        )
        for user_id in created
    ]


def product_ids(shop: Shop) -> list[int]:
    response = httpx.get(f"{shop.catalog.url}/api/catalog/products/?page_size=100", timeout=10)
    ids = [product["id"] for product in response.json()["results"]]
    if not ids:
        raise BenchError("the seeded catalog lists no products")
    return ids


# --- open-loop load ----------------------------------------------------------


async def _place(
    session: aiohttp.ClientSession, url: str, token: str, product_id: int, record: Sent
) -> None:
    body = {"lines": [{"product_id": product_id, "quantity": 1}]}
    record.sent = time.time()
    try:
        async with session.post(url, json=body, headers={"Authorization": token}) as response:
            record.status = response.status
            payload = await response.read()
            record.answered = time.time()
            if response.status == 202:
                record.order_id = json.loads(payload)["id"]
            else:
                record.error = payload[:200].decode(errors="replace")
    except (aiohttp.ClientError, TimeoutError) as error:
        record.answered = time.time()
        record.error = repr(error)


async def _open_loop(
    url: str, rate: float, duration: float, tokens: list[str], products: list[int]
) -> list[Sent]:
    connector = aiohttp.TCPConnector(limit=1024, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=60)
    chooser = random.Random(7)  # noqa: S311 - not security
    count = max(1, round(rate * duration))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # One request first, so connection set-up is not part of the schedule.
        async with session.get(url.replace("/api/orders/", "/health/")) as response:
            await response.read()
        loop = asyncio.get_running_loop()
        start_loop, start_wall = loop.time() + 0.05, time.time() + 0.05
        records: list[Sent] = []
        tasks = []
        for index in range(count):
            offset = index / rate
            delay = start_loop + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            record = Sent(planned=start_wall + offset)
            records.append(record)
            tasks.append(
                asyncio.create_task(
                    _place(session, url, chooser.choice(tokens), chooser.choice(products), record)
                )
            )
        await asyncio.gather(*tasks)
    return records


def open_loop(shop: Shop, rate: float, duration: float, tokens: list[str], products: list[int]):
    return asyncio.run(
        _open_loop(f"{shop.gateway.url}/api/orders/", rate, duration, tokens, products)
    )


# --- reading the outcome -----------------------------------------------------


class OrdersDb:
    """The orders database, read directly after (or between) runs."""

    def __init__(self, url: str) -> None:
        self.connection = psycopg2.connect(url)
        self.connection.autocommit = True
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'orders_orderevent'"
            )
            columns = {row[0] for row in cursor.fetchall()}
        self.has_event_id = "event_id" in columns
        self.has_published_at = "published_at" in columns

    def settled(self, order_ids: list[str]) -> dict[str, tuple[str, float]]:
        """Terminal event (type, occurred_at epoch) per order that has one."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT order_id::text, type, occurred_at FROM orders_orderevent "
                "WHERE order_id = ANY(%s::uuid[]) AND type = ANY(%s)",
                (order_ids, list(TERMINAL)),
            )
            return {row[0]: (row[1], row[2].timestamp()) for row in cursor.fetchall()}

    def events(self, order_ids: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """Every event of the orders: {order_id: {type: {occurred_at, event_id, published_at}}}."""
        extra = ", event_id::text" if self.has_event_id else ", NULL"
        extra += ", published_at" if self.has_published_at else ", NULL"
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT order_id::text, type, occurred_at{extra} FROM orders_orderevent "  # noqa: S608
                "WHERE order_id = ANY(%s::uuid[])",
                (order_ids,),
            )
            found: dict[str, dict[str, dict[str, Any]]] = {}
            for order_id, event_type, occurred_at, event_id, published_at in cursor.fetchall():
                found.setdefault(order_id, {})[event_type] = {
                    "occurred_at": occurred_at.timestamp(),
                    "event_id": event_id,
                    "published_at": published_at.timestamp() if published_at else None,
                }
            return found

    def open_sagas(self) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM orders_saga WHERE state <> 'done'")
            return int(cursor.fetchone()[0])

    def wait_idle(self, timeout: float) -> int:
        """Wait until no saga is open (or ``timeout``); returns how many still are."""
        deadline = time.monotonic() + timeout
        while (waiting := self.open_sagas()) and time.monotonic() < deadline:
            time.sleep(0.25)
        return waiting

    def close(self) -> None:
        self.connection.close()


def wait_settled(
    db: OrdersDb, order_ids: list[str], timeout: float
) -> dict[str, tuple[str, float]]:
    deadline = time.monotonic() + timeout
    while True:
        settled = db.settled(order_ids)
        if len(settled) == len(order_ids) or time.monotonic() >= deadline:
            return settled
        time.sleep(0.25)


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (``share`` in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(share * len(ordered))))
    return ordered[rank - 1]


def _ms(value: float | None) -> float | None:
    return round(value * 1000, 2) if value is not None else None


def summarize_run(
    records: list[Sent], settled: dict[str, tuple[str, float]], rate: float
) -> dict[str, Any]:
    """Latency (send to approval), outcomes and how well the client kept its schedule."""
    accepted = [record for record in records if record.order_id]
    outcomes = {"approved": 0, "rejected": 0, "stuck": 0}
    latency: list[float] = []
    settle_times: list[float] = []
    ordered = sorted(accepted, key=lambda record: record.sent)
    for record in ordered:
        outcome = settled.get(record.order_id or "")
        if outcome is None:
            outcomes["stuck"] += 1
            continue
        kind, at = outcome
        settle_times.append(at)
        if kind == "order.approved":
            outcomes["approved"] += 1
            latency.append(at - record.sent)
        else:
            outcomes["rejected"] += 1
    third = max(1, len(latency) // 3)
    lags = [record.sent - record.planned for record in records]
    post = [record.answered - record.sent for record in accepted]
    first_send = min((record.sent for record in records), default=0.0)
    last_send = max((record.sent for record in records), default=0.0)
    last_settled = max(settle_times, default=None)
    span = (last_settled - first_send) if last_settled else None
    return {
        "rate": rate,
        "sent": len(records),
        "accepted": len(accepted),
        "errors": len(records) - len(accepted),
        "error_sample": next((r.error or str(r.status) for r in records if not r.order_id), None),
        **outcomes,
        "p50_ms": _ms(percentile(latency, 0.5)),
        "p90_ms": _ms(percentile(latency, 0.9)),
        "p99_ms": _ms(percentile(latency, 0.99)),
        "max_ms": _ms(max(latency, default=None)),
        "first_third_p50_ms": _ms(percentile(latency[:third], 0.5)),
        "last_third_p50_ms": _ms(percentile(latency[-third:], 0.5)),
        "post_p50_ms": _ms(percentile(post, 0.5)),
        "post_p99_ms": _ms(percentile(post, 0.99)),
        "send_lag_p99_ms": _ms(percentile(lags, 0.99)),
        "drain_s": round(last_settled - last_send, 3) if last_settled else None,
        "completed_per_s": round(len(settle_times) / span, 1) if span else None,
    }


def reservation_times(
    service: RunningService, table: str, order_ids: list[str]
) -> dict[str, tuple[float, float]]:
    """(created_at, updated_at) epoch of a participant's reservation row per order.

    created_at is the reserve's insert; updated_at the last change (commit or capture).
    """
    connection = psycopg2.connect(service.env["DATABASE_URL"])
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT order_id::text, created_at, updated_at FROM {table} "  # noqa: S608
                "WHERE order_id = ANY(%s::uuid[])",
                (order_ids,),
            )
            return {row[0]: (row[1].timestamp(), row[2].timestamp()) for row in cursor.fetchall()}
    finally:
        connection.close()


def step_breakdown(
    shop: Shop, events: dict[str, dict[str, dict[str, Any]]], records: list[Sent]
) -> dict[str, Any]:
    """p50/p99 ms of each stretch of an approved saga, from the client's send to approval.

    Each round trip is split at the participant's row (its insert for a
    reserve, its last update for commit/capture; where the participants
    settle on ``order.approved``, that update comes after the approval and is
    its own stretch, outside the saga's latency; where the reserves are final, as
    since #16's second step, there is no such update; on the routing slip, users'
    answer appends stock_reserved and credit_reserved together, so "placed →
    stock_reserved" holds both round trips): "out" is the orders commit,
    the command's publish, the broker and the participant's worker up to its
    write; "back" is the participant's commit, the reply and the orders worker
    up to its event's insert.
    """
    sent = {record.order_id: record.sent for record in records if record.order_id}
    approved = [i for i, by_type in events.items() if "order.approved" in by_type and i in sent]
    stock = reservation_times(shop.catalog, "catalog_stockreservation", approved)
    credit = reservation_times(shop.users, "accounts_creditreservation", approved)
    stretches: dict[str, list[float]] = {
        "send → placed (HTTP, gateway, orders POST)": [],
        "placed → stock_reserved (catalog round trip)": [],
        "  out: placed → catalog reserve row": [],
        "  back: catalog row → stock_reserved": [],
        "stock_reserved → credit_reserved (users round trip)": [],
        "  out: stock_reserved → users reserve row": [],
        "  back: users row → credit_reserved": [],
        "credit_reserved → approved (commit + capture)": [],
        "  out: credit_reserved → last commit/capture row": [],
        "  back: last row → approved": [],
        "approved → participants settled (on order.approved)": [],
        "send → approved (total)": [],
    }
    for order_id in approved:
        at = {step: events[order_id][step]["occurred_at"] for step in STEP_EVENTS}
        if order_id not in stock or order_id not in credit:
            continue
        last_row = max(stock[order_id][1], credit[order_id][1])
        points = [
            ("send → placed (HTTP, gateway, orders POST)", sent[order_id], at["order.placed"]),
            (
                "placed → stock_reserved (catalog round trip)",
                at["order.placed"],
                at["order.stock_reserved"],
            ),
            ("  out: placed → catalog reserve row", at["order.placed"], stock[order_id][0]),
            (
                "  back: catalog row → stock_reserved",
                stock[order_id][0],
                at["order.stock_reserved"],
            ),
            (
                "stock_reserved → credit_reserved (users round trip)",
                at["order.stock_reserved"],
                at["order.credit_reserved"],
            ),
            (
                "  out: stock_reserved → users reserve row",
                at["order.stock_reserved"],
                credit[order_id][0],
            ),
            (
                "  back: users row → credit_reserved",
                credit[order_id][0],
                at["order.credit_reserved"],
            ),
            (
                "credit_reserved → approved (commit + capture)",
                at["order.credit_reserved"],
                at["order.approved"],
            ),
            ("send → approved (total)", sent[order_id], at["order.approved"]),
        ]
        if last_row <= at["order.credit_reserved"]:
            pass  # the reserves were final (taken and spent): nothing after them
        elif last_row <= at["order.approved"]:  # commit and capture commands before approval
            points += [
                (
                    "  out: credit_reserved → last commit/capture row",
                    at["order.credit_reserved"],
                    last_row,
                ),
                ("  back: last row → approved", last_row, at["order.approved"]),
            ]
        else:  # the participants commit and capture when order.approved reaches them
            points.append(
                (
                    "approved → participants settled (on order.approved)",
                    at["order.approved"],
                    last_row,
                )
            )
        for name, start, end in points:
            stretches[name].append(end - start)
    return {
        name: {"p50_ms": _ms(percentile(values, 0.5)), "p99_ms": _ms(percentile(values, 0.99))}
        for name, values in stretches.items()
    }


# --- events: the bench's tap and the consumers' inboxes -------------------------


class EventTap:
    """A plain kombu consumer of ``order.approved`` on the shop's exchange, in a thread.

    Records when each event id arrives (epoch seconds); it does nothing else,
    so the figure is relay + broker delivery without a handler's transaction.
    """

    def __init__(self, prefix: str) -> None:
        self.exchange = Exchange(f"{prefix}events", type="topic", durable=True)
        self.queue = Queue(
            f"{prefix}bench.events",
            exchange=self.exchange,
            routing_key="order.approved",
            durable=True,
            auto_delete=False,
        )
        self.arrived: dict[str, float] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-tap", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise BenchError("the event tap could not bind its queue")

    def _run(self) -> None:
        with Connection(BROKER_URL, heartbeat=0) as connection:
            channel = connection.channel()
            self.exchange(channel).declare()
            self.queue(channel).declare()

            def on_message(body: Any, message: Any) -> None:
                now = time.time()
                event_id = message.properties.get("message_id")
                if event_id is None and isinstance(body, dict):
                    event_id = body.get("id")
                self.arrived[str(event_id)] = now
                message.ack()

            with Consumer(channel, queues=[self.queue], callbacks=[on_message], accept=["json"]):
                self._ready.set()
                while not self._stop.is_set():
                    try:
                        connection.drain_events(timeout=0.5)
                    except TimeoutError:
                        continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def inbox_times(service: RunningService, event_ids: list[str]) -> dict[str, float]:
    """processed_at (epoch) of this service's inbox rows for the event ids."""
    connection = psycopg2.connect(service.env["DATABASE_URL"])
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT message_id::text, processed_at FROM common_inboxmessage "
                "WHERE message_id = ANY(%s::uuid[])",
                (event_ids,),
            )
            return {row[0]: row[1].timestamp() for row in cursor.fetchall()}
    finally:
        connection.close()


def delivery_figures(deltas: list[float]) -> dict[str, Any]:
    return {
        "count": len(deltas),
        "p50_ms": _ms(percentile(deltas, 0.5)),
        "p99_ms": _ms(percentile(deltas, 0.99)),
        "max_ms": _ms(max(deltas, default=None)),
    }


def event_delivery(
    shop: Shop,
    events: dict[str, dict[str, dict[str, Any]]],
    tap: EventTap | None,
    wait: float = 10.0,
) -> dict[str, Any]:
    approved = {
        by_type["order.approved"]["event_id"]: by_type["order.approved"]
        for by_type in events.values()
        if "order.approved" in by_type and by_type["order.approved"]["event_id"]
    }
    result: dict[str, Any] = {"approved_events": len(approved)}
    if not approved:
        result["note"] = "orders' events have no event_id yet (no outbox): nothing to measure"
        return result
    ids = list(approved)
    deadline = time.monotonic() + wait
    result["relay_lag"] = delivery_figures(
        [e["published_at"] - e["occurred_at"] for e in approved.values() if e["published_at"]]
    )
    if tap is not None:
        while len(set(ids) & tap.arrived.keys()) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.2)
        result["tap"] = delivery_figures(
            [tap.arrived[i] - approved[i]["occurred_at"] for i in ids if i in tap.arrived]
        )
    if shop.consumers:
        for service in (shop.catalog, shop.users):
            # A participant that no longer consumes order.approved (the reserves are
            # final since #16's second step) records none: not waited for, not reported.
            idle_until = time.monotonic() + 3
            while time.monotonic() < deadline:
                handled = inbox_times(service, ids)
                if len(handled) == len(ids) or (not handled and time.monotonic() > idle_until):
                    break
                time.sleep(0.2)
            handled = inbox_times(service, ids)
            if handled:
                result[f"{service.name}_inbox"] = delivery_figures(
                    [handled[i] - approved[i]["occurred_at"] for i in ids if i in handled]
                )
    return result


# --- kombu floor -----------------------------------------------------------------


def kombu_floor(prefix: str, messages: int) -> dict[str, Any]:
    """Publish (persistent, confirmed) → consume on another connection, one message at a time."""
    queue = Queue(f"{prefix}bench.floor", durable=True, auto_delete=False)
    arrived: dict[int, float] = {}
    ready, stop, got = threading.Event(), threading.Event(), threading.Event()

    def consume() -> None:
        with Connection(BROKER_URL, heartbeat=0) as connection:
            channel = connection.channel()

            def on_message(body: Any, message: Any) -> None:
                arrived[int(message.headers["n"])] = time.perf_counter()
                message.ack()
                got.set()

            with Consumer(channel, queues=[queue], callbacks=[on_message], accept=["json"]):
                ready.set()
                while not stop.is_set():
                    try:
                        connection.drain_events(timeout=0.2)
                    except TimeoutError:
                        continue

    publisher = Connection(
        BROKER_URL, transport_options={"confirm_publish": True}, heartbeat=0, connect_timeout=5
    )
    thread = threading.Thread(target=consume, name="kombu-floor", daemon=True)
    round_trips: list[float] = []
    confirms: list[float] = []
    try:
        channel = publisher.channel()
        queue(channel).declare()
        producer = Producer(channel)
        thread.start()
        if not ready.wait(10):
            raise BenchError("kombu floor: the consumer did not start")
        body = json.dumps({"id": str(uuid.uuid4()), "type": "bench.floor", "data": {"x": 1}})
        for n in range(messages + 20):  # the first 20 warm up
            got.clear()
            start = time.perf_counter()
            producer.publish(
                body,
                exchange="",
                routing_key=queue.name,
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=PERSISTENT_DELIVERY_MODE,
                headers={"n": n},
                confirm_timeout=10,
            )
            confirmed = time.perf_counter()
            if not got.wait(5):
                raise BenchError("kombu floor: a message did not come back within 5 s")
            if n >= 20:
                round_trips.append(arrived[n] - start)
                confirms.append(confirmed - start)
            time.sleep(0.002)
    finally:
        stop.set()
        thread.join(timeout=5)
        try:
            queue(publisher.channel()).delete()
        finally:
            publisher.release()
    return {
        "messages": len(round_trips),
        "p50_ms": _ms(percentile(round_trips, 0.5)),
        "p99_ms": _ms(percentile(round_trips, 0.99)),
        "publish_confirm_p50_ms": _ms(percentile(confirms, 0.5)),
    }


# --- PostgreSQL commit floor ---------------------------------------------------------


def commit_floor(database_url: str, commits: int = 200) -> dict[str, Any]:
    """One-row INSERT + COMMIT on a scratch table, as the services commit (synchronous_commit on).

    Every saga step commits at least once on its critical path, so the time a
    commit waits for its WAL flush is a floor under each step. On a shared
    machine it swings with the disk traffic of other databases (CREATE DATABASE
    of other test runs), which is why it is measured in the run.
    """
    connection = psycopg2.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS bench_commit_probe (x int)")
            connection.commit()
            timings = []
            for _ in range(commits):
                start = time.perf_counter()
                cursor.execute("INSERT INTO bench_commit_probe VALUES (1)")
                connection.commit()
                timings.append(time.perf_counter() - start)
                time.sleep(0.002)
            cursor.execute("DROP TABLE bench_commit_probe")
            connection.commit()
    finally:
        connection.close()
    return {
        "commits": commits,
        "p50_ms": _ms(percentile(timings, 0.5)),
        "p90_ms": _ms(percentile(timings, 0.9)),
        "p99_ms": _ms(percentile(timings, 0.99)),
    }


# --- phases ------------------------------------------------------------------------


@dataclass
class Measured:
    """What one open-loop run measured, before it is summed up: the fixed rate adds up
    several of them (``--fixed-slices``)."""

    records: list[Sent]
    settled: dict[str, tuple[str, float]]
    cpu: dict[str, float]  # CPU seconds per process group
    busy: float  # jiffies the machine's cores were busy
    jiffies: float  # all jiffies of the machine's cores meanwhile
    elapsed: float  # s


def measure(
    shop: Shop,
    db: OrdersDb,
    meter: CpuMeter,
    settings: Settings,
    rate: float,
    duration: float,
    tokens: list[str],
    products: list[int],
) -> Measured:
    """An open-loop run, and every order of it settled (or ``--settle`` s passed)."""
    cpu_before, busy_before, started = meter.snapshot(), machine_busy(), time.monotonic()
    records = open_loop(shop, rate, duration, tokens, products)
    order_ids = [record.order_id for record in records if record.order_id]
    settled = wait_settled(db, order_ids, settings.settle)
    cpu_after, busy_after, elapsed = meter.snapshot(), machine_busy(), time.monotonic() - started
    return Measured(
        records=records,
        settled=settled,
        cpu=meter.delta(cpu_before, cpu_after),
        busy=busy_after[0] - busy_before[0],
        jiffies=busy_after[1] - busy_before[1],
        elapsed=elapsed,
    )


def summarize_runs(runs: list[Measured], rate: float) -> dict[str, Any]:
    """One summary of runs of one side at one rate: latencies over all their orders, CPU
    over all their orders; the drain is the slowest run's, orders settled per second
    the runs' together over their time from first send to last settle."""
    records = [record for run in runs for record in run.records]
    settled = {order_id: outcome for run in runs for order_id, outcome in run.settled.items()}
    summary = summarize_run(records, settled, rate)
    if len(runs) > 1:
        parts = [summarize_run(run.records, run.settled, rate) for run in runs]
        drains = [part["drain_s"] for part in parts]
        summary["drain_s"] = None if None in drains else max(drains)
        done = summary["approved"] + summary["rejected"]
        spans = [
            (part["approved"] + part["rejected"]) / part["completed_per_s"]
            for part in parts
            if part["completed_per_s"]
        ]
        summary["completed_per_s"] = round(done / sum(spans), 1) if spans else None
        summary["slices"] = len(runs)
    orders = max(1, sum(1 for record in records if record.order_id))
    cpu = {label: sum(run.cpu[label] for run in runs) for label in runs[0].cpu}
    summary["cpu_ms_per_order"] = {
        label: round(seconds * 1000 / orders, 2) for label, seconds in cpu.items()
    }
    summary["cpu_ms_per_order_total"] = round(
        sum(v for k, v in summary["cpu_ms_per_order"].items() if k != "rabbitmq"), 2
    )
    busy, total = sum(run.busy for run in runs), sum(run.jiffies for run in runs)
    elapsed = sum(run.elapsed for run in runs)
    summary["machine_busy"] = round(busy / total, 3) if total else None
    # Cores the shop used and cores everything else on the machine used meanwhile (other
    # people's tests on a shared machine): a run with "others" well above 0 is skewed.
    cores = os.cpu_count() or 1
    shop_seconds = sum(cpu.values())
    summary["shop_cores"] = round(shop_seconds / elapsed, 2)
    summary["other_cores"] = (
        round(busy / total * cores - shop_seconds / elapsed, 2) if total else None
    )
    # What the machine could do if the shop had every core to itself: cores / CPU per
    # order. Without RabbitMQ: the broker is shared, and at low rates its own idle
    # work and other runs' messages would swamp the figure.
    per_order = (shop_seconds - cpu["rabbitmq"]) / orders
    summary["cpu_bound_orders_per_s"] = round(cores / per_order, 1) if per_order else None
    return summary


def keeps_up(step: dict[str, Any], settings: Settings) -> tuple[bool, str]:
    if step["errors"] > 0.01 * step["sent"]:
        return False, f"{step['errors']} POSTs failed ({step['error_sample']})"
    if step["stuck"]:
        return False, f"{step['stuck']} orders unsettled after {settings.settle:.0f} s"
    if step["drain_s"] is None or step["drain_s"] > settings.max_drain:
        return False, f"backlog took {step['drain_s']} s to drain"
    first, last = step["first_third_p50_ms"], step["last_third_p50_ms"]
    if first is not None and last is not None and last > 2 * first + 50:
        return False, f"latency grew through the step (p50 {first} → {last} ms)"
    return True, ""


# What of the PostgreSQL server's settings changes the figures (recorded with them).
POSTGRES_SETTINGS = (
    "server_version",
    "autovacuum",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "shared_buffers",
    "max_connections",
)


def postgres_info(url: str, *, private: bool) -> dict[str, Any]:
    connection = psycopg2.connect(url.rstrip("/") + "/postgres", connect_timeout=5)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY(%s)",
                [list(POSTGRES_SETTINGS)],
            )
            found = dict(cursor.fetchall())
    finally:
        connection.close()
    return {"private": private, **{name: found.get(name) for name in POSTGRES_SETTINGS}}


def machine_info(settings: Settings) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return {
        "cpu": model.group(1) if model else platform.processor(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        # Other work on the machine skews every figure: check it was quiet.
        "loadavg_at_start": [round(value, 2) for value in os.getloadavg()],
        "postgres": postgres_info(
            os.environ["TEST_POSTGRES_URL"], private=settings.postgres_url is None
        ),
    }


def _cell(value: float | None, width: int, digits: int = 1) -> str:
    return f"{value:{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


def print_tables(results: dict[str, Any]) -> None:
    fixed = results["fixed_rate"]
    print()
    print(f"Saga at {fixed['rate']:.0f} orders/s for {fixed['sent']} orders (open loop):")
    print(
        f"  send→APPROVED p50 {fixed['p50_ms']} ms  p90 {fixed['p90_ms']} ms  "
        f"p99 {fixed['p99_ms']} ms  max {fixed['max_ms']} ms"
    )
    print(
        f"  approved {fixed['approved']}  rejected {fixed['rejected']}  stuck {fixed['stuck']}  "
        f"POST errors {fixed['errors']}  POST→202 p50 {fixed['post_p50_ms']} ms"
    )
    print(
        f"  CPU {fixed['cpu_ms_per_order_total']} ms per order (without RabbitMQ), "
        f"{fixed['shop_cores']} cores used by the shop, {fixed['other_cores']} by others; "
        f"CPU-bound capacity {fixed['cpu_bound_orders_per_s']} orders/s"
    )
    print("  where the time goes (p50 / p99 ms):")
    for name, figures in results["breakdown"].items():
        print(f"    {name:<54} {_cell(figures['p50_ms'], 7)} {_cell(figures['p99_ms'], 8)}")
    steps = results["steps"]
    if steps:
        print()
        print(
            f"{'rate':>5} {'sent':>5} {'done/s':>7} {'p50':>7} {'p99':>8} {'drain s':>8} "
            f"{'busy':>5} {'others':>6} {'CPU/ord':>8} {'cap/s':>6}  keeps up"
        )
        for step in steps:
            print(
                f"{step['rate']:5.0f} {step['sent']:5d} {_cell(step['completed_per_s'], 7)} "
                f"{_cell(step['p50_ms'], 7)} {_cell(step['p99_ms'], 8)} "
                f"{_cell(step['drain_s'], 8, 2)} {_cell(step['machine_busy'], 5, 2)} "
                f"{_cell(step['other_cores'], 6, 2)} "
                f"{_cell(step['cpu_ms_per_order_total'], 8, 2)} "
                f"{_cell(step['cpu_bound_orders_per_s'], 6, 0)}  "
                f"{'yes' if step['keeps_up'] else 'NO: ' + step['why_not']}"
            )
        print(
            "busy: share of all cores in use; others: cores used by processes not of this "
            "shop; cap/s: cores / CPU/ord (what the shop could do alone on the machine)"
        )
    if results["steps_stopped"]:
        print(f"steps stopped: {results['steps_stopped']}")
    labels = list(fixed["cpu_ms_per_order"])
    print("\nCPU ms per order by process group (rabbitmq: the whole broker, not in CPU/ord):")
    print(f"{'rate':>7} " + " ".join(f"{label[:11]:>11}" for label in labels))
    for name, run in [("fixed", fixed), *((f"{step['rate']:.0f}", step) for step in steps)]:
        cells = " ".join(_cell(run["cpu_ms_per_order"][label], 11, 2) for label in labels)
        print(f"{name:>7} {cells}")
    events = results["events"]
    print()
    print(
        f"max_orders_per_s {results['max_orders_per_s']}   kombu floor p50 "
        f"{results['kombu_floor_ms']} ms (p99 {results['kombu']['p99_ms']} ms)"
    )
    print(
        f"event delivery commit→consumer ({results['event_source']}): "
        f"p50 {results['event_p50_ms']} ms  p99 {results['event_p99_ms']} ms"
    )
    commits = results["commit_floor"]
    print(
        "PostgreSQL INSERT+COMMIT floor p50/p99: "
        + ", ".join(f"{when} {c['p50_ms']}/{c['p99_ms']} ms" for when, c in commits.items())
    )
    for name in ("relay_lag", "tap", "catalog_inbox", "users_inbox"):
        if name in events:
            figures = events[name]
            print(
                f"  {name:<14} p50 {figures['p50_ms']} ms  p99 {figures['p99_ms']} ms  "
                f"({figures['count']} events)"
            )


def prepare_side(side: Side, settings: Settings) -> None:
    """Start the side's shop, its customers and what measures it."""
    print(f"[{side.name}] starting gateway, catalog (seeded), users, orders, workers, relay...")
    prefix = side.launcher.queue_prefix
    if not settings.no_events:
        side.tap = EventTap(prefix)
        side.tap.start()  # binds its queue before any event is published
    side.shop = start_shop(settings, side.launcher, side.pythonpath)
    side.tokens = quick_customers(side.shop, settings.customers)
    side.products = product_ids(side.shop)
    side.db = OrdersDb(side.shop.orders.env["DATABASE_URL"])
    side.meter = CpuMeter(
        side.shop.groups,
        [s.database_name for s in (side.shop.catalog, side.shop.users, side.shop.orders)],
    )


def check_running(side: Side) -> None:
    for label, pgids in side.running()[0].groups.items():
        for pgid in pgids:
            if not Path(f"/proc/{pgid}").exists():
                raise BenchError(f"[{side.name}] {label} exited at start (see its log)")


def wait_all_idle(sides: list[Side], timeout: float) -> None:
    """No side runs while another still works off a backlog (it would take its CPU)."""
    for side in sides:
        side.running()[1].wait_idle(timeout)


def in_turn(sides: list[Side], round_index: int) -> list[Side]:
    """The sides in the order they run this round: who goes first alternates, so a drift
    of the machine's load through the run does not favour one side."""
    return sides if round_index % 2 == 0 else sides[::-1]


def run_step(side: Side, sides: list[Side], settings: Settings, rate: float) -> None:
    shop, db, meter = side.running()
    # A backlog left by the run before would be measured as this step's.
    waiting = db.wait_idle(settings.settle)
    wait_all_idle(sides, settings.settle)
    if waiting:
        side.steps_stopped = f"{waiting} sagas of the step before still open after the wait"
        print(f"  [{side.name}] {side.steps_stopped}: no more steps")
        return
    print(f"[{side.name}] step: {settings.step_duration:.0f} s at {rate:.0f}/s", flush=True)
    run = measure(
        shop, db, meter, settings, rate, settings.step_duration, side.tokens, side.products
    )
    step = summarize_runs([run], rate)
    ok, why = keeps_up(step, settings)
    step["keeps_up"], step["why_not"] = ok, why
    side.steps.append(step)
    print(
        f"  done/s {step['completed_per_s']}  p50 {step['p50_ms']} ms  "
        f"p99 {step['p99_ms']} ms  drain {step['drain_s']} s  busy {step['machine_busy']}"
        f"  {'keeps up' if ok else 'NO: ' + why}",
        flush=True,
    )
    if ok:
        side.max_rate = rate


# Unmeasured orders before each slice of the fixed rate, so that a slice starts warm, as
# the one block did after the steps: a side that sat idle while the other ran reopens its
# database connections older than CONN_MAX_AGE (60 s) on their next use, all at once (a
# shop opens about 20 a minute; a new connection and its first queries cost about 10 ms
# of CPU). Measured: it did not bring the working tree's PostgreSQL figure back from
# 8-9 to the 4 ms an order of the one-block run before it (bench/README.md).
SLICE_WARMUP_S = 1.5


def run_fixed_slice(side: Side, sides: list[Side], settings: Settings, index: int) -> None:
    """One of the fixed rate's ``--fixed-slices`` runs of this side (``side.fixed_runs``),
    after ``SLICE_WARMUP_S`` of unmeasured orders."""
    shop, db, meter = side.running()
    wait_all_idle(sides, settings.settle)
    open_loop(shop, settings.rate, SLICE_WARMUP_S, side.tokens, side.products)
    backlog = db.wait_idle(settings.settle)
    wait_all_idle(sides, settings.settle)
    seconds = settings.duration / settings.fixed_slices
    part = f" (slice {index + 1} of {settings.fixed_slices})" if settings.fixed_slices > 1 else ""
    print(f"[{side.name}] fixed rate: {seconds:.0f} s at {settings.rate:.0f}/s{part}", flush=True)
    side.fixed_runs.append(
        measure(shop, db, meter, settings, settings.rate, seconds, side.tokens, side.products)
    )
    side.open_sagas_at_fixed_start += backlog


def fixed_summed(side: Side, settings: Settings) -> None:
    """The fixed rate's figures from its slices (``side.fixed``, ``side.records``)."""
    side.fixed = summarize_runs(side.fixed_runs, settings.rate)
    side.fixed["open_sagas_at_start"] = side.open_sagas_at_fixed_start
    side.records = [record for run in side.fixed_runs for record in run.records]


def side_results(side: Side, settings: Settings, kombu: dict[str, Any]) -> dict[str, Any]:
    """One side's figures, as the bench wrote them before it had a baseline mode."""
    shop, db, _ = side.running()
    fixed, steps, max_rate = side.fixed, side.steps, side.max_rate
    events_of_run = db.events([r.order_id for r in side.records if r.order_id])
    breakdown = step_breakdown(shop, events_of_run, side.records)
    events = event_delivery(shop, events_of_run, side.tap)
    if shop.consumers and "catalog_inbox" in events:
        source, headline = "catalog inbox (consume_events)", events["catalog_inbox"]
    elif "tap" in events:
        source, headline = "bench tap (relay → broker → plain kombu consumer)", events["tap"]
    else:
        source, headline = "not measured", {"p50_ms": None, "p99_ms": None}
    commits = side.commits
    return {
        "rate": settings.rate,
        "p50_ms": fixed["p50_ms"],
        "p99_ms": fixed["p99_ms"],
        # All processes of the shop but RabbitMQ, at the fixed rate.
        "cpu_ms_per_order": fixed["cpu_ms_per_order_total"],
        "max_orders_per_s": max_rate,
        # The most orders settled per second in any step, kept up or not: the ceiling.
        "peak_completed_per_s": max(
            (step["completed_per_s"] or 0 for step in [fixed, *steps]), default=None
        ),
        "event_p50_ms": headline["p50_ms"],
        "event_p99_ms": headline["p99_ms"],
        "kombu_floor_ms": kombu["p50_ms"],
        "commit_floor_ms": commits["before"]["p50_ms"],
        "event_source": source,
        "event_tap_p50_ms": events.get("tap", {}).get("p50_ms"),
        "event_tap_p99_ms": events.get("tap", {}).get("p99_ms"),
        "targets": {
            "p50_ms<=100": fixed["p50_ms"] is not None and fixed["p50_ms"] <= 100,
            "p99_ms<=300": fixed["p99_ms"] is not None and fixed["p99_ms"] <= 300,
            "max_orders_per_s>=100": max_rate is not None and max_rate >= 100,
            "event_p50_ms<=20": headline["p50_ms"] is not None and headline["p50_ms"] <= 20,
            "event_p50<=5x_kombu": headline["p50_ms"] is not None
            and kombu["p50_ms"] is not None
            and headline["p50_ms"] <= 5 * kombu["p50_ms"],
        },
        "fixed_rate": fixed,
        "breakdown": breakdown,
        "steps": steps,
        "steps_stopped": side.steps_stopped,
        "events": events,
        "kombu": kombu,
        "commit_floor": commits,
        "settings": {
            "duration_s": settings.duration,
            "warmup_s": settings.warmup,
            "step_duration_s": settings.step_duration,
            "steps": settings.steps,
            "customers": settings.customers,
            "products": len(side.products),
            "order": "one line, quantity 1, random product, random customer",
            "web_workers": settings.web_workers,
            "gateway_workers": settings.gateway_workers,
            "celery": f"-P {settings.worker_pool} -c {settings.worker_concurrency} "
            f"-l {settings.worker_loglevel}",
            "service_env": settings.service_env,
            "django_settings": settings.django_settings,
            "processes": sorted(shop.groups),
        },
    }


# The headline figures of the baseline, copied next to the working tree's as baseline_<key>.
BASELINE_HEADLINES = (
    "cpu_ms_per_order",
    "max_orders_per_s",
    "p50_ms",
    "p99_ms",
    "event_p50_ms",
    "event_p99_ms",
    "peak_completed_per_s",
)


def _ratio(value: float | None, reference: float | None) -> float | None:
    return round(value / reference, 3) if value is not None and reference else None


def combine(
    current: dict[str, Any],
    baseline: dict[str, Any] | None,
    commits: dict[str, Any],
    machine: dict[str, Any],
) -> dict[str, Any]:
    """The results file: the working tree's figures at the top level (as without a
    baseline), each baseline headline beside them, the baseline's whole figures under
    ``baseline``, and issue #16's side-by-side targets."""
    results = {
        **{key: current[key] for key in ("rate", "p50_ms", "p99_ms", "cpu_ms_per_order")},
        "max_orders_per_s": current["max_orders_per_s"],
        "event_p50_ms": current["event_p50_ms"],
    }
    for key in BASELINE_HEADLINES:
        results[f"baseline_{key}"] = baseline[key] if baseline else None
    results.update(current)
    results["commits"] = commits
    results["machine"] = machine
    results["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    results["baseline"] = baseline
    if baseline is not None:
        cpu_ratio = _ratio(current["cpu_ms_per_order"], baseline["cpu_ms_per_order"])
        rate_ratio = _ratio(current["max_orders_per_s"], baseline["max_orders_per_s"])
        results["cpu_ratio_to_baseline"] = cpu_ratio
        results["max_orders_per_s_ratio_to_baseline"] = rate_ratio
        results["targets"] = {
            **current["targets"],
            "cpu_ms_per_order<=baseline/3": cpu_ratio is not None and cpu_ratio <= 1 / 3,
            "max_orders_per_s>=2.5x_baseline": rate_ratio is not None and rate_ratio >= 2.5,
        }
    return results


def print_side_by_side(results: dict[str, Any]) -> None:
    baseline = results["baseline"]
    commits = results["commits"]
    print(
        f"\nSide by side: baseline {commits['baseline']['commit'][:10]} against the working "
        f"tree ({commits['working_tree']['describe']}), {results['machine']['cpu']}"
    )
    rows = [
        ("CPU ms per order (fixed rate)", "cpu_ms_per_order", 2),
        ("max orders/s kept up", "max_orders_per_s", 0),
        ("most orders/s settled", "peak_completed_per_s", 1),
        (f"saga p50 ms at {results['rate']:.0f}/s", "p50_ms", 1),
        (f"saga p99 ms at {results['rate']:.0f}/s", "p99_ms", 1),
        ("event delivery p50 ms", "event_p50_ms", 1),
        ("event delivery p99 ms", "event_p99_ms", 1),
    ]
    print(f"  {'':<32} {'baseline':>10} {'working':>10} {'ratio':>7}")
    for label, key, digits in rows:
        ours, theirs = results[key], baseline[key]
        print(
            f"  {label:<32} {_cell(theirs, 10, digits)} {_cell(ours, 10, digits)} "
            f"{_cell(_ratio(ours, theirs), 7, 2)}"
        )
    others = [run["fixed_rate"]["other_cores"] for run in (baseline, results)]
    print(
        f"  {'others (cores, fixed rate)':<32} {_cell(others[0], 10, 2)} {_cell(others[1], 10, 2)}"
    )
    theirs_by_rate = {step["rate"]: step for step in baseline["steps"]}
    ours_by_rate = {step["rate"]: step for step in results["steps"]}
    if theirs_by_rate or ours_by_rate:
        print(
            f"\n  {'rate':>5}   {'baseline p50/p99 ms, CPU/ord':>34}   "
            f"{'working p50/p99 ms, CPU/ord':>34}"
        )
        for rate in sorted(theirs_by_rate.keys() | ours_by_rate.keys()):
            cells = []
            for step in (theirs_by_rate.get(rate), ours_by_rate.get(rate)):
                if step is None:
                    cells.append(f"{'(not run)':>34}")
                    continue
                cells.append(
                    f"{_cell(step['p50_ms'], 8)} {_cell(step['p99_ms'], 8)} "
                    f"{_cell(step['cpu_ms_per_order_total'], 7, 2)} "
                    f"{'ok' if step['keeps_up'] else 'NO':>8}"
                )
            print(f"  {rate:5.0f}   {cells[0]}   {cells[1]}")
    print(f"  targets: {results['targets']}")


def bench(settings: Settings, sides: list[Side], commits: dict[str, Any]) -> dict[str, Any]:
    """``sides``: the working tree's first, then the baseline's if any."""
    machine = machine_info(settings)
    print("kombu floor on an idle shop (before anything starts)...", flush=True)
    kombu = kombu_floor(sides[0].launcher.queue_prefix, settings.kombu_messages)
    print(f"  p50 {kombu['p50_ms']} ms, p99 {kombu['p99_ms']} ms", flush=True)
    try:
        for side in sides:
            prepare_side(side, settings)
        time.sleep(2)  # consumers declare their queues, workers connect
        for side in sides:
            check_running(side)
            print(f"[{side.name}] PostgreSQL commit floor...", flush=True)
            orders_url = side.running()[0].orders.env["DATABASE_URL"]
            side.commits["before"] = commit_floor(orders_url)
            floor = side.commits["before"]
            print(f"  p50 {floor['p50_ms']} ms, p99 {floor['p99_ms']} ms")

        # Steps first, from the lowest rate: what the machine keeps up with is known
        # even when the fixed rate is beyond it (its backlog would spoil later runs).
        warmup_rate = min([*settings.steps, settings.rate])
        for side in in_turn(sides, 0):
            wait_all_idle(sides, settings.settle)
            print(f"[{side.name}] warm-up: {settings.warmup:.0f} s at {warmup_rate:.0f}/s")
            open_loop(side.running()[0], warmup_rate, settings.warmup, side.tokens, side.products)
        for round_index, rate in enumerate(settings.steps):
            stepping = [side for side in sides if side.stepping]
            if not stepping:
                break
            for side in in_turn(stepping, round_index):
                run_step(side, sides, settings, rate)

        # In slices, the side that goes first alternating: this machine's speed swings by
        # a fifth within minutes, and one block per side put a swing between them.
        for index in range(settings.fixed_slices):
            for side in in_turn(sides, len(settings.steps) + index):
                run_fixed_slice(side, sides, settings, index)
        for side in sides:
            fixed_summed(side, settings)
        for side in sides:
            orders_url = side.running()[0].orders.env["DATABASE_URL"]
            side.commits["after"] = commit_floor(orders_url)
        figures = [side_results(side, settings, kombu) for side in sides]
    finally:
        for side in sides:
            if side.db is not None:
                side.db.close()
            if side.tap is not None:
                side.tap.stop()

    results = combine(figures[0], figures[1] if len(figures) > 1 else None, commits, machine)
    for side, figure in zip(sides, figures, strict=True):
        if len(sides) > 1:
            print(f"\n===== {side.name} =====")
        print_tables(figure)
    if results["baseline"] is not None:
        print_side_by_side(results)
    return results


def parse_args() -> Settings:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rate", type=float, default=20.0, help="orders/s of the fixed-rate run")
    parser.add_argument("--duration", type=float, default=20.0, help="s of the fixed-rate run")
    parser.add_argument(
        "--fixed-slices",
        type=int,
        default=4,
        help="the fixed-rate run in this many slices, the sides taking turns (their figures "
        "summed up)",
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="s of warm-up before it")
    parser.add_argument(
        "--steps",
        default="2,5,10,20,40,60,80,100,120,160,200",
        help="orders/s of the stepped runs, comma-separated ('' skips them)",
    )
    parser.add_argument("--step-duration", type=float, default=6.0, help="s of each step")
    parser.add_argument(
        "--settle", type=float, default=20.0, help="s after a run before an order is stuck"
    )
    parser.add_argument(
        "--max-drain", type=float, default=2.0, help="s after the last send a step may take"
    )
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--kombu-messages", type=int, default=300)
    parser.add_argument(
        "--web-workers", type=int, default=1, help="WEB_CONCURRENCY of catalog, users, orders"
    )
    parser.add_argument("--gateway-workers", type=int, default=1, help="gateway WEB_CONCURRENCY")
    parser.add_argument("--worker-pool", default="threads", help="celery worker -P")
    parser.add_argument("--worker-concurrency", type=int, default=4, help="celery worker -c")
    parser.add_argument("--worker-loglevel", default="INFO", help="celery worker -l")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="SERVICE:NAME=VALUE",
        help="an environment variable for one service (catalog, users, orders, gateway), "
        "or for all with 'all:'; repeatable",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="SERVICE:NAME=PYTHON",
        help="a Django setting for one service or 'all:', on top of its settings module "
        "(e.g. all:CELERY_DB_REUSE_MAX=1000); repeatable",
    )
    parser.add_argument(
        "--no-events", action="store_true", help="no relay, consumers nor event figures"
    )
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep the services' logs (temp dir) afterwards"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    baseline = parser.add_mutually_exclusive_group()
    baseline.add_argument(
        "--baseline",
        default=BASELINE_COMMIT,
        metavar="COMMIT",
        help="the commit measured side by side with the working tree (a git worktree of it)",
    )
    baseline.add_argument(
        "--no-baseline", action="store_true", help="the working tree alone, no side by side"
    )
    parser.add_argument(
        "--postgres-url",
        metavar="URL",
        help="run on this PostgreSQL server (e.g. postgres://postgres@127.0.0.1:5432) instead "
        "of a private one with PostgreSQL's default settings",
    )
    args = parser.parse_args()

    def per_service(items: list[str], option: str) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for item in items:
            target, _, assignment = item.partition(":")
            name, equals, value = assignment.partition("=")
            if not equals or target not in ("all", *SERVICES):
                parser.error(f"{option} {item!r}: expected SERVICE:NAME=VALUE")
            for service in SERVICES if target == "all" else (target,):
                found.setdefault(service, {})[name] = value
        return found

    service_env = per_service(args.env, "--env")
    return Settings(
        rate=args.rate,
        duration=args.duration,
        fixed_slices=max(1, args.fixed_slices),
        warmup=args.warmup,
        steps=[float(value) for value in args.steps.split(",") if value.strip()],
        step_duration=args.step_duration,
        settle=args.settle,
        max_drain=args.max_drain,
        customers=args.customers,
        kombu_messages=args.kombu_messages,
        web_workers=args.web_workers,
        gateway_workers=args.gateway_workers,
        worker_pool=args.worker_pool,
        worker_concurrency=args.worker_concurrency,
        worker_loglevel=args.worker_loglevel,
        service_env=service_env,
        django_settings=per_service(args.setting, "--setting"),
        no_events=args.no_events,
        keep_workdir=args.keep_workdir,
        output=args.output,
        baseline=None if args.no_baseline else args.baseline,
        postgres_url=args.postgres_url,
    )


def _raise_exit(signum: int, _frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def _delete_bench_broker_objects(prefix: str) -> None:
    """Queues and the exchange this run declared beyond the harness's own service queues."""
    names = [f"{prefix}bench.events", f"{prefix}bench.floor"]
    for service in ("catalog", "users"):
        names += [f"{prefix}{service}.events", f"{prefix}{service}.events.dlq"]
    with Connection(BROKER_URL, connect_timeout=5) as connection:
        channel = connection.channel()
        for name in names:
            try:
                channel.queue_delete(name)
            except Exception:  # absent: nothing to clean, but the channel is closed
                channel = connection.channel()
        with contextlib.suppress(Exception):  # absent: nothing to clean
            channel.exchange_delete(f"{prefix}events")


def _git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(  # noqa: S603 - fixed git commands
        ["git", *args],  # noqa: S607 - git from PATH, as make does
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def commit_info(commit: str) -> dict[str, str]:
    """The full id and subject of ``commit`` (a name, short id...), or BenchError."""
    try:
        full = _git("rev-parse", "--verify", f"{commit}^{{commit}}")
    except subprocess.CalledProcessError as error:
        raise BenchError(f"no commit {commit!r}: {error.stderr.strip()}") from None
    return {"commit": full, "subject": _git("log", "-1", "--format=%s", full)[:120]}


def working_tree_info() -> dict[str, Any]:
    """HEAD and whether the working tree differs from it (what the working side runs)."""
    head = commit_info("HEAD")
    changed = _git("status", "--porcelain", "--untracked-files=no").splitlines()
    describe = head["commit"][:10] + (f" + {len(changed)} changed files" if changed else "")
    return {**head, "changed_files": len(changed), "describe": describe}


@contextlib.contextmanager
def baseline_worktree(commit: str, folder: Path) -> Iterator[Path]:
    """A detached git worktree of ``commit`` at ``folder``, removed on the way out
    (Ctrl-C included) with whatever the run left in it (bytecode)."""
    _git("worktree", "add", "--detach", "--quiet", str(folder), commit)
    try:
        yield folder
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _git("worktree", "remove", "--force", str(folder))
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(subprocess.CalledProcessError):
            _git("worktree", "prune")


def load_harness(root: Path) -> ModuleType:
    """``root``'s own tests/harness.py, so its services start from ``root``'s folders
    the way that commit starts them."""
    spec = importlib.util.spec_from_file_location(
        f"saga_bench_harness_{uuid.uuid4().hex[:8]}", root / "tests" / "harness.py"
    )
    if spec is None or spec.loader is None:
        raise BenchError(f"{root} has no tests/harness.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def postgres_server(url: str | None, workdir: Path) -> Iterator[str]:
    """The URL both sides' harnesses start their databases on (``TEST_POSTGRES_URL``):
    ``url`` (``--postgres-url``), or a private server with PostgreSQL's default settings (WAL
    flushed at commit, autovacuum on), stopped and deleted afterwards. A shared
    machine's server may be set up otherwise (this one's CI server runs without
    autovacuum, where tables that only grow made every later figure dearer)."""
    if url is not None:
        yield url
        return
    workdir.chmod(0o711)  # PostgreSQL's own user walks through it to its folder
    server = PrivatePostgres(workdir / "postgres", durable=True)
    try:
        server.start()
        yield server.url
    finally:
        server.close()


def baseline_side(root: Path, workdir: Path) -> Side:
    harness = load_harness(root)
    return Side(
        name="baseline",
        launcher=harness.ServiceLauncher(workdir),
        # The venv's editable install points at the working tree's common/src; PYTHONPATH
        # comes first on sys.path, so the baseline's services import the baseline's.
        pythonpath=[str(root / "common" / "src")],
    )


def main() -> int:
    settings = parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows through make's pipe too
    # SIGTERM and SIGHUP unwind like Ctrl-C, so the finally blocks stop everything;
    # SIGINT too when started in the background (where the shell ignores it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)
    workdir = Path(tempfile.mkdtemp(prefix="saga-bench-"))
    sides: list[Side] = []
    try:
        with contextlib.ExitStack() as cleanup:
            commits: dict[str, Any] = {"working_tree": working_tree_info(), "baseline": None}
            os.environ["TEST_POSTGRES_URL"] = cleanup.enter_context(
                postgres_server(settings.postgres_url, workdir)
            )
            (workdir / "working").mkdir()
            # Loaded now, like the baseline's, so that it starts on that server.
            harness = load_harness(REPO)
            sides.append(
                Side(name="working tree", launcher=harness.ServiceLauncher(workdir / "working"))
            )
            if settings.baseline is not None:
                commits["baseline"] = commit_info(settings.baseline)
                root = cleanup.enter_context(
                    baseline_worktree(commits["baseline"]["commit"], workdir / "baseline-source")
                )
                (workdir / "baseline").mkdir()
                sides.append(baseline_side(root, workdir / "baseline"))
            try:
                results = bench(settings, sides, commits)
            finally:
                for side in sides:  # before the worktree goes: its processes run from it
                    side.launcher.stop_all()
                    _delete_bench_broker_objects(side.launcher.queue_prefix)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr)
        return 130
    except SystemExit:  # SIGTERM or SIGHUP, see _raise_exit
        print("\nstopped: stopping everything", file=sys.stderr)
        raise
    except Exception as error:
        for side in sides:
            for service in side.launcher.running:
                if tail := service.log_tail(20):
                    print(
                        f"\n--- [{side.name}] {service.name} log (last lines) ---\n{tail}",
                        file=sys.stderr,
                    )
        if isinstance(error, BenchError):
            print(f"\nbenchmark failed: {error}", file=sys.stderr)
            return 1
        raise
    finally:
        if settings.keep_workdir:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    settings.output.parent.mkdir(parents=True, exist_ok=True)
    settings.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nWritten {settings.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
