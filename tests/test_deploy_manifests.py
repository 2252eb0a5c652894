"""The deployment files: compose/ (image and compose file) and k8s/ (kustomize).

No container engine and no cluster are needed: docker-compose validates the
compose file (`config -q`), kubernetes-validate checks every manifest under k8s/
against the Kubernetes API schemas (strict: an unknown field fails), and the
rest are consistency checks on the parsed YAML: labels and selectors, ports,
probes, migrations before start, Prometheus targets. A missing tool fails the
test with the command that installs it; nothing here is skipped.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_DIR = REPO / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
K8S = REPO / "k8s"
NAMESPACE = "eshop"

SERVICES = {"gateway": 8000, "catalog": 8001, "users": 8002, "orders": 8003}
WORKERS = ("catalog", "users", "orders")
# Long-running management commands beside the workers, by their compose / k8s name
# (the Procfile's name has "_" for "-"): (service, command). No port, no probes.
BACKGROUND = {
    "orders-saga": ("orders", "saga_watchdog"),
    "orders-relay": ("orders", "outbox_relay"),
    "catalog-events": ("catalog", "consume_events"),
    "users-events": ("users", "consume_events"),
}
# The outbox relay is the one event producer; every consume_events process is a consumer.
RELAY = "orders-relay"
CONSUMERS = tuple(
    service for service, command in BACKGROUND.values() if command == "consume_events"
)
# Processes that must never run twice at once: a second relay takes other rows
# (SKIP LOCKED) and a second consumer other messages, so events lose their order.
SINGLETONS = {RELAY, *(f"{service}-events" for service in CONSUMERS)}
SETUP_ONLY = "consume_events --setup-only"
HEALTH_PATHS = {"/health/", "/ready/"}
# What gunicorn serves per service: WSGI, except the gateway's ASGI proxy (uvicorn workers).
SERVER_APP = {"gateway": "gateway_svc.asgi:application"}
# Host ports compose publishes: the gateway and the operators' UIs, nothing else.
PUBLISHED_PORTS = {"gateway": {8000}, "rabbitmq": {15672}, "prometheus": {9090}, "jaeger": {16686}}
# Every service but the gateway verifies tokens with the keys the gateway publishes here.
JWKS_PATH = "/.well-known/jwks.json"


# ------------------------------------------------------------------ helpers


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def k8s_manifest_files() -> list[Path]:
    """Every YAML file under k8s/ that holds Kubernetes objects (not kustomization.yaml)."""
    files = [
        path
        for pattern in ("*.yaml", "*.yml")
        for path in K8S.rglob(pattern)
        if path.name not in ("kustomization.yaml", "kustomization.yml")
    ]
    return sorted(files)


def k8s_objects() -> list[dict[str, Any]]:
    return [
        doc
        for path in k8s_manifest_files()
        for doc in yaml.safe_load_all(path.read_text())
        if doc  # an empty document between two `---`
    ]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [obj for obj in k8s_objects() if obj["kind"] == kind]


def by_name(kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in of_kind(kind)}


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


def all_containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(deployment)
    return [*spec.get("initContainers", []), *spec["containers"]]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels / matchExpressions, or a bare map) matches."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def deployments_selected_by(selector: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in of_kind("Deployment") if selects(selector, pod_labels(d))]


def container_ports(container: dict[str, Any]) -> dict[str | int, int]:
    """A container's ports by name and by number, each giving the number."""
    ports: dict[str | int, int] = {}
    for port in container.get("ports", []):
        ports[port["containerPort"]] = port["containerPort"]
        if "name" in port:
            ports[port["name"]] = port["containerPort"]
    return ports


def probes(container: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        if kind in container:
            yield kind, container[kind]


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


def compose_services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def command_text(command: str | list[str]) -> str:
    return command if isinstance(command, str) else " ".join(command)


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """depends_on as {service: condition}, whichever of the two syntaxes is used."""
    value = service.get("depends_on", {})
    if isinstance(value, list):
        return dict.fromkeys(value, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in value.items()}


def compose_mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """A compose service's volumes as (source, target, read_only), either syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts.append(
                (volume.get("source", ""), volume["target"], bool(volume.get("read_only")))
            )
        else:
            source, target, *options = str(volume).split(":")
            mounts.append((source, target, "ro" in ",".join(options).split(",")))
    return mounts


def mount_holding(mounts: list[tuple[str, str, bool]], path: str) -> tuple[str, str, bool] | None:
    """The mount whose target folder holds ``path`` (the deepest, as the kernel picks it)."""
    holding = [m for m in mounts if PurePosixPath(path).is_relative_to(m[1])]
    return max(holding, key=lambda m: len(m[1]), default=None)


def jwt_key_files(environment: dict[str, Any]) -> tuple[str, str]:
    """Where common.settings.jwt_config looks for the private and public key (the defaults too)."""
    keys = PurePosixPath(environment["VAR_DIR"]) / "jwt"
    private = environment.get("JWT_PRIVATE_KEY", str(keys / "private.pem"))
    public = str(environment.get("JWT_PUBLIC_KEY", str(keys / "public.pem"))).split(",")[0]
    return private, public


def assert_is_the_gateway_jwks(url: str, where: str) -> None:
    parts = urlsplit(url)
    assert parts.scheme == "http", where
    assert parts.hostname == "gateway", where  # the compose service / the k8s Service
    assert parts.port == SERVICES["gateway"], where
    assert parts.path == JWKS_PATH, where


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """A k8s container's environment: its ConfigMaps and Secrets, then its own env."""
    config_maps, secrets = by_name("ConfigMap"), by_name("Secret")
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            environment.update(config_maps[source["configMapRef"]["name"]].get("data", {}))
        if "secretRef" in source:
            environment.update(secrets[source["secretRef"]["name"]].get("stringData", {}))
    for variable in container.get("env", []):
        environment[variable["name"]] = variable.get("value", "")
    return environment


def ingress_allowed(source: dict[str, Any], target: dict[str, Any], port: int) -> bool:
    """Whether a NetworkPolicy lets ``source``'s pods reach ``target``'s pods on ``port``."""
    target_ports = container_ports(pod_spec(target)["containers"][0])
    for policy in of_kind("NetworkPolicy"):
        spec = policy["spec"]
        if not selects(spec["podSelector"], pod_labels(target)):
            continue
        for rule in spec.get("ingress", []):
            ports = [target_ports.get(p["port"], p["port"]) for p in rule.get("ports", [])]
            if ports and port not in ports:
                continue
            peers = rule.get("from")
            if not peers or any(
                "podSelector" in peer
                and "namespaceSelector" not in peer  # a pod of this namespace
                and selects(peer["podSelector"], pod_labels(source))
                for peer in peers
            ):
                return True
    return False


def procfile() -> dict[str, str]:
    """The Procfile's processes: {name: command}."""
    processes = {}
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            processes[name.strip()] = command.strip()
    return processes


def run_tool(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )


# ------------------------------------------------------------------ the image


def test_dockerfile_builds_one_non_root_image_with_static_files() -> None:
    lines = [
        line.strip()
        for line in (COMPOSE_DIR / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    text = "\n".join(lines)
    assert lines[0] == "FROM python:3.11-slim"
    assert "requirements/base.txt" in text
    assert "-c requirements/constraints.txt" in text
    assert "./common" in text
    users = [line.split(None, 1)[1] for line in lines if line.startswith("USER ")]
    assert users, "the image must switch to a non-root user"
    assert users[-1].split(":")[0] not in ("0", "root")
    assert "VAR_DIR=/app/var" in text
    assert "collectstatic --noinput" in text
    for service in SERVICES:
        assert service in text, f"collectstatic does not run for {service}_svc"


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    patterns = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (".venv", "var", ".git"):
        assert needed in patterns
    assert patterns & {"__pycache__", "**/__pycache__"}


# ------------------------------------------------------------------ make run (Procfile)


def test_procfile_runs_every_process() -> None:
    processes = procfile()
    for service in SERVICES:
        assert processes[service].startswith(f"cd {service}_svc && exec gunicorn "), service
    for worker in WORKERS:
        assert processes[f"{worker}_worker"].startswith(
            f"cd {worker}_svc && exec celery -A {worker}_svc worker -Q ${{QUEUE_PREFIX:-}}{worker} "
        ), worker
    for name, (service, command) in BACKGROUND.items():
        assert processes[name.replace("-", "_")] == (
            f"cd {service}_svc && exec python manage.py {command}"
        ), name


def test_make_run_declares_the_event_queues_before_starting_the_processes() -> None:
    script = (REPO / "scripts" / "run.sh").read_text()
    setup = script.index(f"python manage.py {SETUP_ONLY}")
    # The loop around it: `for service in catalog users; do (cd "${service}_svc" && ...)`.
    loop = script.rindex("for service in ", 0, setup)
    services = script[loop:].split(";", 1)[0].split()[3:]
    assert set(CONSUMERS) <= set(services)
    assert 'cd "${service}_svc"' in script[loop:setup]
    assert setup < script.index("exec supervisord -c ")


# ------------------------------------------------------------------ compose


def test_compose_file_is_valid_for_docker_compose() -> None:
    if shutil.which("docker-compose") is None:
        pytest.fail(
            "docker-compose is not installed: `apt-get install -y docker-compose` "
            "(Debian's docker-compose v1; .ci/run installs it when missing)."
        )
    result = run_tool(["docker-compose", "-f", str(COMPOSE_FILE), "config", "-q"])
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr


def test_compose_has_every_part_of_the_platform() -> None:
    expected = {"rabbitmq", "redis", "etcd", "prometheus", "jaeger"}
    for service in SERVICES:
        expected |= {service, f"{service}-db", f"{service}-migrate"}
    expected |= {f"{worker}-worker" for worker in WORKERS}
    expected |= set(BACKGROUND)
    assert expected <= set(compose_services())
    for service in SERVICES:
        assert compose_services()[f"{service}-db"]["image"].startswith("postgres:15")


def test_compose_publishes_only_the_gateway_and_the_operator_uis() -> None:
    published: dict[str, set[int]] = {}
    for name, service in compose_services().items():
        for port in service.get("ports", []):
            host_port = int(str(port).split(":")[-2]) if ":" in str(port) else int(port)
            published.setdefault(name, set()).add(host_port)
    assert published == PUBLISHED_PORTS


@pytest.mark.parametrize(("service", "port"), SERVICES.items())
def test_compose_web_service(service: str, port: int) -> None:
    spec = compose_services()[service]
    assert spec["working_dir"] == f"/app/{service}_svc"
    command = command_text(spec["command"])
    assert command.startswith("gunicorn -c python:common.gunicorn_conf")
    assert f"--bind 0.0.0.0:{port} {SERVER_APP.get(service, f'{service}_svc.wsgi')}" in command
    if service == "gateway":
        assert "-k gateway_svc.workers.GatewayWorker" in command
    assert f"http://127.0.0.1:{port}/ready/" in command_text(spec["healthcheck"]["test"])
    assert depends_on(spec)[f"{service}-migrate"] == "service_completed_successfully"


@pytest.mark.parametrize("service", SERVICES)
def test_compose_migrations_run_once_before_the_service(service: str) -> None:
    spec = compose_services()[f"{service}-migrate"]
    assert command_text(spec["command"]) == "python manage.py migrate --noinput"
    assert spec["working_dir"] == f"/app/{service}_svc"
    assert spec["restart"] == "no"
    assert depends_on(spec) == {f"{service}-db": "service_healthy"}


@pytest.mark.parametrize("worker", WORKERS)
def test_compose_worker(worker: str) -> None:
    spec = compose_services()[f"{worker}-worker"]
    assert spec["working_dir"] == f"/app/{worker}_svc"
    assert command_text(spec["command"]).startswith(
        f"celery -A {worker}_svc worker -Q {worker} -n {worker}@%h"
    )
    assert depends_on(spec)[f"{worker}-migrate"] == "service_completed_successfully"


@pytest.mark.parametrize("name", BACKGROUND)
def test_compose_background_process(name: str) -> None:
    service, command = BACKGROUND[name]
    spec = compose_services()[name]
    web = compose_services()[service]
    assert spec["working_dir"] == f"/app/{service}_svc"
    assert command_text(spec["command"]) == f"python manage.py {command}"
    assert spec["restart"] == "unless-stopped", f"{name} runs for good"
    needs = depends_on(spec)
    assert needs[f"{service}-migrate"] == "service_completed_successfully"
    assert needs["rabbitmq"] == "service_healthy"
    # The same database, cache and broker as its web process.
    for variable in ("DATABASE_URL", "CACHE_URL", "BROKER_URL"):
        assert spec["environment"][variable] == web["environment"][variable], variable
    assert spec["environment"]["OTEL_SERVICE_NAME"] == name
    assert not spec.get("ports"), f"{name} serves nothing"
    assert not spec.get("expose"), f"{name} serves nothing"


def compose_queue_setups(consumer: str) -> list[str]:
    """The one-offs that declare ``consumer``'s event queue."""
    return [
        name
        for name, spec in compose_services().items()
        if command_text(spec.get("command", "")) == f"python manage.py {SETUP_ONLY}"
        and spec.get("working_dir") == f"/app/{consumer}_svc"
    ]


def test_compose_consumers_are_the_ones_expected() -> None:
    consumers = {
        spec["working_dir"].removeprefix("/app/").removesuffix("_svc")
        for spec in compose_services().values()
        if command_text(spec.get("command", "")) == "python manage.py consume_events"
    }
    assert consumers == set(CONSUMERS)


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_compose_declares_each_event_queue_before_the_relay_publishes(consumer: str) -> None:
    services = compose_services()
    setups = compose_queue_setups(consumer)
    assert len(setups) == 1, f"one one-off runs `{SETUP_ONLY}` for {consumer}"
    (setup,) = setups
    spec = services[setup]
    assert spec["restart"] == "no", f"{setup} is a one-off"
    assert depends_on(spec).get("rabbitmq") == "service_healthy"
    # The queue is bound where the relay publishes: the same broker (and exchange).
    relay = services[RELAY]["environment"]
    for variable in ("BROKER_URL", "EVENT_EXCHANGE"):
        assert spec["environment"].get(variable) == relay.get(variable), variable
    # Before the relay's first event, and before the consumer itself.
    assert depends_on(services[RELAY]).get(setup) == "service_completed_successfully"
    assert depends_on(services[f"{consumer}-events"]).get(setup) == (
        "service_completed_successfully"
    )


def test_compose_app_containers_use_their_own_database_and_production_settings() -> None:
    for name, spec in compose_services().items():
        if spec.get("image", "").startswith("eshop:"):
            service = name.split("-")[0]
            environment = spec["environment"]
            assert urlsplit(environment["DATABASE_URL"]).hostname == f"{service}-db", name
            assert environment["ENVIRONMENT"] == "production", name
            assert environment["SECRET_KEY"].startswith("${SECRET_KEY:-"), name
            assert environment["ALLOWED_HOSTS"] == "*", name
            assert environment["BROKER_URL"].startswith("amqp://"), name
            assert spec["build"] == {"context": "..", "dockerfile": "compose/Dockerfile"}, name


def test_compose_waits_only_for_services_that_report_their_state() -> None:
    services = compose_services()
    for name, spec in services.items():
        for target, condition in depends_on(spec).items():
            assert target in services, f"{name} depends on unknown {target}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health"
            if condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is a one-off"


def test_prometheus_scrapes_every_service() -> None:
    config = load_yaml(COMPOSE_DIR / "prometheus.yml")
    targets = {
        target
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    for service, port in SERVICES.items():
        assert f"{service}:{port}" in targets
    volumes = compose_services()["prometheus"]["volumes"]
    assert any(v.startswith("./prometheus.yml:/etc/prometheus/prometheus.yml") for v in volumes)


def test_compose_gateway_keys_are_generated_before_the_gateway_in_a_shared_volume() -> None:
    services = compose_services()
    volumes = compose().get("volumes") or {}
    makers = [
        name
        for name, spec in services.items()
        if "manage.py generate_jwt_keys" in command_text(spec.get("command", ""))
    ]
    assert makers, "no one-off runs `manage.py generate_jwt_keys`"
    gateway = services["gateway"]
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    for name in makers:
        maker = services[name]
        assert maker["working_dir"] == "/app/gateway_svc", name
        assert maker["restart"] == "no", f"{name} is a one-off"
        assert depends_on(gateway).get(name) == "service_completed_successfully", name
        # Both containers resolve the key files to the same place in the same named volume.
        assert jwt_key_files(maker["environment"]) == jwt_key_files(gateway["environment"]), name
        for path in jwt_key_files(gateway["environment"]):
            made = mount_holding(compose_mounts(maker), path)
            used = mount_holding(compose_mounts(gateway), path)
            assert made, f"{path} is not in a volume of {name}"
            assert used, f"{path} is not in a volume of the gateway"
            assert made[0] in volumes, f"{path}: {made[0]} is not a named volume"
            assert (made[0], made[1]) == (used[0], used[1]), f"{path}: not one shared volume"
            assert not made[2], f"{name} must be able to write {path}"
            # A new named volume takes the owner of the image's folder: the app user's.
            assert f"mkdir -p {made[1]}" in dockerfile, f"the image does not create {made[1]}"


def test_compose_services_verify_tokens_with_the_gateway_jwks() -> None:
    services = compose_services()
    for name in [*(s for s in SERVICES if s != "gateway"), *(f"{w}-worker" for w in WORKERS)]:
        environment = services[name]["environment"]
        assert "JWT_JWKS_URL" in environment, f"{name} has no JWT_JWKS_URL"
        assert_is_the_gateway_jwks(environment["JWT_JWKS_URL"], name)
    for name, spec in services.items():
        if name.split("-")[0] == "gateway" and "environment" in spec:
            # The gateway reads its own key files (refresh tokens): never a JWKS URL.
            assert "JWT_JWKS_URL" not in spec["environment"], name


# ------------------------------------------------------------------ k8s: schemas
