"""The shop in Docker, as `make compose-up` runs it: real images, a real dockerd, the
compose file as shipped (on the Debian stand-ins for the official images), and the
tests reaching it only through the gateway published on 127.0.0.1.

One stack per module (about a minute to come up), with two catalog replicas. The
tests run in file order; each one that breaks something mends it before it ends.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from tests.docker_support import REPO, ensure_images
from tests.harness import free_port, signing_keys, wait_until

pytestmark = pytest.mark.system

COMPOSE_FILE = REPO / "compose" / "docker-compose.yml"
OTLP_SINK = REPO / "tests" / "otlp_sink.py"
# What one order's trace holds at least, by service name (common.tracing's defaults).
# Not the relay: orders' web process and worker publish the events they record once they
# commit (common.events.publish_on_commit); the relay only sweeps what they could not.
TRACED_SERVICES = {
    "gateway",
    "orders",
    "orders-worker",
    "catalog-worker",
    "users-worker",
    "catalog-consumer",
    "users-consumer",
}
PASSWORD = "correct horse battery"
READY_TIMEOUT = 300
# The gateway's operators' surface (admin, /metrics, probes): inside the network only.
GATEWAY_INTERNAL_PORT = 8080
SETTLE_TIMEOUT = 90
SETTLED = {"APPROVED", "REJECTED", "CANCELLED"}
# Each service's own RabbitMQ user (common.broker_access).
BROKER_USERS = ("catalog", "users", "orders", "gateway")


class Stack:
    """One compose project: the compose command, its containers and the gateway's URL."""

    def __init__(
        self, project: str, files: list[Path], env_file: Path, env: dict[str, str], url: str
    ) -> None:
        self.project = project
        self.files = files
        self.env_file = env_file
        self.env = env
        self.url = url

    def compose(self, *args: str, timeout: float = 300) -> str:
        command = ["docker-compose", "-p", self.project]
        for file in self.files:
            command += ["-f", str(file)]
        command += ["--env-file", str(self.env_file), *args]
        result = subprocess.run(
            command, capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )
        assert result.returncode == 0, f"{' '.join(args)}: {result.stdout}\n{result.stderr}"
        return result.stdout

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).split()

    def container(self, service: str) -> str:
        (container,) = self.containers(service)
        return container

    def inspect(self, container: str) -> dict[str, Any]:
        output = docker("inspect", container)
        return json.loads(output)[0]

    def get_inside(self, service: str, port: int, path: str) -> tuple[int, str]:
        """GET from inside the service's own container (paths the gateway does not publish)."""
        script = (
            "import sys, urllib.request, urllib.error\n"
            "try:\n"
            f"    r = urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=5)\n"
            "    print(r.status); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code); print(e.read().decode())\n"
        )
        result = subprocess.run(
            ["docker", "exec", self.container(service), "python", "-c", script],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            return 0, result.stderr
        status, _, body = result.stdout.partition("\n")
        return int(status), body

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "200", timeout=120)


def docker(*args: str) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    images = ensure_images()
    folder = tmp_path_factory.mktemp("compose")
    env_file = folder / ".env"
    env_file.write_text(
        "".join(
            f"{name}={secrets.token_hex(16)}\n"
            for name in (
                "SECRET_KEY",
                "POSTGRES_PASSWORD",
                "RABBITMQ_PASSWORD",
                *(f"RABBITMQ_{service.upper()}_PASSWORD" for service in BROKER_USERS),
                "REDIS_PASSWORD",
                "GRAFANA_ADMIN_PASSWORD",
            )
        )
    )
    # The project's own OTLP receiver in the stack, where compose-up would put Jaeger:
    # every process sends its spans to it through OTEL_EXPORTER_OTLP_ENDPOINT.
    override = folder / "otlp-sink.yml"
    override.write_text(
        json.dumps(
            {
                "services": {
                    "otlp-sink": {
                        "image": "${ESHOP_IMAGE:-eshop:latest}",
                        "entrypoint": ["python", "/sink/otlp_sink.py"],
                        "volumes": [f"{OTLP_SINK}:/sink/otlp_sink.py:ro"],
                    }
                }
            }
        )
    )
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))},
        **images,
        "GATEWAY_PORT": str(port),
        "WEB_CONCURRENCY": "1",
        # Every request of the tests comes from one address.
        "GATEWAY_RATE_LIMIT_ANONYMOUS": "100000/min",
        "GATEWAY_RATE_LIMIT_AUTHENTICATED": "100000/min",
        "LOGIN_RATE_PER_IP": "100000/min",
        "REGISTRATION_RATE_PER_IP": "100000/min",
        # A killed replica leaves compose's DNS at once; with the usual 5 s lookups the
        # gateway could drop it before meeting it often enough to open its breaker,
        # which is what the replica test looks at. The gateway resolves once, below.
        "DNS_REFRESH_SECONDS": "3600",
        "GATEWAY_BREAKER_FAIL_MAX": "3",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otlp-sink:4318",
        # The compose secrets behind every service's message signing key, as compose-up
        # makes them (readable by the containers' user through the bind mount).
        "SIGNING_KEYS_DIR": str(signing_keys_for_compose(folder / "signing")),
    }
    shop = Stack(
        f"eshoptest{uuid.uuid4().hex[:8]}",
        [COMPOSE_FILE, override],
        env_file,
        env,
        f"http://127.0.0.1:{port}",
    )
    started = time.monotonic()
    try:
        shop.compose("up", "-d", "--no-build", "--scale", "catalog=2", timeout=READY_TIMEOUT)
        assert wait_until(lambda: ready(shop), timeout=READY_TIMEOUT, interval=1), shop.logs()
        # Both catalog replicas answer; then the gateway starts again and resolves them.
        assert wait_until(lambda: all_healthy(shop, "catalog"), timeout=READY_TIMEOUT, interval=1)
        docker("restart", shop.container("gateway"))
        assert wait_until(lambda: ready(shop), timeout=READY_TIMEOUT, interval=1), shop.logs()
        print(f"\ncompose up to the gateway ready: {time.monotonic() - started:.1f}s")
        yield shop
    finally:
        log = REPO / "var" / "test-results" / f"compose-{shop.project}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        try:
            log.write_text(shop.logs())
        finally:
            shop.compose("--profile", "ops", "down", "-v", "--remove-orphans", timeout=300)


def signing_keys_for_compose(folder: Path) -> Path:
    """An Ed25519 pair per signing service, laid out as scripts/compose.sh lays them out."""
    signing_keys(folder)
    for key in folder.rglob("*.pem"):
        key.chmod(0o644)  # the containers run as uid 10001; the folder stays private
    folder.chmod(0o700)
    return folder


def all_healthy(stack: Stack, service: str) -> bool:
    states = [
        stack.inspect(c)["State"].get("Health", {}).get("Status") for c in stack.containers(service)
    ]
    return bool(states) and set(states) == {"healthy"}


def ready(stack: Stack) -> bool:
    """The gateway's /ready/ (on its internal port) and its published port both answer."""
    if not stack.containers("gateway"):
        return False
    if stack.get_inside("gateway", GATEWAY_INTERNAL_PORT, "/ready/")[0] != 200:
        return False
    try:
        return httpx.get(f"{stack.url}/.well-known/jwks.json", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def customer(url: str) -> dict[str, str]:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    registered = httpx.post(
        f"{url}/api/users/register/", json={"email": email, "password": PASSWORD}, timeout=30
    )
    assert registered.status_code == 201, registered.text
    token = httpx.post(
        f"{url}/api/auth/token/", json={"email": email, "password": PASSWORD}, timeout=30
    )
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access']}"}


def cheap_product(url: str) -> int:
    """A product cheap and plentiful enough that a customer's credit and its stock cover
    every order of a test: a rejection then means something broke."""
    page = httpx.get(
        f"{url}/api/catalog/products/",
        params={"ordering": "price", "in_stock": "true", "page_size": 20},
        timeout=10,
    ).json()["results"]
    return max(page, key=lambda product: product["stock_available"])["id"]


def place(url: str, headers: dict[str, str], product_id: int) -> str:
    response = httpx.post(
        f"{url}/api/orders/",
        json={"lines": [{"product_id": product_id, "quantity": 1}]},
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def settled(
    url: str, headers: dict[str, str], order_ids: list[str], final: set[str] = SETTLED
) -> dict[str, str]:
    """Each order's status once every one is in ``final`` (the last seen if time runs out)."""
    statuses: dict[str, str] = {}

    def done() -> bool:
        for order_id in order_ids:
            if statuses.get(order_id) not in final:
                response = httpx.get(f"{url}/api/orders/{order_id}/", headers=headers, timeout=10)
                statuses[order_id] = response.json().get("status", str(response.status_code))
        return all(status in final for status in statuses.values())

    wait_until(done, timeout=SETTLE_TIMEOUT, interval=0.5)
    return statuses


def test_a_customer_shops_through_the_published_gateway(stack: Stack) -> None:
    products = httpx.get(f"{stack.url}/api/catalog/products/", timeout=10)
    assert products.status_code == 200
    assert products.json()["count"] > 0
    product = products.json()["results"][0]
    headers = customer(stack.url)

    order_id = place(stack.url, headers, product["id"])
    assert settled(stack.url, headers, [order_id]) == {order_id: "APPROVED"}

    listing = httpx.get(f"{stack.url}/api/orders/", headers=headers, timeout=10).json()
    assert [(o["id"], o["status"]) for o in listing["results"]] == [(order_id, "APPROVED")]
    details = httpx.get(f"{stack.url}/api/orders/{order_id}/details/", headers=headers).json()
    assert details["order"]["status"] == "APPROVED"
    assert [line["product"]["id"] for line in details["lines"]] == [product["id"]]
    assert details["customer"]["id"] is not None
    assert details["warnings"] == []

    # The order's status stream, through the published port: every status in order, and
    # the gateway took orders' signed events (none refused into its dead-letter queue).
    with (
        httpx.Client(timeout=60) as client,
        connect_sse(
            client, "GET", f"{stack.url}/api/orders/{order_id}/events/", headers=dict(headers)
        ) as source,
    ):
        assert source.response.status_code == 200, source.response.read()
        statuses = []
        for event in source.iter_sse():
            if event.data:
                statuses.append(event.json()["status"])
                if event.json()["final"]:
                    break
    assert statuses[0] == "PENDING"
    assert statuses[-1] == "APPROVED"
    queues = docker("exec", stack.container("rabbitmq"), "rabbitmqctl", "-q", "list_queues")
    depths = dict(line.split() for line in queues.splitlines() if len(line.split()) == 2)
    assert depths.get("gateway.events.dlq", "0") == "0", depths

    cancel = httpx.post(f"{stack.url}/api/orders/{order_id}/cancel/", headers=headers)
    assert cancel.status_code == 202, cancel.text
    cancelled = settled(stack.url, headers, [order_id], final={"CANCELLED"})
    assert cancelled == {order_id: "CANCELLED"}

    # Every process sent its spans to the OTLP endpoint compose gave it, in the traces of
    # the order (its placing, and its cancel: what the participants' consumers handle).
    def traced_services() -> set[str]:
        logs = docker("logs", stack.container("otlp-sink"))
        spans = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        traces = {span["trace_id"] for span in spans if span["order_id"] == order_id}
        return {span["service"] for span in spans if span["trace_id"] in traces}

    assert wait_until(lambda: traced_services() >= TRACED_SERVICES, timeout=60, interval=1), (
        traced_services()
    )


# Run inside a container of the stack, as that container's broker user (its BROKER_URL):
# each operation on a channel of its own (a refusal closes the channel), publishes
# confirmed, so that a refused publish is seen. Prints "ok" or "refused" for each.
BROKER_ATTEMPTS = """
import json, os, sys
from amqp.exceptions import AccessRefused
from kombu import Connection, Producer

def attempt(connection, operation, *args):
    if operation == "login":
        user, password = args
        url = f"amqp://{user}:{password}@rabbitmq:5672//"
        with Connection(url, connect_timeout=10) as other:
            other.ensure_connection(max_retries=0)
        return
    channel = connection.channel()
    try:
        if operation == "get":
            channel.basic_get(args[0])  # not acknowledged: back to its queue on close
        elif operation == "passive":
            channel.queue_declare(args[0], passive=True)
        elif operation == "declare":
            channel.queue_declare(
                args[0], durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"}
            )
        elif operation == "delete":
            channel.queue_delete(args[0])
        elif operation == "purge":
            channel.queue_purge(args[0])
        elif operation == "publish":
            Producer(channel).publish(
                b"{}", exchange=args[0], routing_key=args[1], content_type="application/json",
                content_encoding="utf-8",
            )
    finally:
        try:
            channel.close()
        except Exception:
            pass

results = {}
url = os.environ["BROKER_URL"]
with Connection(url, transport_options={"confirm_publish": True}, connect_timeout=10) as connection:
    connection.ensure_connection(max_retries=3)
    for operation in json.loads(sys.argv[1]):
        try:
            attempt(connection, *operation)
            results[" ".join(operation)] = "ok"
        except AccessRefused:
            results[" ".join(operation)] = "refused"
print(json.dumps(results))
"""


def broker_attempts(stack: Stack, service: str, expected: dict[tuple[str, ...], str]) -> None:
    """Try each operation as ``service``'s container's broker user; each must end as said."""
    operations = json.dumps([list(operation) for operation in expected])
    result = subprocess.run(
        [
            "docker",
            "exec",
            stack.containers(service)[0],
            "python",
            "-c",
            BROKER_ATTEMPTS,
            operations,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcomes == {" ".join(operation): outcome for operation, outcome in expected.items()}


def test_each_service_reaches_on_the_broker_only_what_its_own_user_allows(stack: Stack) -> None:
    """The order above went through; here what each user may not do (common.broker_access)."""
    # catalog: its own queues, its replies to orders' exchange and the credit step it passes
    # on to users' (the saga's routing slip); nothing else.
    broker_attempts(
        stack,
        "catalog-worker",
        {
            ("passive", "catalog"): "ok",
            ("get", "catalog.events.dlq"): "ok",
            ("get", "orders"): "refused",  # another's commands
            ("get", "users.events"): "refused",  # another's events
            ("delete", "orders"): "refused",
            ("purge", "users"): "refused",
            ("declare", "orders.events"): "refused",
            # The default exchange would reach every queue.
            ("publish", "", "orders"): "refused",
            # Users' exchange takes it (a routing key bound to nothing: no message lands).
            ("publish", "users", "nowhere"): "ok",
            ("publish", "events", "order.approved"): "refused",  # it produces no events
            ("login", "guest", "guest"): "refused",  # no default user
        },
    )
    # users: replies to orders only; catalog, which it never calls, refuses it.
    broker_attempts(
        stack,
        "users-worker",
        {
            ("passive", "users"): "ok",
            ("publish", "catalog", "nowhere"): "refused",
            ("publish", "orders", "nowhere"): "ok",
        },
    )
    # orders: publishes order events only (topic permissions), reads nobody's queue.
    broker_attempts(
        stack,
        "orders-relay",
        {
            ("passive", "orders"): "ok",
            ("publish", "events", "product.updated"): "refused",
            ("publish", "events", "user.deleted"): "refused",
            ("get", "catalog"): "refused",
            ("get", "catalog.events"): "refused",
            ("delete", "users.events.dlq"): "refused",
            ("publish", "", "catalog"): "refused",
        },
    )
    # The gateway hears order events (its order-status feed) and sends nothing to anyone.
    broker_attempts(
        stack,
        "gateway",
        {
            ("passive", "catalog"): "ok",
            ("publish", "catalog", "catalog"): "refused",
            ("publish", "events", "order.approved"): "refused",
            ("get", "catalog.events"): "refused",
            ("declare", "catalog.events.dlq"): "refused",
        },
    )


def test_only_the_gateway_is_published_and_only_on_loopback(stack: Stack) -> None:
    published = {}
    for container in stack.compose("ps", "-q").split():
        info = stack.inspect(container)
        for bindings in (info["NetworkSettings"]["Ports"] or {}).values():
            for binding in bindings or []:
                published[info["Config"]["Labels"]["com.docker.compose.service"]] = binding
    assert list(published) == ["gateway"]
    assert published["gateway"]["HostIp"] == "127.0.0.1"


def test_the_published_port_refuses_the_operators_surface_while_the_stack_is_healthy(
    stack: Stack,
) -> None:
    assert wait_until(lambda: all_healthy(stack, "gateway"), timeout=60, interval=1)
    for path in (
        "/admin/",
        "/admin/login/",
        "/metrics",
        "/ready/",
        "/health/",
        "/internal/status/",
    ):
        published = httpx.get(f"{stack.url}{path}", timeout=10)
        assert published.status_code == 404, path
        assert published.headers["content-type"] == "application/problem+json", path
        assert published.json()["code"] == "not_found", path
    # Inside the network the same gateway serves them on its internal port.
    assert stack.get_inside("gateway", GATEWAY_INTERNAL_PORT, "/ready/")[0] == 200
    status, metrics = stack.get_inside("gateway", GATEWAY_INTERNAL_PORT, "/metrics")
    assert status == 200
    assert "# TYPE " in metrics
    # The public surface stays published.
    assert httpx.get(f"{stack.url}/.well-known/jwks.json", timeout=10).status_code == 200
    assert httpx.get(f"{stack.url}/api/docs/", timeout=10).status_code == 200


def test_orders_placed_while_the_catalog_worker_is_down_complete_once_it_is_back(
    stack: Stack,
) -> None:
    headers, product = customer(stack.url), cheap_product(stack.url)
    worker = stack.container("catalog-worker")
    before = [place(stack.url, headers, product) for _ in range(2)]
    docker("kill", worker)
    during = [place(stack.url, headers, product) for _ in range(4)]
    docker("start", worker)

    statuses = settled(stack.url, headers, before + during)
    assert set(statuses.values()) == {"APPROVED"}, statuses


def test_orders_placed_while_rabbitmq_is_stopped_are_all_accepted_and_complete(
    stack: Stack,
) -> None:
    headers, product = customer(stack.url), cheap_product(stack.url)
    first = place(stack.url, headers, product)
    stack.compose("stop", "rabbitmq")
    try:
        during = [place(stack.url, headers, product) for _ in range(4)]  # each one a 202
    finally:
        stack.compose("start", "rabbitmq")

    statuses = settled(stack.url, headers, [first, *during])
    assert set(statuses.values()) == {"APPROVED"}, statuses


def breaker_states(stack: Stack) -> dict[str, float]:
    status, metrics = stack.get_inside("gateway", GATEWAY_INTERNAL_PORT, "/metrics")
    assert status == 200, metrics
    return {
        instance: float(value)
        for instance, value in re.findall(
            r'gateway_breaker_state\{instance="([^"]+)",upstream="catalog"\} (\S+)', metrics
        )
    }


def test_reads_survive_a_killed_catalog_replica_whose_breaker_opens(stack: Stack) -> None:
    replicas = stack.containers("catalog")
    assert len(replicas) == 2
    address = {
        replica: next(iter(stack.inspect(replica)["NetworkSettings"]["Networks"].values()))[
            "IPAddress"
        ]
        for replica in replicas
    }

    def served(replica: str) -> int:
        return docker("logs", replica).count("/api/catalog/products/1/")

    def both_serve() -> bool:
        assert httpx.get(f"{stack.url}/api/catalog/products/1/", timeout=10).status_code == 200
        return all(served(replica) > 0 for replica in replicas)

    # compose's DNS gives the gateway both replicas: reads go to each.
    assert wait_until(both_serve, timeout=60, interval=0.2)

    victim, survivor = replicas
    survivor_served = served(survivor)
    docker("kill", victim)
    reads = [httpx.get(f"{stack.url}/api/catalog/products/1/", timeout=30) for _ in range(20)]
    assert [r.status_code for r in reads] == [200] * 20  # GETs retry on the survivor
    assert served(survivor) - survivor_served >= 20
    assert breaker_states(stack)[f"catalog-{address[victim]}-8001"] == 2.0  # open
    docker("start", victim)


def test_a_restarted_database_makes_its_service_unready_then_ready_without_a_restart(
    stack: Stack,
) -> None:
    users = stack.container("users")
    started_at = stack.inspect(users)["State"]["StartedAt"]
    stack.compose("stop", "users-db")
    try:
        assert wait_until(lambda: stack.get_inside("users", 8002, "/ready/")[0] == 503, 30)
    finally:
        stack.compose("start", "users-db")
    assert wait_until(lambda: stack.get_inside("users", 8002, "/ready/")[0] == 200, 60)
    headers = customer(stack.url)
    me = httpx.get(f"{stack.url}/api/users/me/", headers=headers, timeout=10)
    assert me.status_code == 200
    assert stack.inspect(users)["State"]["StartedAt"] == started_at
    assert stack.inspect(users)["RestartCount"] == 0


def test_orders_keep_flowing_while_orders_arrive_concurrently(stack: Stack) -> None:
    headers, product = customer(stack.url), cheap_product(stack.url)
    placed: list[str] = []
    errors: list[BaseException] = []

    def shopper() -> None:
        try:
            for _ in range(5):
                placed.append(place(stack.url, headers, product))
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=shopper) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    statuses = settled(stack.url, headers, placed)
    assert len(statuses) == 15
    assert set(statuses.values()) <= {"APPROVED", "REJECTED"}, statuses
