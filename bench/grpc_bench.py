"""The gateway's login and order composition, over gRPC (working tree) and REST (a baseline).

``make bench-grpc`` (BENCH_ARGS passes options): each side is a shop of real processes
started by its own tests/harness.py (users, catalog, orders and the gateway; the
working tree's gRPC servers too), on the run's own PostgreSQL, RabbitMQ and Redis
(tests/servers.py). The baseline is ``--baseline`` (default: the commit before gRPC,
``BASELINE_COMMIT``), unpacked with ``git archive`` into a temp dir; its services import
its own ``common`` (first on PYTHONPATH). ``--baseline none`` measures the working tree
alone.

Per side, one customer with one order of three lines; after a warm-up, ``--requests``
sequential calls of each kind, the side order alternating per kind:

- ``login``: ``POST /api/auth/token/`` (the gateway checks the password with users;
  users' PBKDF2 is most of it, by design);
- ``composition``: ``GET /api/orders/{id}/details/`` (orders over REST, then the
  products and the customer: REST per product before, one gRPC call each now).

Figures: p50 and p99 of the latency seen by the client, and CPU per call: the user +
system time of every process of the shop (all of its process groups) over the run,
divided by the calls. Sequential calls on a quiet machine: other work skews every
figure (``loadavg_at_start`` is recorded). Results: bench/results/grpc.json.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.servers import PrivateServers  # noqa: E402

# The last commit whose gateway called users and catalog over REST.
BASELINE_COMMIT = "7907ec6"
RESULTS = REPO / "bench" / "results" / "grpc.json"
PASSWORD = "correct horse battery"  # noqa: S105 - the bench customer's, on a private shop
UNLIMITED = "1000000/min"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Side:
    name: str
    harness: ModuleType
    launcher: Any
    pythonpath: str = ""
    gateway_url: str = ""
    order_id: str = ""
    credentials: dict[str, str] | None = None
    headers: dict[str, str] | None = None


def load_harness(root: Path) -> ModuleType:
    """``root``'s own tests/harness.py (its services start from ``root``'s folders)."""
    spec = importlib.util.spec_from_file_location(
        f"grpc_bench_harness_{uuid.uuid4().hex[:8]}", root / "tests" / "harness.py"
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"{root} has no tests/harness.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def unpacked(commit: str, folder: Path) -> Iterator[Path]:
    """The tree of ``commit`` in ``folder`` (``git archive``: no worktree, no git state)."""
    command = ["git", "archive", "--format=tar", commit]
    archive = subprocess.run(command, cwd=REPO, capture_output=True, check=True).stdout  # noqa: S603
    folder.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    yield folder


def shop_start(side: Side) -> None:
    """users, catalog (seeded), orders and the gateway; one customer with an order."""
    env = {"PYTHONPATH": side.pythonpath} if side.pythonpath else {}
    port = side.harness.free_port()
    verifier = {**env, "JWT_JWKS_URL": f"http://127.0.0.1:{port}/.well-known/jwks.json"}
    users = side.launcher.start("users", env=verifier)
    catalog = side.launcher.start("catalog", seed=True, env=verifier)
    orders = side.launcher.start("orders", env=verifier)
    gateway = side.launcher.start(
        "gateway",
        port=port,
        env={
            **env,
            "CATALOG_URL": catalog.url,
            "USERS_URL": users.url,
            "ORDERS_URL": orders.url,
            "LOGIN_RATE_PER_IP": UNLIMITED,
            "LOGIN_RATE_PER_EMAIL": UNLIMITED,
            "LOGIN_RATE_PER_ACCOUNT": UNLIMITED,
            "GATEWAY_RATE_LIMIT_ANONYMOUS": UNLIMITED,
            "GATEWAY_RATE_LIMIT_AUTHENTICATED": UNLIMITED,
            "ACCESS_LOG": "false",
        },
    )
    side.gateway_url = gateway.url
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    side.credentials = {"email": email, "password": PASSWORD}
    httpx.post(f"{gateway.url}/api/users/register/", json=side.credentials).raise_for_status()
    login = httpx.post(f"{gateway.url}/api/auth/token/", json=side.credentials, timeout=30)
    login.raise_for_status()
    side.headers = {"Authorization": f"Bearer {login.json()['access']}"}
    lines = [{"product_id": pid, "quantity": 1} for pid in (1, 2, 3)]
    order = httpx.post(f"{gateway.url}/api/orders/", json={"lines": lines}, headers=side.headers)
    order.raise_for_status()
    side.order_id = order.json()["id"]


def sessions_cpu_seconds(sessions: set[int]) -> float:
    """User + system CPU of every live process in these sessions (the shop's groups)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sessions:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def shop_sessions(side: Side) -> set[int]:
    sessions = set()
    for service in side.launcher.running:
        processes = [service.process, *service.extra.get("workers", [])]
        sessions |= {process.pid for process in processes if process is not None}
    return sessions


def one_call(side: Side, kind: str, client: httpx.Client) -> None:
    if kind == "login":
        response = client.post(f"{side.gateway_url}/api/auth/token/", json=side.credentials)
    else:
        response = client.get(
            f"{side.gateway_url}/api/orders/{side.order_id}/details/", headers=side.headers
        )
        if response.status_code == 200 and response.json()["warnings"]:
            raise SystemExit(f"{side.name}: composition warnings {response.json()['warnings']}")
    if response.status_code != 200:
        raise SystemExit(f"{side.name} {kind}: {response.status_code} {response.text[:300]}")


def measure(side: Side, kind: str, requests: int, warmup: int) -> dict[str, float]:
    with httpx.Client(timeout=30) as client:
        for _ in range(warmup):
            one_call(side, kind, client)
        sessions = shop_sessions(side)
        cpu_before = sessions_cpu_seconds(sessions)
        latencies = []
        for _ in range(requests):
            started = time.perf_counter()
            one_call(side, kind, client)
            latencies.append(time.perf_counter() - started)
        cpu = sessions_cpu_seconds(sessions) - cpu_before
    latencies.sort()
    return {
        "requests": requests,
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 2),
        "cpu_ms_per_call": round(cpu / requests * 1000, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--baseline", default=BASELINE_COMMIT, help="a commit, or none")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="grpc-bench-"))
    servers = PrivateServers()
    results: dict[str, Any] = {
        "machine": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg()[0],
        "baseline": None if args.baseline == "none" else args.baseline,
        "sides": {},
    }
    sides: list[Side] = []
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        servers.start()
        cleanup.callback(servers.close)
        os.environ.update(servers.env())  # read by each harness as it is loaded
        harness = load_harness(REPO)
        sides.append(Side("grpc", harness, harness.ServiceLauncher(workdir / "grpc")))
        if args.baseline != "none":
            root = cleanup.enter_context(unpacked(args.baseline, workdir / "baseline-source"))
            baseline = load_harness(root)
            sides.append(
                Side(
                    "rest",
                    baseline,
                    baseline.ServiceLauncher(workdir / "rest"),
                    pythonpath=str(root / "common" / "src"),
                )
            )
        for side in sides:
            (workdir / side.name).mkdir(exist_ok=True)
            cleanup.callback(side.launcher.stop_all)
            print(f"starting the {side.name} shop...", flush=True)
            shop_start(side)
        for turn, kind in enumerate(("login", "composition")):
            for side in sides if turn % 2 == 0 else reversed(sides):
                figures = measure(side, kind, args.requests, args.warmup)
                results["sides"].setdefault(side.name, {})[kind] = figures
                print(f"{side.name:5} {kind:12} {figures}", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
