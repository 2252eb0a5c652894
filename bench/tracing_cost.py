"""What tracing costs a web request when nothing exports spans (``make run``'s default).

    make bench-tracing       # or: .venv/bin/python bench/tracing_cost.py [--rounds N]

Starts the catalog service under gunicorn as ``make run`` does (SQLite, the
demo catalog), once per variant, side by side:

- ``sdk-disabled``: ``OTEL_SDK_DISABLED=true``: no SDK, no instrumentation (the floor);
- ``no-endpoint``: the default with no ``OTEL_EXPORTER_OTLP_ENDPOINT``;
- ``ids-only``: no endpoint, ``OTEL_TRACES_SAMPLER=parentbased_always_off``: instrumented,
  spans with ids that propagate, none recorded (what ``no-endpoint`` was before it
  skipped the instrumentations);
- ``exporting``: every request traced and exported to a local OTLP sink that drops it.

Requests (a product list, a product, a category list, one after the other) go to each
variant in turn, round after round, so a machine whose speed swings affects every
variant alike. The figure is the server's own CPU time per request (user + system of
the gunicorn processes, from /proc), not latency: what a busy service pays.
Not a test: it prints figures to compare between runs on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PATHS = (
    "/api/catalog/products/?page_size=20",
    "/api/catalog/products/1/",
    "/api/catalog/categories/",
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that takes every batch and keeps nothing."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def process_tree_cpu_seconds(root: int) -> float:
    """User + system CPU of ``root`` and its children (gunicorn's master and worker)."""
    pids = [root]
    children = Path(f"/proc/{root}/task/{root}/children")
    if children.exists():
        pids += [int(pid) for pid in children.read_text().split()]
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


class Variant:
    def __init__(self, name: str, env: dict[str, str], var_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = {
            **os.environ,
            "VAR_DIR": str(var_dir),
            "ACCESS_LOG": "false",
            "LOG_LEVEL": "WARNING",
            "WEB_THREADS": "1",
            **env,
        }
        for name_ in ("DATABASE_URL", "CATALOG_DATABASE_URL", "BROKER_URL"):
            self.env.pop(name_, None)
        for otel in [name_ for name_ in self.env if name_.startswith("OTEL_")]:
            if otel not in env:  # the shell's own tracing settings stay out
                del self.env[otel]
        self.process: subprocess.Popen[bytes] | None = None
        self.cpu_per_request: list[float] = []

    def prepare(self) -> None:
        manage = [str(BIN / "python"), "manage.py"]
        for command in (["migrate", "--noinput", "-v", "0"], ["seed_catalog"]):
            subprocess.run(  # noqa: S603 - our own interpreter and manage.py
                manage + command,
                cwd=REPO / "catalog_svc",
                env=self.env,
                check=True,
                stdout=subprocess.DEVNULL,
            )

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - the venv's gunicorn
            [
                str(BIN / "gunicorn"),
                "-c",
                "python:common.gunicorn_conf",
                "--bind",
                f"127.0.0.1:{self.port}",
                "catalog_svc.wsgi",
            ],
            cwd=REPO / "catalog_svc",
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ready/", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not become ready")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def round(self, client: httpx.Client, requests: int) -> None:
        if self.process is None:
            raise RuntimeError(f"{self.name} is not started")
        before = process_tree_cpu_seconds(self.process.pid)
        for index in range(requests):
            response = client.get(self.url + PATHS[index % len(PATHS)])
            response.raise_for_status()
        spent = process_tree_cpu_seconds(self.process.pid) - before
        self.cpu_per_request.append(spent / requests * 1000)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=600, help="per variant and round")
    parser.add_argument("--output", default=str(REPO / "bench/results/tracing-cost.json"))
    options = parser.parse_args()

    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}"
    with tempfile.TemporaryDirectory(prefix="tracing-cost-") as scratch:
        variants = [
            Variant("sdk-disabled", {"OTEL_SDK_DISABLED": "true"}, Path(scratch, "a")),
            Variant("no-endpoint", {}, Path(scratch, "b")),
            Variant(
                "ids-only", {"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, Path(scratch, "d")
            ),
            Variant(
                "exporting",
                {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"},
                Path(scratch, "c"),
            ),
        ]
        try:
            for variant in variants:
                variant.prepare()
                variant.start()
            with httpx.Client(timeout=10) as client:
                for variant in variants:  # warm-up: imports, first queries, caches
                    variant.round(client, options.requests // 2)
                    variant.cpu_per_request.clear()
                for number in range(options.rounds):
                    for variant in variants if number % 2 == 0 else reversed(variants):
                        variant.round(client, options.requests)
        finally:
            for variant in variants:
                variant.stop()
            sink.shutdown()

    floor = statistics.median(variants[0].cpu_per_request)
    results = {}
    print(f"catalog, CPU per request, median of {options.rounds} rounds x {options.requests}:")
    for variant in variants:
        median = statistics.median(variant.cpu_per_request)
        results[variant.name] = {
            "cpu_ms_per_request": round(median, 4),
            "added_ms": round(median - floor, 4),
            "rounds_ms": [round(value, 4) for value in variant.cpu_per_request],
        }
        print(
            f"  {variant.name:<13} {median:7.3f} ms   {median - floor:+7.3f} ms"
            f"  ({(median / floor - 1) * 100:+5.1f} %)"
        )
    Path(options.output).parent.mkdir(parents=True, exist_ok=True)
    Path(options.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
