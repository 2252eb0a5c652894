"""The Kubernetes manifests under k8s/ (kustomize), checked without a cluster.

No container engine and no cluster are needed: docker-compose validates the
compose file (`config -q`), kubernetes-validate checks every manifest under k8s/
against the Kubernetes API schemas (strict: an unknown field fails), and the
rest are consistency checks on the parsed YAML: labels and selectors, ports,
probes, migrations before start, Prometheus targets. A missing tool fails the
test with the command that installs it; nothing here is skipped.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
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


def test_k8s_manifests_pass_kubernetes_validate_strict() -> None:
    if importlib.util.find_spec("kubernetes_validate") is None:
        pytest.fail(
            "kubernetes-validate is not installed: it is pinned in requirements/test.txt "
            "(`make venv`, or `.venv/bin/pip install -r requirements/test.txt "
            "-c requirements/constraints.txt`)."
        )
    files = k8s_manifest_files()
    assert files, "no manifests under k8s/"
    result = run_tool([sys.executable, "-m", "kubernetes_validate", "--strict", *map(str, files)])
    # An unknown kind or apiVersion is only a warning there: make it count too.
    output = (result.stdout + result.stderr).splitlines()
    problems = "\n".join(line for line in output if not line.startswith("INFO "))
    exit_code = result.returncode
    assert exit_code == 0, problems
    assert not problems


def test_every_namespaced_object_is_in_the_eshop_namespace() -> None:
    for obj in k8s_objects():
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]
    assert set(by_name("Namespace")) == {NAMESPACE}


# ------------------------------------------------------------------ k8s: kustomize


def test_base_kustomization_lists_every_manifest() -> None:
    base = K8S / "base"
    kustomization = load_yaml(base / "kustomization.yaml")
    listed = set(kustomization["resources"])
    on_disk = {path.name for path in base.glob("*.yaml") if path.name != "kustomization.yaml"}
    assert listed == on_disk
    assert kustomization["namespace"] == NAMESPACE


def test_local_overlay_runs_one_pod_per_deployment() -> None:
    overlay = K8S / "overlays" / "local"
    kustomization = load_yaml(overlay / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (overlay / resource / "kustomization.yaml").is_file(), resource
    kinds = {obj["kind"] for obj in k8s_objects()}
    patched: dict[str, list[dict[str, Any]]] = {}
    for patch in kustomization["patches"]:
        kind = patch["target"]["kind"]
        assert kind in kinds, f"a patch targets {kind}, which the base does not have"
        patched[kind] = yaml.safe_load(patch["patch"])
    assert {"op": "replace", "path": "/spec/replicas", "value": 1} in patched["Deployment"]
    # Otherwise the autoscalers would bring every Deployment back to two pods.
    assert {"op": "replace", "path": "/spec/minReplicas", "value": 1} in patched[
        "HorizontalPodAutoscaler"
    ]


# ------------------------------------------------------------------ k8s: workloads


def test_every_deployment_selector_matches_its_pod_labels() -> None:
    deployments = of_kind("Deployment")
    assert len(deployments) == len(SERVICES) + len(WORKERS) + len(BACKGROUND)
    for deployment in deployments:
        selector = deployment["spec"]["selector"]
        assert selects(selector, pod_labels(deployment)), deployment["metadata"]["name"]
        # One Deployment's selector must not take another's pods.
        assert deployments_selected_by(selector) == [deployment]


@pytest.mark.parametrize(("service", "port"), SERVICES.items())
def test_web_deployment(service: str, port: int) -> None:
    deployment = by_name("Deployment")[service]
    assert deployment["spec"]["replicas"] == 2
    (web,) = pod_spec(deployment)["containers"]
    assert web["workingDir"] == f"/app/{service}_svc"
    assert web["command"][-2:] == [
        f"0.0.0.0:{port}",
        SERVER_APP.get(service, f"{service}_svc.wsgi"),
    ]
    if service == "gateway":
        assert "gateway_svc.workers.GatewayWorker" in web["command"]
    assert container_ports(web)["http"] == port
    kinds = dict(probes(web))
    assert kinds["livenessProbe"]["httpGet"]["path"] == "/health/"
    assert kinds["readinessProbe"]["httpGet"]["path"] == "/ready/"
    assert "startupProbe" in kinds
    migrate = [
        init
        for init in pod_spec(deployment).get("initContainers", [])
        if init["command"][-3:] == ["manage.py", "migrate", "--noinput"]
    ]
    assert len(migrate) == 1, "one initContainer runs the migrations"
    assert migrate[0]["workingDir"] == f"/app/{service}_svc"
    assert migrate[0]["envFrom"] == web["envFrom"], "migrate must see the same database"


@pytest.mark.parametrize("worker", WORKERS)
def test_worker_deployment(worker: str) -> None:
    deployment = by_name("Deployment")[f"{worker}-worker"]
    (container,) = pod_spec(deployment)["containers"]
    assert container["workingDir"] == f"/app/{worker}_svc"
    assert container["command"][:6] == ["celery", "-A", f"{worker}_svc", "worker", "-Q", worker]
    # The worker reads the same database as its web process.
    web = pod_spec(by_name("Deployment")[worker])["containers"][0]
    assert container["envFrom"] == web["envFrom"]


@pytest.mark.parametrize("name", BACKGROUND)
def test_background_deployment(name: str) -> None:
    service, command = BACKGROUND[name]
    deployment = by_name("Deployment")[name]
    assert pod_labels(deployment)["app.kubernetes.io/name"] == service
    assert deployment["spec"]["replicas"] == 1
    if name in SINGLETONS:
        # A rolling update would run the old pod and the new one side by side.
        assert deployment["spec"]["strategy"]["type"] == "Recreate", name
    (container,) = pod_spec(deployment)["containers"]
    assert container["workingDir"] == f"/app/{service}_svc"
    assert container["command"] == ["python", "manage.py", command]
    # The same database (and broker) as its web process.
    web = pod_spec(by_name("Deployment")[service])["containers"][0]
    assert container["envFrom"] == web["envFrom"]
    assert container_env(container)["OTEL_SERVICE_NAME"] == name
    assert not container.get("ports"), f"{name} serves nothing"
    assert not dict(probes(container)), f"{name} has no endpoint to probe"
    # It starts once its web pods applied every migration (only they migrate).
    (wait,) = [
        init
        for init in pod_spec(deployment).get("initContainers", [])
        if init["command"][-3:] == ["manage.py", "migrate", "--check"]
    ]
    assert wait["workingDir"] == f"/app/{service}_svc"
    assert wait["envFrom"] == container["envFrom"], "it must check the same database"


def test_k8s_relay_declares_every_event_queue_before_it_publishes() -> None:
    deployments = by_name("Deployment")
    consumers = {
        pod_labels(deployment)["app.kubernetes.io/name"]
        for deployment in deployments.values()
        if pod_spec(deployment)["containers"][0]["command"][-2:] == ["manage.py", "consume_events"]
    }
    assert consumers == set(CONSUMERS)
    relay = pod_spec(deployments[RELAY])
    (container,) = relay["containers"]
    declared = {
        init["workingDir"]: init
        for init in relay.get("initContainers", [])
        if init["command"][-3:] == ["manage.py", *SETUP_ONLY.split()]
    }
    for consumer in consumers:
        init = declared.get(f"/app/{consumer}_svc")
        assert init, f"the relay publishes before {consumer}'s queue exists"
        # The relay pod's own settings: its broker, no other service's credentials.
        assert init["envFrom"] == container["envFrom"], consumer


def test_pods_read_only_their_own_service_secrets() -> None:
    secrets = by_name("Secret")
    for deployment in of_kind("Deployment"):
        service = pod_labels(deployment)["app.kubernetes.io/name"]
        for container in all_containers(deployment):
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    owner = secrets[source["secretRef"]["name"]]["metadata"]["labels"]
                    where = f"{deployment['metadata']['name']}/{container['name']}"
                    assert owner["app.kubernetes.io/name"] == service, where


def test_every_probe_is_a_health_endpoint_on_a_declared_port() -> None:
    for deployment in of_kind("Deployment"):
        for container in all_containers(deployment):
            for kind, probe in probes(container):
                where = f"{deployment['metadata']['name']}/{container['name']} {kind}"
                assert probe["httpGet"]["path"] in HEALTH_PATHS, where
                assert probe["httpGet"]["port"] in container_ports(container), where


def test_pods_run_non_root_on_a_read_only_filesystem_with_limits() -> None:
    for deployment in of_kind("Deployment"):
        name = deployment["metadata"]["name"]
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        secrets = {v["name"] for v in spec["volumes"] if "secret" in v}
        for container in all_containers(deployment):
            where = f"{name}/{container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            for key in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][key]), where
            for mount in container.get("volumeMounts", []):
                writable = mount["name"] in empty_dirs
                read_only_secret = mount["name"] in secrets and mount.get("readOnly") is True
                assert writable or read_only_secret, f"{where} {mount['name']}"
        mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
        assert {"/app/var", "/tmp"} <= set(mounts), name  # noqa: S108 (mount paths)


def test_env_sources_exist() -> None:
    config_maps, secrets = set(by_name("ConfigMap")), set(by_name("Secret"))
    for deployment in of_kind("Deployment"):
        for container in all_containers(deployment):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets


def test_secrets_hold_placeholders_only() -> None:
    for secret in of_kind("Secret"):
        assert "data" not in secret, "the template uses stringData placeholders"
        for key, value in secret["stringData"].items():
            assert "REPLACE_ME" in value, f"{secret['metadata']['name']}.{key} is not a placeholder"


def test_gateway_reads_its_keys_from_a_read_only_secret_volume() -> None:
    gateway = by_name("Deployment")["gateway"]
    (web,) = pod_spec(gateway)["containers"]
    environment = container_env(web)
    volumes = {v["name"]: v for v in pod_spec(gateway)["volumes"]}
    mounts = {m["mountPath"]: m for m in web.get("volumeMounts", [])}
    secrets = by_name("Secret")
    for variable in ("JWT_PRIVATE_KEY", "JWT_PUBLIC_KEY"):
        path = PurePosixPath(environment[variable].split(",")[0])
        assert str(path.parent) in mounts, f"{variable}={path} is not in a mounted volume"
        mount = mounts[str(path.parent)]
        assert mount.get("readOnly") is True, variable
        assert "subPath" not in mount, f"{variable}: a subPath mount never sees Secret updates"
        source = volumes[mount["name"]]["secret"]
        assert source["secretName"] in secrets, f"{variable}: no Secret {source['secretName']}"
        keys = {item["path"]: item["key"] for item in source.get("items", [])}
        assert path.name in keys, f"{variable}: {path.name} is not an item of the Secret"
        assert keys[path.name] in secrets[source["secretName"]]["stringData"], variable
        if variable == "JWT_PRIVATE_KEY":
            item = next(i for i in source["items"] if i["path"] == path.name)
            mode = item.get("mode", source.get("defaultMode", 0o644))
            assert mode & 0o077 == 0, f"the private key is mode {mode:o}, not owner-only"
    # Retired public keys: a folder of its own, from a Secret made at the first rotation.
    retired = mounts[environment["JWT_RETIRED_KEYS"]]
    assert retired.get("readOnly") is True
    assert "secret" in volumes[retired["name"]]


def test_services_verify_tokens_with_the_gateway_jwks() -> None:
    deployments = by_name("Deployment")
    for name in [*(s for s in SERVICES if s != "gateway"), *(f"{w}-worker" for w in WORKERS)]:
        (container,) = pod_spec(deployments[name])["containers"]
        environment = container_env(container)
        assert "JWT_JWKS_URL" in environment, f"{name} has no JWT_JWKS_URL"
        assert_is_the_gateway_jwks(environment["JWT_JWKS_URL"], name)
    assert SERVICES["gateway"] in {
        p["port"] for p in by_name("Service")["gateway"]["spec"]["ports"]
    }
    # The gateway verifies refresh tokens with its own key files: never a JWKS URL.
    for container in all_containers(deployments["gateway"]):
        assert "JWT_JWKS_URL" not in container_env(container), container["name"]


# ------------------------------------------------------------------ k8s: traffic


def test_every_service_selects_a_deployment_on_a_declared_port() -> None:
    services = by_name("Service")
    assert set(services) == set(SERVICES)
    for name, service in services.items():
        assert service["spec"]["type"] == "ClusterIP"
        selected = deployments_selected_by(service["spec"]["selector"])
        assert len(selected) == 1, f"Service {name} selects {len(selected)} Deployments"
        (deployment,) = selected
        ports = container_ports(pod_spec(deployment)["containers"][0])
        (port,) = service["spec"]["ports"]
        assert port["port"] == SERVICES[name]
        assert ports.get(port["targetPort"]) == SERVICES[name], name


def test_autoscalers_and_disruption_budgets_cover_the_web_deployments() -> None:
    deployments = by_name("Deployment")
    autoscalers = by_name("HorizontalPodAutoscaler")
    assert set(autoscalers) == set(SERVICES)
    for hpa in autoscalers.values():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment"
        assert target["name"] in deployments
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert metric["resource"]["target"]["averageUtilization"] == 70
    budgets = by_name("PodDisruptionBudget")
    assert set(budgets) == set(SERVICES)
    for name, budget in budgets.items():
        assert budget["spec"]["minAvailable"] == 1
        assert deployments_selected_by(budget["spec"]["selector"]) == [deployments[name]]


def test_network_policies() -> None:
    policies = by_name("NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {}
    assert deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    for name, policy in policies.items():
        spec = policy["spec"]
        if not spec["podSelector"]:
            continue
        selected = deployments_selected_by(spec["podSelector"])
        assert selected, f"{name} selects no pod"
        for rule in spec.get("ingress", []):
            for port in rule.get("ports", []):
                for deployment in selected:
                    ports = container_ports(pod_spec(deployment)["containers"][0])
                    assert port["port"] in ports, f"{name}: port {port['port']} is not open"
            for peer in rule["from"]:
                if "namespaceSelector" not in peer:  # a pod of this namespace
                    assert deployments_selected_by(peer["podSelector"]), name
    # The gateway alone reaches each backend, on its port.
    for backend in ("catalog", "users", "orders"):
        spec = policies[f"allow-gateway-to-{backend}"]["spec"]
        (rule,) = spec["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": SERVICES[backend]}]
        (peer,) = rule["from"]
        assert deployments_selected_by(peer["podSelector"]) == [by_name("Deployment")["gateway"]]


def test_network_policies_let_every_service_fetch_the_gateway_jwks() -> None:
    deployments = by_name("Deployment")
    gateway = deployments["gateway"]
    for name in [*(s for s in SERVICES if s != "gateway"), *(f"{w}-worker" for w in WORKERS)]:
        assert ingress_allowed(deployments[name], gateway, SERVICES["gateway"]), name


@pytest.mark.parametrize("name", [*(f"{w}-worker" for w in WORKERS), *BACKGROUND])
def test_network_policies_let_background_pods_out_and_nothing_in(name: str) -> None:
    deployment = by_name("Deployment")[name]
    for policy in of_kind("NetworkPolicy"):
        spec = policy["spec"]
        if not selects(spec["podSelector"], pod_labels(deployment)):
            continue
        # Egress stays open: their databases, RabbitMQ and Redis are outside the cluster.
        assert "Egress" not in spec["policyTypes"], policy["metadata"]["name"]
        assert not spec.get("ingress"), f"{policy['metadata']['name']} lets traffic into {name}"


def test_ingress_sends_everything_to_the_gateway() -> None:
    (ingress,) = of_kind("Ingress")
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    backend = path["backend"]["service"]
    service = by_name("Service")[backend["name"]]
    assert backend["name"] == "gateway"
    assert backend["port"]["number"] in {port["port"] for port in service["spec"]["ports"]}
