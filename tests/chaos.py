"""Chaos for the cross-service tests: a RabbitMQ node of the test's own, a whole shop
to break, and ways to kill its processes and look into its databases.

A test that stops its broker must not stop the one every other test of the run
uses, so it starts a node of its own: ``PrivateRabbitMQ`` (tests/servers.py, the
same class the test runner starts the run's broker with), with its own node name,
ports, data and log folders, config, Erlang cookie and epmd, and no plugins.
``stop()`` stops the broker as ``rabbitmqctl stop_app`` does (every client
connection dropped, new ones refused, as in a real outage); ``start()`` brings it
back on the same data, with the durable queues and their persistent messages, in a
few seconds: the Erlang VM under it stays up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.harness import RunningService, ServiceLauncher, free_port
from tests.servers import RABBITMQ_BIN
from tests.servers import PrivateRabbitMQ as PrivateRabbitMQ  # the chaos tests' broker
from tests.test_saga import Shop


def rabbitmq_available() -> str:
    """Why a private node cannot run here, or "" when it can."""
    if not (RABBITMQ_BIN / "rabbitmq-server").exists():
        return f"no rabbitmq-server in {RABBITMQ_BIN} (set TEST_RABBITMQ_BIN)"
    return ""


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


def command_publish(
    broker_url: str,
    queue: str,
    task: str,
    *,
    signed_by: RunningService | None = None,
    signer: str | None = None,
    task_id: str | None = None,
    signed_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> str:
    """Put a command on a participant's queue as a sender would (Celery's own message
    format), for a late or stray delivery; returns its task id.

    ``signed_by`` signs it with that service's key (common.signing), as that service
    itself would; ``signer`` names another service than the key's (a forgery), and
    ``signed_kwargs`` signs other kwargs than those sent (tampering). Unsigned without
    ``signed_by``."""
    import uuid
    from pathlib import Path

    from celery import Celery

    from common.signing import command_payload, private_key_load, signature_headers

    task_id = task_id or str(uuid.uuid4())
    headers: dict[str, str] = {}
    if signed_by is not None:
        name = signer or signed_by.name
        payload = command_payload(
            task=task,
            task_id=task_id,
            args=(),
            kwargs=kwargs if signed_kwargs is None else signed_kwargs,
            signer=name,
        )
        key = private_key_load(Path(signed_by.env["MESSAGE_SIGNING_KEY"]))
        headers = signature_headers(signer=name, payload=payload, private_key=key)
    app = Celery("chaos", broker=broker_url, set_as_current=False)
    # Declared on publish as the services declare it (else PRECONDITION_FAILED).
    app.conf.task_create_missing_queue_type = "quorum"
    try:
        app.send_task(task, kwargs=kwargs, queue=queue, task_id=task_id, headers=headers)
    finally:
        app.close()
    return task_id


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
