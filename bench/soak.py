"""A soak: `make load` against `make run` for minutes, on the embedded broker and on RabbitMQ.

    make soak                 # or: .venv/bin/python bench/soak.py [--duration 600 --brokers ...]

For each broker in turn (``--brokers embedded,rabbitmq``; SQLite databases in
both, as `make run` has them; RabbitMQ is the machine's, queues apart through
QUEUE_PREFIX) it starts the shop exactly as `make run` does (scripts/run.sh
under supervisord, tests/local_run.py, free ports, a private VAR_DIR, rate
limits raised), runs bench/locustfile.py headless for ``--duration`` seconds
with ``--users`` users, and records:

- the load's report (bench/locustfile.py ``--report-json``): requests, failures,
  5xx, orders accepted per second, orders left pending, saga decision p50/p99;
- the memory (RSS, a gunicorn arbiter with its workers) of every supervisord
  program after ``--warmup`` seconds of load and at the end, its growth, and
  whether every process stayed within ``--max-growth-pct`` (10 %);
- every program's pid at the start and at the end: a restart shows as a change
  (and supervisord's "exited:" lines are counted).

Results go to ``bench/results/soak.json``; bench/README.md keeps the history.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness import BROKER_URL, delete_queues, run_queue_names  # noqa: E402
from tests.local_run import LocalRun  # noqa: E402

DEFAULT_OUTPUT = REPO / "bench" / "results" / "soak.json"
UNLIMITED = {
    "GATEWAY_RATE_LIMIT_ANONYMOUS": "1000000/min",
    "GATEWAY_RATE_LIMIT_AUTHENTICATED": "1000000/min",
    "LOGIN_RATE_PER_IP": "1000000/min",
    "LOGIN_RATE_PER_EMAIL": "1000000/min",
}


def memory_mb(pid: int) -> float:
    """RSS of a process and its children (a gunicorn arbiter and its workers), in MB."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return round(total / 2**20, 1)


def snapshot(shop: LocalRun) -> dict[str, dict[str, Any]]:
    return {
        name: {"pid": status.pid, "state": status.state, "rss_mb": memory_mb(status.pid or 0)}
        for name, status in sorted(shop.status().items())
    }


def soak(broker: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    env = dict(UNLIMITED)
    if broker == "rabbitmq":
        env.update(BROKER_URL=BROKER_URL, QUEUE_PREFIX=f"soak-{uuid.uuid4().hex[:8]}.")
    shop = LocalRun(workdir / broker, env=env)
    shop.start()
    try:
        report = workdir / f"{broker}.json"
        command = [
            str(Path(sys.executable).with_name("locust")),
            *("-f", "bench/locustfile.py", "--headless", "--only-summary"),
            *("--host", shop.gateway_url, "--users", str(args.users)),
            *("--spawn-rate", str(args.spawn_rate), "--run-time", f"{int(args.duration)}s"),
            *("--stop-timeout", "30", "--report-json", str(report)),
            *("--think-scale", str(args.think_scale)),
        ]
        print(f"==> {broker}: {' '.join(command)}", flush=True)
        samples: dict[str, Any] = {}

        def sample_after_warmup() -> None:
            time.sleep(args.warmup)
            samples["start"] = snapshot(shop)

        sampler = threading.Thread(target=sample_after_warmup, daemon=True)
        with (workdir / f"{broker}-locust.log").open("wb") as log:
            locust = subprocess.Popen(  # noqa: S603 - our own command line
                command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
            )
            sampler.start()
            locust.wait(timeout=args.duration + 300)
        sampler.join()
        samples["end"] = snapshot(shop)
        load = json.loads(report.read_text())
    finally:
        shop.stop()
        if "QUEUE_PREFIX" in env:
            delete_queues(run_queue_names(env["QUEUE_PREFIX"]))
    start, end = samples["start"], samples["end"]
    processes = {
        name: {
            "rss_mb_start": start[name]["rss_mb"],
            "rss_mb_end": end[name]["rss_mb"],
            "growth_mb": round(end[name]["rss_mb"] - start[name]["rss_mb"], 1),
            "growth_pct": round(
                100 * (end[name]["rss_mb"] - start[name]["rss_mb"]) / (start[name]["rss_mb"] or 1),
                1,
            ),
            "restarted": start[name]["pid"] != end[name]["pid"],
            "state_end": end[name]["state"],
        }
        for name in start
    }
    orders = load["orders"]
    return {
        "broker": broker,
        "duration_s": load["duration_s"],
        "users": args.users,
        "think_scale": args.think_scale,
        "requests": load["requests"],
        "requests_per_s": load["requests_per_s"],
        "failures": load["failures"],
        "server_errors_5xx": load["server_errors_5xx"],
        "orders_accepted": orders["accepted"],
        "orders_per_s": orders["accepted_per_s"],
        "orders_final": orders["final_by_status"],
        "orders_pending": orders["pending"],
        "saga_p50_ms": orders["decision_ms"].get("p50"),
        "saga_p99_ms": orders["decision_ms"].get("p99"),
        "processes_restarted": sorted(n for n, p in processes.items() if p["restarted"]),
        "exited_lines": shop.log().count(" exited: "),
        "largest_growth_mb": max(p["growth_mb"] for p in processes.values()),
        "largest_growth_pct": max(p["growth_pct"] for p in processes.values()),
        "memory_bound_pct": args.max_growth_pct,
        "memory_within_bound": all(
            p["growth_pct"] <= args.max_growth_pct for p in processes.values()
        ),
        "processes": processes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", default="embedded,rabbitmq")
    parser.add_argument("--duration", type=float, default=600.0, help="s of load per broker")
    parser.add_argument("--warmup", type=float, default=60.0, help="s before the first sample")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--spawn-rate", type=float, default=4.0)
    parser.add_argument("--think-scale", type=float, default=1.0, help="locustfile's option")
    parser.add_argument(
        "--max-growth-pct",
        type=float,
        default=10.0,
        help="the bound: no process's RSS may grow more than this between the samples",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="soak-") as folder:
        for broker in args.brokers.split(","):
            result = soak(broker, args, Path(folder))
            runs.append(result)
            print(json.dumps({k: v for k, v in result.items() if k != "processes"}), flush=True)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\n{'':10} {'orders/s':>8} {'5xx':>4} {'fail':>5} {'pending':>7} {'saga p50':>9} "
        f"{'p99 ms':>7} {'restarts':>8} {'max RSS growth MB':>18}"
    )
    for run in runs:
        print(
            f"{run['broker']:10} {run['orders_per_s']:>8} {run['server_errors_5xx']:>4} "
            f"{run['failures']:>5} {run['orders_pending']:>7} {run['saga_p50_ms']:>9} "
            f"{run['saga_p99_ms']:>7} {len(run['processes_restarted']):>8} "
            f"{run['largest_growth_mb']:>7} MB {run['largest_growth_pct']:>4} %"
        )
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
