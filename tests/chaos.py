"""Chaos for the cross-service tests: a RabbitMQ node of the test's own, a whole shop
to break, and ways to kill its processes and look into its databases.

The machine's RabbitMQ (127.0.0.1:5672) is shared by everyone's test runs, so a
test that stops its broker starts a private node instead: its own node name,
ports, data and log folders, config and Erlang cookie (in ``HOME``), no
plugins. Only epmd, the Erlang port mapper, is shared, which is harmless.
``stop()`` stops the broker as ``rabbitmqctl stop_app`` does: its listeners
close, every client connection is dropped, new ones are refused and its queues
are shut down, as in a real outage. ``start()`` starts it again on the same
data folder, which brings back the durable queues with their persistent
messages. The Erlang VM under it stays up, so coming back takes a few seconds
instead of a whole boot (10 to 40 s on a busy machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.harness import RunningService, ServiceLauncher, free_port
from tests.test_saga import Shop

RABBITMQ_BIN = Path(os.environ.get("TEST_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
BOOT_TIMEOUT = 90.0


def rabbitmq_available() -> str:
    """Why a private node cannot run here, or "" when it can."""
    if not (RABBITMQ_BIN / "rabbitmq-server").exists():
        return f"no rabbitmq-server in {RABBITMQ_BIN} (set TEST_RABBITMQ_BIN)"
    return ""


class PrivateRabbitMQ:
    """One RabbitMQ node under ``workdir``, on free loopback ports; ``stop()``/``start()``
    take it down and bring it back with its data."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.node = f"chaos-{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (workdir / "enabled_plugins").write_text("[].\n")
        (workdir / "rabbitmq-env.conf").write_text("")  # not the machine's /etc/rabbitmq one
        self.env = {
            **os.environ,
            "HOME": str(workdir),  # the Erlang cookie lives here
            "RABBITMQ_CONF_ENV_FILE": str(workdir / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(workdir / "log"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self, *, wait: bool = True) -> None:
        """Boot the node, or start the broker again on a running node (after ``stop()``);
        with ``wait``, until it takes AMQP connections."""
        if self.process is not None and self.process.poll() is None:
            self._ctl("start_app")
        else:
            log = (self.workdir / "server.log").open("ab")
            self.process = subprocess.Popen(
                [str(RABBITMQ_BIN / "rabbitmq-server")],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not self.reachable():
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"RabbitMQ node {self.node} is not running:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ node {self.node} did not start:\n{self.log_tail()}")
            time.sleep(0.2)

    def reachable(self) -> bool:
        from kombu import Connection

        try:
            with Connection(self.url, connect_timeout=2) as connection:
                connection.ensure_connection(max_retries=0, interval_start=0)
        except Exception:
            return False
        return True

    def stop(self) -> None:
        """Stop the broker: connections dropped and refused until ``start()``."""
        self._ctl("stop_app")
        if self.reachable():
            raise RuntimeError(f"RabbitMQ node {self.node} still takes connections")

    def _ctl(self, command: str) -> None:
        result = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {command} failed:\n{result.stdout}{result.stderr}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def close(self) -> None:
        """Kill the node and delete its data: nothing of it is kept."""
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / "server.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def shop_start(launcher: ServiceLauncher, *, env: dict[str, str] | None = None) -> Shop:
    """The whole shop as in tests/test_saga.py (workers, event relay and consumers), plus
    the saga watchdog; ``env`` goes to every service (say ``BROKER_URL``).

    Catalog, users and orders start side by side (each migrates its own database,
    the slow part); the gateway, which needs their addresses, after them.
    """
    port = free_port()
    shared = {"JWT_JWKS_URL": f"http://127.0.0.1:{port}/.well-known/jwks.json", **(env or {})}
    with ThreadPoolExecutor(3) as pool:
        starting = [
            pool.submit(launcher.start, name, seed=name == "catalog", env=shared)
            for name in ("catalog", "users", "orders")
        ]
        catalog, users, orders = (future.result() for future in starting)
    for service in (catalog, users, orders):
        service.start_worker()
    for consumer in (catalog, users):
        consumer.manage("consume_events", "--setup-only")
        consumer.start_manage("consume_events")
    orders.start_manage("outbox_relay")
    watchdog_start(orders)
    gateway = launcher.start(
        "gateway",
        port=port,
        env={
            **(env or {}),
            "CATALOG_URL": catalog.url,
            "USERS_URL": users.url,
            "ORDERS_URL": orders.url,
            "GATEWAY_RATE_LIMIT_AUTHENTICATED": "100000/min",
            "LOGIN_RATE_PER_IP": "100000/min",
        },
    )
    return Shop(gateway=gateway, catalog=catalog, users=users, orders=orders)


def watchdog_start(orders: RunningService, env: dict[str, str] | None = None) -> None:
    """``manage.py saga_watchdog`` for ``orders``, with ``env`` over the service's own
    (``SAGA_MAX_ATTEMPTS`` is the watchdog's alone: it is the one that gives up)."""
    log = (orders.var_dir / "saga_watchdog.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "saga_watchdog", "--interval", "0.5"],
        cwd=orders.project_dir,
        env={**orders.env, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    orders.extra.setdefault("workers", []).append(process)


def watchdog_restart(orders: RunningService, env: dict[str, str] | None = None) -> None:
    for process in list(orders.extra.get("workers", [])):
        if "saga_watchdog" in process.args:
            kill(orders, process, signal.SIGTERM)
    watchdog_start(orders, env)


def worker_of(service: RunningService) -> subprocess.Popen[bytes]:
    """The service's Celery worker (its other background processes are manage.py commands)."""
    for process in service.extra.get("workers", []):
        if "celery" in process.args and process.poll() is None:
            return process
    raise LookupError(f"{service.name} has no running Celery worker")


def kill(service: RunningService, process: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to one background process of ``service`` (its whole group) and reap it."""
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
    service.extra["workers"].remove(process)


def shell_json(service: RunningService, code: str) -> Any:
    """Run Python in the service's ``manage.py shell``; ``code`` ends with an expression
    whose value comes back (through JSON)."""
    *statements, expression = code.strip().splitlines()
    script = "\n".join([*statements, "import json", f"print(json.dumps({expression}))"])
    return json.loads(service.manage("shell", "-c", script).stdout.strip().splitlines()[-1])


def command_publish(broker_url: str, queue: str, task: str, **kwargs: Any) -> None:
    """Put a command on a participant's queue as a sender would (Celery's own message
    format), for a late or stray delivery."""
    from celery import Celery

    app = Celery("chaos", broker=broker_url, set_as_current=False)
    try:
        app.send_task(task, kwargs=kwargs, queue=queue)
    finally:
        app.close()


def reconfigure(service: RunningService, env: dict[str, str], *, server: bool = True) -> None:
    """Restart the service's background processes (workers, relay, consumers, watchdog),
    and unless ``server`` is false its web server, with ``env`` changed, as an operator
    redeploys with new settings; nothing happens when every variable has that value.

    Everything is stopped at once (SIGTERM, then waited for) and started again: one
    by one, each waiting for the last, costs a minute on a busy machine.
    """
    if all(service.env.get(name) == value for name, value in env.items()):
        return
    background = service.extra.pop("workers", [])
    stopping = [*background, *([service.process] if server and service.process else [])]
    for process in stopping:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in stopping:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
    service.env.update(env)
    for process in background:
        if "celery" in process.args:
            service.start_worker()
        elif "saga_watchdog" in process.args:
            watchdog_start(service)
        else:
            service.start_manage(*process.args[2:])  # [python, "manage.py", command, ...]
    if server:
        service.start()  # waits until ready, while the background processes boot too
