"""Start services as real gunicorn processes, each on its own PostgreSQL database.

Used by the cross-service tests (gateway, saga, chaos) through the
``services`` fixture in ``conftest.py``::

    catalog = services.start("catalog", seed=True)
    httpx.get(f"{catalog.url}/api/catalog/products/")
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import psycopg2
from psycopg2 import sql

from tests.servers import existing_url

if TYPE_CHECKING:
    from common.discovery.testing import EtcdServer

REPO = Path(__file__).resolve().parents[1]
# The run's servers (scripts/run_tests.py starts private ones and says where they
# are); outside a run, the ones TEST_SERVERS=existing would use.
POSTGRES_URL = existing_url("TEST_POSTGRES_URL")
BROKER_URL = existing_url("TEST_BROKER_URL")
REDIS_URL = existing_url("TEST_REDIS_URL")
READY_TIMEOUT = float(os.environ.get("TEST_READY_TIMEOUT", "60"))

SEED_COMMANDS = {"catalog": ["seed_catalog", "--no-progress"]}
# What gunicorn serves: a WSGI app, except for the gateway's ASGI proxy (uvicorn workers).
SERVER_APP = {
    "gateway": ["-k", "gateway_svc.workers.GatewayWorker", "gateway_svc.asgi:application"]
}
# Run before a service starts, whatever the test asks for.
PREPARE_COMMANDS = {"gateway": [["generate_jwt_keys"]]}
# Services that serve gRPC (manage.py grpc_serve) next to HTTP, and the variable that
# tells the gateway where: a gateway started by a launcher reaches the launcher's latest.
GRPC_URL_VARIABLES = {
    "catalog": "CATALOG_GRPC_URL",
    "users": "USERS_GRPC_URL",
    "orders": "ORDERS_GRPC_URL",
}


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it is truthy or ``timeout`` passes; its last answer decides."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _admin_execute(statement: sql.Composable) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
    parts = urlsplit(POSTGRES_URL)
    connection = psycopg2.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        dbname="postgres",
    )
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def database_create(name: str) -> str:
    """A new, empty database; returns its URL."""
    _admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"{POSTGRES_URL.rstrip('/')}/{name}"


def database_drop(name: str) -> None:
    _admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass
class RunningService:
    """One service process: its URL, database and a way to run its manage.py."""

    name: str
    url: str
    database_name: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def project_dir(self) -> Path:
        return REPO / f"{self.name}_svc"

    @property
    def var_dir(self) -> Path:
        return Path(self.env["VAR_DIR"])

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``manage.py`` against this service's database; fails loudly."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.project_dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{self.name}: manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def start_worker(self) -> subprocess.Popen[bytes]:
        """This service's Celery worker on its queue (QUEUE_PREFIX keeps test runs apart)."""
        queue = self.env.get("QUEUE_PREFIX", "") + self.name
        log = (self.var_dir / "worker.log").open("ab")
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                f"{self.name}_svc",
                "worker",
                "-Q",
                queue,
                "-n",
                f"{queue}@%h",
                "-P",
                "threads",
                "-c",
                "4",
                "-l",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=self.project_dir,
            # Each task's received/succeeded lines, with its trace id, for the tests to read.
            env={"CELERY_TASK_LOG_LEVEL": "INFO", **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.extra.setdefault("workers", []).append(worker)
        return worker

    def start_manage(self, *args: str) -> subprocess.Popen[bytes]:
        """A long-running ``manage.py`` command of this service (outbox relay, event
        consumer, saga watchdog), stopped with the workers; its output goes to
        ``<command>.log`` in the service's var dir."""
        log = (self.var_dir / f"{args[0]}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=self.project_dir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.extra.setdefault("workers", []).append(process)
        return process

    @property
    def grpc_address(self) -> str:
        """host:port of this service's gRPC server (``start_grpc``)."""
        return self.extra["grpc_address"]

    def start_grpc(self, timeout: float = READY_TIMEOUT) -> subprocess.Popen[bytes]:
        """``manage.py grpc_serve`` on a free port, stopped with the workers; returns once its
        health service answers SERVING."""
        address = f"127.0.0.1:{free_port()}"
        process = self.start_manage("grpc_serve", "--bind", address)
        self.extra["grpc_address"] = address
        self.extra["grpc"] = process
        grpc_wait_serving(address, process=process, timeout=timeout)
        return process

    def stop_workers(self, sig: int = signal.SIGTERM) -> None:
        for worker in self.extra.pop("workers", []):
            if worker.poll() is None:
                os.killpg(worker.pid, sig)
                try:
                    worker.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait(timeout=15)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self, command: list[str] | None = None) -> None:
        """Start the server; ``command`` replaces the default gunicorn command line.

        The replacement runs in the service's folder with its environment and
        must listen on this service's port (benchmarks try other server models).
        """
        port = urlsplit(self.url).port
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command
            or [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:common.gunicorn_conf",
                "--bind",
                f"127.0.0.1:{port}",
                *SERVER_APP.get(self.name, [f"{self.name}_svc.wsgi"]),
            ],
            cwd=self.project_dir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.wait_ready()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            try:
                response = httpx.get(
                    f"{self.url}/ready/", headers={"Accept": "application/json"}, timeout=5
                )
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """Stop the process group (gunicorn's arbiter and its workers)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)


def grpc_wait_serving(
    address: str, *, process: subprocess.Popen[bytes] | None = None, timeout: float
) -> None:
    """Block until the gRPC health service at ``address`` answers SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"grpc_serve on {address} exited at start")
            try:
                # wait_for_ready: the call waits for the port to open instead of failing.
                answer = health.Check(
                    health_pb2.HealthCheckRequest(), timeout=1.0, wait_for_ready=True
                )
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"gRPC on {address} not serving after {timeout}s")


def delete_queues(names: set[str] | list[str]) -> None:
    """Leave no queue of this run behind on the shared broker."""
    from kombu import Connection

    with Connection(BROKER_URL, connect_timeout=5) as connection:
        channel = connection.channel()
        for name in names:
            try:
                channel.queue_delete(name)
            except Exception:
                channel = connection.channel()


def run_queue_names(prefix: str) -> list[str]:
    """Every queue a shop started with QUEUE_PREFIX ``prefix`` declares."""
    events = [f"{prefix}{service}.events" for service in ("catalog", "users")]
    commands = [f"{prefix}{service}" for service in ("catalog", "users", "orders")]
    dead = [f"{name}.dlq" for name in events] + [f"{name}.commands.dlq" for name in commands]
    return commands + events + dead


# The services that sign what they send (common.signing) and so have a key pair.
SIGNING_SERVICES = ("catalog", "users", "orders")


def signing_keys(folder: Path) -> Path:
    """One Ed25519 pair per signing service in ``folder`` (made once), as ``make run``
    makes them in var/signing/: ``<service>.pem`` private, ``public/<service>.pem``."""
    from common.signing import key_pair_generate

    for name in SIGNING_SERVICES:
        key_pair_generate(
            private_key_file=folder / f"{name}.pem",
            public_key_file=folder / "public" / f"{name}.pem",
        )
    return folder


def signing_env(folder: Path, name: str) -> dict[str, str]:
    """A service's own private key and the public keys' folder, as ``make run`` gives them."""
    return {
        "MESSAGE_SIGNING_KEY": str(folder / f"{name}.pem"),
        "MESSAGE_SIGNING_PUBLIC_KEYS": str(folder / "public"),
    }


class ServiceLauncher:
    """Starts services for one test and cleans every trace up afterwards."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: list[RunningService] = []
        # Queues of this launcher's services, apart from any other run on the same broker.
        self.queue_prefix = f"t{uuid.uuid4().hex[:8]}-"
        # Every service of one launcher signs with its own key and knows the others'.
        self.signing_keys = signing_keys(workdir / "signing")

    def start(
        self,
        name: str,
        *,
        seed: bool = False,
        env: dict[str, str] | None = None,
        port: int | None = None,
        command: list[str] | None = None,
        instance_of: RunningService | None = None,
        grpc: bool = True,
    ) -> RunningService:
        """Start a service on a new database, or, with ``instance_of``, another instance
        of a running service on that one's database. Catalog, users and orders get their
        gRPC server too (unless ``grpc`` is false); the gateway is pointed at the latest ones."""
        if instance_of is not None:
            database_name, database_url = "", instance_of.env["DATABASE_URL"]
        else:
            database_name = f"it_{name}_{uuid.uuid4().hex[:10]}"
            database_url = database_create(database_name)
        var_dir = self.workdir / f"{name}-{len(self.running)}"
        var_dir.mkdir(parents=True)
        service = RunningService(
            name=name,
            url=f"http://127.0.0.1:{port or free_port()}",
            database_name=database_name,
            env={
                **os.environ,
                "ENVIRONMENT": "local",
                "DATABASE_URL": database_url,
                "BROKER_URL": BROKER_URL,
                "VAR_DIR": str(var_dir),
                "WEB_CONCURRENCY": "1",
                "QUEUE_PREFIX": self.queue_prefix,
                **signing_env(self.signing_keys, name),
                **(self._grpc_targets() if name == "gateway" else {}),
                **(env or {}),
            },
            log_path=var_dir / "service.log",
        )
        self.running.append(service)
        if instance_of is None:
            service.manage("migrate", "--noinput", "-v", "0")
            for prepare in PREPARE_COMMANDS.get(name, []):
                service.manage(*prepare)
            if seed and name in SEED_COMMANDS:
                service.manage(*SEED_COMMANDS[name])
        service.start(command)
        if grpc and name in GRPC_URL_VARIABLES:
            service.start_grpc()
        return service

    def _grpc_targets(self) -> dict[str, str]:
        targets = {}
        for service in self.running:  # the latest of each name wins
            if service.name in GRPC_URL_VARIABLES and "grpc_address" in service.extra:
                targets[GRPC_URL_VARIABLES[service.name]] = service.grpc_address
        return targets

    def stop_all(self) -> None:
        for service in reversed(self.running):
            service.stop_workers()
            service.stop()
            if service.database_name:
                database_drop(service.database_name)
        if self.running:
            delete_queues(
                {self.queue_prefix + service.name for service in self.running}
                | {f"{self.queue_prefix}{service.name}.commands.dlq" for service in self.running}
            )
        self.running.clear()


class Sidecar:
    """``manage.py register_service`` for one service, as a process of its own."""

    def __init__(self, service: RunningService, etcd: EtcdServer, *, ttl: int) -> None:
        self.etcd = etcd
        port = service.url.rsplit(":", 1)[1]
        self.key = f"/services/{service.name}/{service.name}-127.0.0.1-{port}"
        self.log_path = service.var_dir / "sidecar.log"
        env = {
            **service.env,
            "DISCOVERY": "etcd",
            "ETCD_URL": etcd.url,
            "LOG_FORMAT": "plain",
        }
        command = [sys.executable, "manage.py", "register_service", "--name", service.name]
        command += ["--url", service.url, "--ttl", str(ttl)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=service.project_dir, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def entry(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The registration as etcd holds it now: (value, metadata), or None."""
        found = self.etcd.client().get(self.key, metadata=True)
        if not found:
            return None
        value, metadata = found[0]
        return json.loads(value), metadata

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, *, timeout: float = 10) -> int:
        """SIGTERM, then the exit status; a sidecar still running after ``timeout`` fails."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the sidecar still runs {timeout}s after SIGTERM; its log:\n{self.log()}"
            ) from None


def shop_start(
    launcher: ServiceLauncher,
    *,
    env: dict[str, str] | None = None,
    orders_env: dict[str, str] | None = None,
    gateway_env: dict[str, str] | None = None,
    consumers: bool = True,
    watchdog: bool = False,
) -> dict[str, RunningService]:
    """The whole shop as real processes: catalog (seeded), users and orders with their
    Celery workers, orders' outbox relay, the event consumers of catalog and users (unless
    ``consumers`` is false), the saga watchdog if asked, and the gateway in front, whose
    JWKS every service verifies tokens with. ``env`` goes to every process."""
    port = free_port()
    shared = {**(env or {}), "JWT_JWKS_URL": f"http://127.0.0.1:{port}/.well-known/jwks.json"}
    catalog = launcher.start("catalog", seed=True, env=shared)
    users = launcher.start("users", env=shared)
    orders = launcher.start("orders", env={**shared, **(orders_env or {})})
    for service in (catalog, users, orders):
        service.start_worker()
    if consumers:
        for consumer in (catalog, users):
            consumer.manage("consume_events", "--setup-only")
            consumer.start_manage("consume_events")
    orders.start_manage("outbox_relay")
    if watchdog:
        orders.start_manage("saga_watchdog")
    gateway = launcher.start(
        "gateway",
        port=port,
        env={
            **(env or {}),
            "CATALOG_URL": catalog.url,
            "USERS_URL": users.url,
            "ORDERS_URL": orders.url,
            **(gateway_env or {}),
        },
    )
    return {"gateway": gateway, "catalog": catalog, "users": users, "orders": orders}
