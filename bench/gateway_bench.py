"""What the gateway costs: one product detail GET direct, through the gateway, through nginx.

    make bench-gateway       # or: .venv/bin/python bench/gateway_bench.py [--duration 10s ...]

Starts, side by side on loopback, catalog on PostgreSQL (seeded), users_svc
and the gateway (tests/harness.py, real gunicorn processes on throw-away
databases), and nginx with an upstream keep-alive pool (bench/nginx.conf.template)
in front of the same catalog. wrk (Debian's) then loads the three targets with
the same settings, in alternating rounds after a short warm-up each, so that
drift of the machine hits every target alike; the figures are medians over rounds.

Every request carries a real access token (a registered user, logged in at the
gateway), so the gateway's JWT check is part of what is measured; direct and
nginx get the same header. The gateway runs with its rate limit raised
(GATEWAY_RATE_LIMIT_AUTHENTICATED) so the run measures cost, not throttling.

Catalog runs as two single-worker gunicorn instances sharing one port through
SO_REUSEPORT, so the kernel spreads connections over them as a Service spreads
them over two pods. With one gunicorn and two gthread workers, the worker that
wins the accept race tends to take all of wrk's keep-alive connections and the
"direct" figure becomes one worker's (PERFORMANCE-NOTES warns of it);
``--catalog-one-arbiter`` runs that layout anyway. The busiest catalog worker's
share of catalog CPU is reported for every target so an unbalanced run shows.

On a 2-core machine the load generator, proxy, catalog and PostgreSQL share
the cores, so throughput follows CPU per request: the ratio is roughly
backend CPU / (backend CPU + proxy CPU) (../shared/docs/PERFORMANCE-NOTES.md).
That is why the proxies' CPU time per request is reported: utime+stime of
every process in the proxy's process group (gunicorn arbiter and workers;
nginx master and workers) from /proc, before and after each run, divided by
the requests wrk completed. For ``direct`` that figure is the catalog's own
CPU per request; every target also reports the catalog's CPU in its runs.

Added latency at half load: after the full-speed rounds every target is run at
half the direct median throughput, paced by bench/wrk_report.lua on a fixed
per-thread schedule (wrk2 is not in Debian), and the gateway's p50 minus the
direct p50 is reported (difference of the medians over rounds; and, less swayed
by drift between rounds, the median of the round-by-round differences). Pacing
only holds below saturation; runs that fall short of the asked rate are flagged.

If the gateway does not route /api/catalog/ yet (404), it is reported as
"no proxy yet" and the other two targets are still measured. Results go to
bench/results/gateway.json (the figures of record) and a table on stdout.
Needs PostgreSQL and RabbitMQ on loopback, like `make test`.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
sys.path.insert(0, str(REPO))

from tests.harness import RunningService, ServiceLauncher, free_port  # noqa: E402

WRK_SCRIPT = BENCH / "wrk_report.lua"
NGINX_TEMPLATE = BENCH / "nginx.conf.template"
DEFAULT_OUTPUT = BENCH / "results" / "gateway.json"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# "traced": a second gateway with OpenTelemetry on (every request sampled and exported
# over OTLP/HTTP to a sink of the bench's own), beside the untraced one (--tracing).
TARGETS = ("direct", "gateway", "traced", "nginx")
# Above this share of the catalog's CPU in one of two workers, a run is flagged.
UNBALANCED_SHARE = 0.75


@dataclass(frozen=True)
class Settings:
    threads: int
    connections: int
    duration: str
    warmup: str
    rounds: int
    half_rate: bool
    catalog_workers: int
    catalog_one_arbiter: bool
    gateway_workers: int
    nginx_workers: str
    gateway_cmd: str | None
    gateway_env: dict[str, str]
    catalog_timing: bool
    tracing: bool
    output: Path


@dataclass
class Target:
    """One URL under load and, for a proxy, the process group whose CPU it costs."""

    name: str
    url: str
    proxy_pgid: int | None
    skipped: str | None = None


@dataclass
class Catalog:
    """The catalog instances under load: their process groups and, with --catalog-timing,
    the access logs where gunicorn writes each request's service time."""

    pgids: list[int]
    access_logs: list[Path]


@dataclass
class RunResult:
    """One wrk run and the CPU the processes spent during it."""

    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors, timeouts and answers other than 2xx/3xx
    proxy_cpu_ms_per_request: float | None
    proxy_busiest_worker_share: float | None
    backend_cpu_ms_per_request: float
    backend_busiest_worker_share: float | None
    # With --catalog-timing: catalog's own time per request (gunicorn's %(D)s), from
    # the request read to the response written; a proxy's extra load shows here.
    backend_service_p50_ms: float | None = None


@dataclass
class Summary:
    """Medians over the rounds of one target."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float | None
    proxy_busiest_worker_share: float | None
    backend_cpu_ms_per_request: float | None
    backend_busiest_worker_share: float | None
    errors: int
    backend_service_p50_ms: float | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)


class BenchError(RuntimeError):
    pass


# --- CPU time from /proc -----------------------------------------------------


def group_cpu_seconds(pgids: Collection[int]) -> dict[int, float]:
    """CPU seconds (user+system, own plus reaped children) per process of the groups.

    Reaped children are counted so that a worker replaced during a run still
    shows up, in its parent's figure.
    """
    cpu: dict[int, float] = {}
    if not pgids:
        return cpu
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # The command name may contain spaces and parentheses: split after the last ")".
        fields = raw[raw.rindex(")") + 2 :].split()
        if int(fields[2]) not in pgids:
            continue
        utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
        cpu[int(entry.name)] = (utime + stime + cutime + cstime) / CLOCK_TICKS
    return cpu


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    return {pid: after[pid] - before.get(pid, 0.0) for pid in after}


def busiest_worker_share(delta: dict[int, float], leaders: Collection[int]) -> float | None:
    """Share of the workers' CPU taken by the busiest one (0.5 is even for two).

    ``leaders`` are the group leaders (gunicorn arbiters, nginx master), not workers.
    """
    workers = [seconds for pid, seconds in delta.items() if pid not in leaders]
    total = sum(workers)
    if len(workers) < 2 or total <= 0:
        return None
    return max(workers) / total


# --- wrk ---------------------------------------------------------------------


def run_wrk(
    settings: Settings, url: str, token: str, duration: str, rate: float | None
) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed: run `make bench-gateway` (it installs it)")
    command = [
        wrk,
        f"-t{settings.threads}",
        f"-c{settings.connections}",
        f"-d{duration}",
        "--timeout",
        "5s",
        "-H",
        f"Authorization: Bearer {token}",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    if rate is not None:
        command += ["--", f"rate={rate / settings.threads:.3f}"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    for line in result.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            return json.loads(line.removeprefix("WRK_JSON "))
    raise BenchError(
        f"wrk printed no report (exit {result.returncode}):\n{result.stdout}{result.stderr}"
    )


def log_sizes(paths: list[Path]) -> dict[Path, int]:
    return {path: path.stat().st_size if path.exists() else 0 for path in paths}


def service_p50_ms(since: dict[Path, int]) -> float | None:
    """Median of the service times (µs, one per line) logged since the given sizes."""
    times = []
    for path, offset in since.items():
        with path.open("rb") as log:
            log.seek(offset)
            times += [int(line) for line in log.read().split() if line.isdigit()]
    return statistics.median(times) / 1000 if times else None


def measure(
    settings: Settings,
    target: Target,
    catalog: Catalog,
    token: str,
    rate: float | None = None,
) -> RunResult:
    """Warm up, then one measured wrk run with CPU snapshots around it."""
    run_wrk(settings, target.url, token, settings.warmup, rate)
    proxy = [target.proxy_pgid] if target.proxy_pgid else []
    catalog_before, proxy_before = group_cpu_seconds(catalog.pgids), group_cpu_seconds(proxy)
    logs_before = log_sizes(catalog.access_logs)
    report = run_wrk(settings, target.url, token, settings.duration, rate)
    proxy_delta = cpu_delta(proxy_before, group_cpu_seconds(proxy))
    catalog_delta = cpu_delta(catalog_before, group_cpu_seconds(catalog.pgids))

    requests = max(int(report["requests"]), 1)
    latency = report["latency_us"]
    return RunResult(
        requests=int(report["requests"]),
        rps=report["requests"] / (report["duration_us"] / 1e6),
        p50_ms=latency["p50"] / 1000,
        p99_ms=latency["p99"] / 1000,
        errors=sum(report["errors"].values()),
        proxy_cpu_ms_per_request=sum(proxy_delta.values()) * 1000 / requests if proxy else None,
        proxy_busiest_worker_share=busiest_worker_share(proxy_delta, proxy) if proxy else None,
        backend_cpu_ms_per_request=sum(catalog_delta.values()) * 1000 / requests,
        backend_busiest_worker_share=busiest_worker_share(catalog_delta, catalog.pgids),
        backend_service_p50_ms=service_p50_ms(logs_before) if catalog.access_logs else None,
    )


def summarize(target: Target, runs: list[RunResult]) -> Summary:
    def median(values: list[float | None]) -> float | None:
        present = [value for value in values if value is not None]
        return round(statistics.median(present), 3) if present else None

    backend_cpu = median([run.backend_cpu_ms_per_request for run in runs])
    proxy_cpu = median([run.proxy_cpu_ms_per_request for run in runs])
    return Summary(
        rps=round(statistics.median(run.rps for run in runs), 1),
        p50_ms=round(statistics.median(run.p50_ms for run in runs), 3),
        p99_ms=round(statistics.median(run.p99_ms for run in runs), 3),
        # For ``direct`` there is no proxy: its cost is the catalog's own.
        cpu_ms_per_request=backend_cpu if target.proxy_pgid is None else proxy_cpu,
        proxy_busiest_worker_share=median([run.proxy_busiest_worker_share for run in runs]),
        backend_cpu_ms_per_request=backend_cpu,
        backend_busiest_worker_share=median([run.backend_busiest_worker_share for run in runs]),
        errors=sum(run.errors for run in runs),
        backend_service_p50_ms=median([run.backend_service_p50_ms for run in runs]),
        rounds=[{key: _rounded(value) for key, value in asdict(run).items()} for run in runs],
    )


def _rounded(value: object) -> object:
    return round(value, 3) if isinstance(value, float) else value


# --- the processes under test ------------------------------------------------


def _pid(service: RunningService) -> int:
    if service.process is None:
        raise BenchError(f"{service.name} is not running")
    return service.process.pid  # started in a new session: pid == process group id


def _command_line(pid: int) -> str:
    """How a process was started, for the record (venv paths shortened)."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return shlex.join(arg.decode().replace(f"{REPO}/", "") for arg in argv if arg)


def start_catalog(
    settings: Settings,
    launcher: ServiceLauncher,
    workdir: Path,
    siblings: list[RunningService],
    extra_env: dict[str, str],
) -> RunningService:
    """Catalog, seeded; with SO_REUSEPORT, ``siblings`` gets the extra instances.

    Every instance serves the same database; the siblings are not in the
    launcher (it would drop that database once per instance), so the caller
    stops them.
    """
    port = free_port()
    one_arbiter = settings.catalog_one_arbiter
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:common.gunicorn_conf",
        "--reuse-port",
        "--bind",
        f"127.0.0.1:{port}",
        "catalog_svc.wsgi",
    ]
    instances = 1 if one_arbiter else settings.catalog_workers

    def env(instance: int) -> dict[str, str]:
        # gunicorn empties its metrics folder at start: one per instance.
        metrics = workdir / f"prometheus-catalog-{instance}"
        # manage.py (migrate, seed) writes metrics there too, before gunicorn creates it.
        metrics.mkdir()
        timing = {}
        if settings.catalog_timing:
            # Overrides the config file's access log: one line per request, its time in µs.
            log = workdir / f"catalog-access-{instance}.log"
            timing["GUNICORN_CMD_ARGS"] = f"--access-logfile {log} --access-logformat %(D)s"
        return {
            "ACCESS_LOG": "false",
            "WEB_CONCURRENCY": str(settings.catalog_workers if one_arbiter else 1),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            **timing,
        }

    catalog = launcher.start(
        "catalog",
        seed=True,
        port=port,
        env={**extra_env, **env(0)},
        command=None if one_arbiter else command,
    )
    for instance in range(1, instances):
        sibling = RunningService(
            name="catalog",
            url=catalog.url,
            database_name=catalog.database_name,
            env={**catalog.env, **env(instance)},
            log_path=workdir / f"catalog-sibling-{instance}.log",
        )
        siblings.append(sibling)
        sibling.start(command)
    if siblings:
        _wait_every_instance(catalog.url)
    return catalog


def _wait_every_instance(url: str) -> None:
    """Return once every instance sharing the port answers.

    /ready/ on the shared port may be answered by the first instance alone.
    Fresh connections are hashed over the listening sockets, and one sent to an
    instance still booting waits in its backlog: when 64 of them have been
    answered, every instance has, but for a 2**-64 chance with two.
    """
    for _ in range(64):
        with httpx.Client(timeout=60) as client:
            client.get(f"{url}/health/").raise_for_status()


@contextmanager
def nginx_running(workdir: Path, upstream: str, workers: str) -> Iterator[tuple[str, int]]:
    """nginx in front of ``upstream``; yields its URL and process group id."""
    nginx = shutil.which("nginx")
    if nginx is None:
        raise BenchError("nginx is not installed: run `make bench-gateway` (it installs it)")
    prefix = workdir / "nginx"
    prefix.mkdir()
    # Workers run as "nobody" when started by root: they must reach their temp dirs.
    for folder in (workdir, prefix):
        folder.chmod(0o755)
    port = free_port()
    config = (
        NGINX_TEMPLATE.read_text()
        .replace("@PREFIX@", str(prefix))
        .replace("@WORKERS@", workers)
        .replace("@UPSTREAM@", upstream)
        .replace("@LISTEN@", f"127.0.0.1:{port}")
    )
    config_path = prefix / "nginx.conf"
    config_path.write_text(config)
    error_log = prefix / "error.log"
    process = subprocess.Popen(  # noqa: S603
        [nginx, "-p", str(prefix), "-c", str(config_path), "-e", str(error_log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_listening(port, process, error_log)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        _stop_group(process)


def _wait_listening(port: int, process: subprocess.Popen[bytes], error_log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = error_log.read_text() if error_log.exists() else ""
            raise BenchError(f"nginx exited at start:\n{log}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/health/", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise BenchError("nginx did not listen within 10 s")


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def access_token(users: RunningService, gateway: RunningService) -> str:
    """Register a customer at users_svc and log in at the gateway, as a client would."""
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    password = secrets.token_urlsafe(18)
    response = httpx.post(
        f"{users.url}/api/users/register/",
        json={"email": email, "password": password, "name": "Bench Customer"},
        timeout=10,
    )
    if response.status_code != 201:
        raise BenchError(f"register: {response.status_code} {response.text}")
    response = httpx.post(
        f"{gateway.url}/api/auth/token/",
        json={"email": email, "password": password},
        timeout=10,
    )
    if response.status_code != 200:
        raise BenchError(f"login at the gateway: {response.status_code} {response.text}")
    return response.json()["access"]


class _OtlpSink(http.server.BaseHTTPRequestHandler):
    """Takes every OTLP/HTTP export and answers 200: what a collector costs the sender."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def otlp_sink_start() -> str:
    """A local OTLP/HTTP receiver in a daemon thread; its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtlpSink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def gateway_command(template: str, port: int, workers: int) -> list[str]:
    """The gateway's server command with {python}, {port}, {bind}, {workers} filled in."""
    values = {
        "python": sys.executable,
        "port": str(port),
        "bind": f"127.0.0.1:{port}",
        "workers": str(workers),
    }
    return [part.format(**values) for part in shlex.split(template)]


def probe(url: str, token: str) -> str | None:
    """Why a target cannot be measured, or None when it answers the request."""
    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    except httpx.TransportError as error:
        return f"unreachable ({error})"
    if response.status_code != 200:
        return f"{response.status_code}: {response.text[:200]}"
    return None


# --- reporting ---------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    def first_line(command: list[str]) -> str:
        path = shutil.which(command[0])
        if path is None:
            return "missing"
        result = subprocess.run(  # noqa: S603
            [path, *command[1:]], capture_output=True, text=True, check=False
        )
        return (result.stdout + result.stderr).strip().splitlines()[0]

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    memory = re.search(r"^MemTotal:\s*(\d+)", meminfo, re.MULTILINE)
    return {
        "cpu": model.group(1) if model else platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(memory.group(1)) / 2**20, 1) if memory else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": first_line(["wrk", "-v"]),
        "nginx": first_line(["nginx", "-v"]),
        # Other work on the machine skews every figure: check it was quiet.
        "loadavg_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def ratio(numerator: Summary | None, denominator: Summary | None) -> float | None:
    if numerator is None or denominator is None or denominator.rps == 0:
        return None
    return round(numerator.rps / denominator.rps, 3)


def _number(value: float | None, width: int, digits: int = 2) -> str:
    return f"{value:{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


def print_table(
    results: dict[str, Summary | None], skipped: dict[str, str], half: dict[str, Any] | None
) -> None:
    direct = results["direct"]
    print()
    print(
        f"{'target':<8} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} {'× direct':>9} "
        f"{'CPU ms/req':>11} {'catalog CPU':>12} {'busiest wkr':>12} {'errors':>7}"
    )
    for name in TARGETS:
        summary = results.get(name)
        if summary is None:
            print(f"{name:<8} {skipped.get(name, 'not measured')}")
            continue
        print(
            f"{name:<8} {summary.rps:8.1f} {summary.p50_ms:8.2f} {summary.p99_ms:8.2f} "
            f"{_number(ratio(summary, direct), 9)} {_number(summary.cpu_ms_per_request, 11, 3)} "
            f"{_number(summary.backend_cpu_ms_per_request, 12, 3)} "
            f"{_number(summary.backend_busiest_worker_share, 12)} {summary.errors:7d}"
        )
    print(
        "CPU ms/req: the proxy's process group (for direct: the catalog's own). "
        "busiest wkr: share of catalog CPU in its busiest worker (0.50 is even)."
    )
    if half is not None:
        print(f"\nAt {half['rate']:.0f} req/s (half the direct maximum), p50 latency:")
        for name, run in half["targets"].items():
            added = half["added_p50_ms"].get(name)
            paired = half["added_p50_ms_paired"].get(name)
            extra = (
                f"  ({added:+.2f} ms vs direct; round by round {paired:+.2f} ms)"
                if added is not None
                else ""
            )
            flag = "  SHORT OF RATE" if run["rps"] < 0.95 * half["rate"] else ""
            service = run["backend_service_p50_ms"]
            own = f"  catalog's own p50 {service:.2f} ms" if service is not None else ""
            print(
                f"  {name:<8} {run['p50_ms']:7.2f} ms  p99 {run['p99_ms']:7.2f} ms  "
                f"({run['rps']:.0f} req/s){extra}{own}{flag}"
            )


def _round_line(label: str, run: RunResult, paced: bool = False) -> str:
    line = f"{label:<8} {run.rps:8.1f} req/s  p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms"
    if run.errors:
        line += f"  {run.errors} errors"
    if run.backend_service_p50_ms is not None:
        line += f"  (catalog's own p50 {run.backend_service_p50_ms:.2f} ms)"
    share = run.backend_busiest_worker_share
    # Below saturation one worker may well serve most requests: only a full-speed run suffers.
    if not paced and share is not None and share > UNBALANCED_SHARE:
        line += f"  (unbalanced: one catalog worker took {share:.0%} of catalog CPU)"
    return line


# --- the run -----------------------------------------------------------------


def bench(
    settings: Settings, workdir: Path, launcher: ServiceLauncher, siblings: list[RunningService]
) -> dict[str, Any]:
    machine = machine_info()
    gateway_port = free_port()
    verifier = {"JWT_JWKS_URL": f"http://127.0.0.1:{gateway_port}/.well-known/jwks.json"}

    print("Starting catalog (seeded), users and gateway...", flush=True)
    catalog = start_catalog(settings, launcher, workdir, siblings, verifier)
    catalog_pgids = [_pid(catalog), *(_pid(sibling) for sibling in siblings)]
    catalog_processes = Catalog(
        pgids=catalog_pgids,
        access_logs=[workdir / f"catalog-access-{n}.log" for n in range(len(catalog_pgids))]
        if settings.catalog_timing
        else [],
    )
    users = launcher.start("users", env={"ACCESS_LOG": "false", **verifier})
    gateway_metrics = workdir / "prometheus-gateway"
    gateway_metrics.mkdir()
    gateway = launcher.start(
        "gateway",
        port=gateway_port,
        env={
            "ACCESS_LOG": "false",
            # As deployed (compose, k8s): several workers, metrics aggregated across them.
            "WEB_CONCURRENCY": str(settings.gateway_workers),
            "PROMETHEUS_MULTIPROC_DIR": str(gateway_metrics),
            "CATALOG_URL": catalog.url,
            "USERS_URL": users.url,
            "LOGIN_RATE_PER_IP": "1000/min",
            "GATEWAY_RATE_LIMIT_AUTHENTICATED": "1000000/min",
            # One token for the whole run, however long it is configured to take.
            "JWT_ACCESS_TOKEN_MINUTES": "1440",
            **settings.gateway_env,
        },
        command=gateway_command(settings.gateway_cmd, gateway_port, settings.gateway_workers)
        if settings.gateway_cmd
        else None,
    )
    token = access_token(users, gateway)
    traced = None
    if settings.tracing:
        sink_url = otlp_sink_start()
        keys = gateway.var_dir / "jwt"
        traced = launcher.start(
            "gateway",
            instance_of=gateway,
            env={
                **{k: v for k, v in gateway.env.items() if k.startswith(("GATEWAY_", "JWT_"))},
                "ACCESS_LOG": "false",
                "WEB_CONCURRENCY": str(settings.gateway_workers),
                "CATALOG_URL": catalog.url,
                "USERS_URL": users.url,
                "JWT_PRIVATE_KEY": str(keys / "private.pem"),
                "JWT_PUBLIC_KEY": str(keys / "public.pem"),
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url,
                "OTEL_TRACES_SAMPLER": "always_on",
                "OTEL_SERVICE_NAME": "gateway-traced",
            },
        )

    products = httpx.get(f"{catalog.url}/api/catalog/products/?page_size=1", timeout=10).json()
    path = f"/api/catalog/products/{products['results'][0]['id']}/"
    upstream = catalog.url.removeprefix("http://")
    with nginx_running(workdir, upstream, settings.nginx_workers) as (nginx_url, nginx_pgid):
        targets = [
            Target("direct", catalog.url + path, None),
            Target("gateway", gateway.url + path, _pid(gateway)),
            *([Target("traced", traced.url + path, _pid(traced))] if traced else []),
            Target("nginx", nginx_url + path, nginx_pgid),
        ]
        for target in targets:
            target.skipped = probe(target.url, token)
            if target.name in ("gateway", "traced") and (target.skipped or "").startswith("404"):
                target.skipped = "no proxy yet"
            if target.skipped and target.name not in ("gateway", "traced"):
                raise BenchError(f"{target.name} does not serve {path}: {target.skipped}")
            if target.skipped:
                print(f"{target.name}: {target.skipped}; measuring the others", flush=True)
        active = [target for target in targets if target.skipped is None]

        runs: dict[str, list[RunResult]] = {target.name: [] for target in active}
        for round_number in range(1, settings.rounds + 1):
            for target in active:
                run = measure(settings, target, catalog_processes, token)
                runs[target.name].append(run)
                print(f"round {round_number}/{settings.rounds} {_round_line(target.name, run)}")
        results: dict[str, Summary | None] = dict.fromkeys(TARGETS)
        for target in active:
            results[target.name] = summarize(target, runs[target.name])

        half = None
        direct = results["direct"]
        if settings.half_rate and direct is not None:
            half = half_rate_runs(settings, active, catalog_processes, token, direct.rps / 2)

    skipped = {target.name: target.skipped for target in targets if target.skipped}
    print_table(results, skipped, half)
    return {
        **{name: asdict(summary) if summary else None for name, summary in results.items()},
        "gateway_status": skipped.get("gateway", "measured"),
        "gateway_ratio": ratio(results["gateway"], results["direct"]),
        "nginx_ratio": ratio(results["nginx"], results["direct"]),
        "gateway_vs_nginx": ratio(results["gateway"], results["nginx"]),
        "traced_ratio": ratio(results["traced"], results["direct"]),
        "traced_vs_nginx": ratio(results["traced"], results["nginx"]),
        "added_p50_ms_at_half_rate_traced": half["added_p50_ms"].get("traced") if half else None,
        "added_p50_ms_at_half_rate": half["added_p50_ms"].get("gateway") if half else None,
        "half_rate": half,
        "machine": machine,
        "settings": {
            "wrk": f"-t{settings.threads} -c{settings.connections} -d{settings.duration}",
            "warmup": settings.warmup,
            "rounds": settings.rounds,
            "request": f"GET {path} with Authorization: Bearer <access token>",
            "catalog": (
                f"{len(catalog_pgids)} instance(s) sharing the port (SO_REUSEPORT)"
                if siblings
                else f"one gunicorn, WEB_CONCURRENCY={settings.catalog_workers}"
            ),
            "catalog_cmd": _command_line(catalog_pgids[0]),
            "gateway_cmd": _command_line(_pid(gateway)),
            "gateway_workers": settings.gateway_workers,
            "gateway_env": settings.gateway_env,
            "catalog_timing": settings.catalog_timing,
            "tracing": "traced: OTEL_TRACES_SAMPLER=always_on, OTLP/HTTP to a local sink"
            if settings.tracing
            else "off",
            "nginx_workers": settings.nginx_workers,
        },
    }


def half_rate_runs(
    settings: Settings, active: list[Target], catalog: Catalog, token: str, rate: float
) -> dict[str, Any]:
    print(f"Paced rounds at {rate:.0f} req/s (half the direct maximum)...", flush=True)
    runs: dict[str, list[RunResult]] = {target.name: [] for target in active}
    for round_number in range(1, settings.rounds + 1):
        for target in active:
            run = measure(settings, target, catalog, token, rate)
            runs[target.name].append(run)
            line = _round_line(target.name, run, paced=True)
            print(f"paced {round_number}/{settings.rounds} {line}")
    # "rps" here is the rate achieved, to compare with the rate asked.
    targets = {target.name: asdict(summarize(target, runs[target.name])) for target in active}
    direct_p50 = targets["direct"]["p50_ms"]
    return {
        "rate": round(rate, 1),
        "method": "wrk paced by bench/wrk_report.lua (fixed per-thread schedule)",
        "targets": targets,
        "added_p50_ms": {
            name: round(figures["p50_ms"] - direct_p50, 3)
            for name, figures in targets.items()
            if name != "direct"
        },
        # The same, round by round (each target against the direct run just before it),
        # then the median: less swayed by drift of the machine between rounds.
        "added_p50_ms_paired": {
            name: round(
                statistics.median(
                    run.p50_ms - direct.p50_ms
                    for run, direct in zip(runs[name], runs["direct"], strict=True)
                ),
                3,
            )
            for name in runs
            if name != "direct"
        },
    }


def parse_args() -> Settings:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk -t")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c")
    parser.add_argument("--duration", default="10s", help="wrk -d of each measured run")
    parser.add_argument("--warmup", default="2s", help="wrk -d of the warm-up before each run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per target")
    parser.add_argument(
        "--no-half-rate", action="store_true", help="skip the paced runs at half the direct rate"
    )
    parser.add_argument("--catalog-workers", type=int, default=2, help="catalog processes")
    parser.add_argument(
        "--catalog-one-arbiter",
        action="store_true",
        help="one catalog gunicorn with WEB_CONCURRENCY workers instead of one single-worker "
        "gunicorn per worker sharing the port (SO_REUSEPORT)",
    )
    parser.add_argument(
        "--gateway-workers",
        type=int,
        default=1,
        help="gateway WEB_CONCURRENCY (1, as make run and the Procfile)",
    )
    parser.add_argument("--nginx-workers", default="auto", help="nginx worker_processes")
    parser.add_argument(
        "--gateway-cmd",
        default=os.environ.get("GATEWAY_CMD") or None,
        help="server command for the gateway instead of tests/harness.py's, run in "
        "gateway_svc/ with {python}, {port}, {bind}, {workers} filled in (default: $GATEWAY_CMD)",
    )
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the gateway, e.g. GATEWAY_SCHED_SLICE_US=0 (repeatable)",
    )
    parser.add_argument(
        "--catalog-timing",
        action="store_true",
        help="log catalog's own service time per request (gunicorn access log, %%(D)s) and "
        "report its median per run: shows how much of a proxy's added latency is the "
        "upstream slowed down by the proxy's load on shared cores",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="also measure a second gateway with tracing on (OTEL_TRACES_SAMPLER=always_on, "
        "spans exported over OTLP/HTTP to a local sink), side by side with the untraced one",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    args = parser.parse_args()
    return Settings(
        threads=args.threads,
        connections=args.connections,
        duration=args.duration,
        warmup=args.warmup,
        rounds=args.rounds,
        half_rate=not args.no_half_rate,
        catalog_workers=args.catalog_workers,
        catalog_one_arbiter=args.catalog_one_arbiter,
        gateway_workers=args.gateway_workers,
        nginx_workers=args.nginx_workers,
        gateway_cmd=args.gateway_cmd,
        gateway_env=dict(item.split("=", 1) for item in args.gateway_env),
        catalog_timing=args.catalog_timing,
        tracing=args.tracing,
        output=args.output,
    )


def _raise_exit(signum: int, _frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def main() -> int:
    settings = parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows through make's pipe too
    # SIGTERM and SIGHUP unwind like Ctrl-C, so the finally block stops everything;
    # SIGINT too when started in the background (where the shell ignores it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    launcher = ServiceLauncher(workdir)
    siblings: list[RunningService] = []
    try:
        results = bench(settings, workdir, launcher, siblings)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr)
        return 130
    except SystemExit:  # SIGTERM or SIGHUP, see _raise_exit
        print("\nstopped: stopping everything", file=sys.stderr)
        raise
    except Exception as error:
        for service in [*launcher.running, *siblings]:
            if tail := service.log_tail(20):
                print(f"\n--- {service.name} log (last lines) ---\n{tail}", file=sys.stderr)
        if isinstance(error, BenchError):
            print(f"\nbenchmark failed: {error}", file=sys.stderr)
            return 1
        raise
    finally:
        for sibling in siblings:
            sibling.stop()
        launcher.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    settings.output.parent.mkdir(parents=True, exist_ok=True)
    settings.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nWritten {settings.output}")
    # A gateway that answers but not with 200 is a broken setup, not "not built yet".
    return 0 if results["gateway_status"] in ("measured", "no proxy yet") else 1


if __name__ == "__main__":
    sys.exit(main())
