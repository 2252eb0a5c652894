"""The Kubernetes manifests under k8s/ (kustomize), rendered and checked without a cluster.

Every overlay is rendered with `kubectl kustomize` the way `kubectl apply -k` would:
k8s/overlays/local (with Secrets from scripts/k8s_secrets.py, into a copy of k8s/ in a
temporary folder, never the working tree's), k8s/overlays/production, and each of them
with the optional KEDA component. kubernetes-validate checks the rendered objects
against the Kubernetes API schemas (strict: an unknown field fails); KEDA's kinds have
no schema there, so their fields are checked here by hand. The rest are consistency
checks on the rendered objects: roles, labels and selectors, ports, probes, migrations
before start, discovery, secrets, network policies, the Ingress's public surface.
tests/test_k8s_containers.py starts the local overlay's containers in Docker.
A missing tool fails the test with the command that installs it; nothing is skipped.
"""

from __future__ import annotations

import atexit
import base64
import functools
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from common.broker_access import ACCESS, password_hash, permissions

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
NAMESPACE = "eshop"

SERVICES = {"gateway": 8000, "catalog": 8001, "users": 8002, "orders": 8003}
BACKENDS = ("catalog", "users", "orders")
WORKERS = ("catalog", "users", "orders")
# Long-running processes beside the workers: k8s name -> (service, the image's role).
BACKGROUND = {
    "orders-saga": ("orders", "watchdog"),
    "orders-relay": ("orders", "relay"),
    "catalog-events": ("catalog", "consumer"),
    "users-events": ("users", "consumer"),
}
# The gRPC servers (manage.py grpc_serve): k8s name -> (service, port, health service name).
GRPC_SERVERS = {
    "catalog-grpc": ("catalog", 50051, "catalog.v1.CatalogService"),
    "users-grpc": ("users", 50052, "users.v1.UsersService"),
    "orders-grpc": ("orders", 50053, "orders.v1.OrdersService"),
}
RELAY = "orders-relay"
CONSUMERS = tuple(service for service, role in BACKGROUND.values() if role == "consumer")
# Processes that must never run twice at once: a second relay takes other rows
# (SKIP LOCKED) and a second consumer other messages, so events lose their order.
SINGLETONS = {RELAY, *(f"{service}-events" for service in CONSUMERS)}
# compose/entrypoint.sh: role -> the services it exists for (None: every service).
ROLES: dict[str, set[str] | None] = {
    "web": None,
    "worker": {"catalog", "users", "orders"},
    "relay": {"orders"},
    "watchdog": {"orders"},
    "consumer": {"catalog", "users"},
    "grpc": {"catalog", "users", "orders"},
    "queues": {"catalog", "users"},
    "migrate": None,
    "keys": {"gateway"},
    "seed": {"catalog"},
    "manage": None,
}
WAIT_FOR_MIGRATIONS = "until python manage.py migrate --check; do sleep 5; done"
HEALTH_PATHS = {"/health/", "/ready/"}
JWKS_PATH = "/.well-known/jwks.json"
# What the Ingress may send to the gateway, and what must stay inside the cluster.
PUBLIC_PATHS = [
    "/api/catalog/products/",
    "/api/auth/token/",
    "/api/auth/token/refresh/",
    JWKS_PATH,
    "/graphql/",
    "/",  # the storefront
    "/products/7/",
    "/cart/",
    "/checkout/",
    "/orders/",
    "/account/addresses/",
    "/signin/",
    "/static/gateway/storefront/storefront.css",
]
PRIVATE_PATHS = ["/admin/", "/metrics", "/ready/", "/health/", "/internal/status/", "/internal/"]
# The in-cluster backing services of the local overlay, by StatefulSet name.
DATABASES = {f"{service}-db": service for service in SERVICES}
BACKING = {**dict.fromkeys(DATABASES, "postgres"), "rabbitmq": "rabbitmq", "redis": "redis"}
OFFICIAL_IMAGES = {
    "postgres": "postgres:15",
    "rabbitmq": "rabbitmq:3.13-management",
    "redis": "redis:7-alpine",
}
BACKING_PORTS = {"postgres": 5432, "rabbitmq": 5672, "redis": 6379}
OVERLAYS = ("local", "production", "local+keda", "production+keda")
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


# ------------------------------------------------------------------ rendering


@functools.cache
def k8s_tree() -> Path:
    """A copy of k8s/ with the local overlay's Secrets made by scripts/k8s_secrets.py.

    The working tree's own k8s/overlays/local/secrets/ (if any) is neither read nor
    written; the copy also holds the overlays that add the KEDA component.
    """
    root = Path(tempfile.mkdtemp(prefix="eshop-k8s-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    tree = root / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets"))
    secrets_dir = tree / "overlays" / "local" / "secrets"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "k8s_secrets.py"), "--out", str(secrets_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for base in ("local", "production"):
        write_overlay(
            tree,
            f"{base}+keda",
            {"resources": [f"../{base}"], "components": ["../../components/keda"]},
        )
    return tree


def write_overlay(tree: Path, name: str, kustomization: dict[str, Any]) -> Path:
    folder = tree / "overlays" / name
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        **kustomization,
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def kustomize(folder: Path) -> str:
    if not Path(KUBECTL).exists():
        pytest.fail("kubectl is missing: apt-get install kubernetes-client (or kubectl)")
    result = subprocess.run(
        [KUBECTL, "kustomize", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"kubectl kustomize {folder}:\n{result.stderr}"
    return result.stdout


@functools.cache
def rendered_text(overlay: str) -> str:
    return kustomize(k8s_tree() / "overlays" / overlay)


def rendered(overlay: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered_text(overlay)) if doc]


def render_custom(name: str, kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    """An overlay of the test's own on top of the copy (say, other `images:`)."""
    folder = write_overlay(k8s_tree(), name, kustomization)
    return [doc for doc in yaml.safe_load_all(kustomize(folder)) if doc]


# ------------------------------------------------------------------ helpers


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def by_name(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in of_kind(objects, kind)}


def original_name(obj: dict[str, Any], generated: dict[str, str]) -> str:
    """A generated Secret's name without kustomize's hash suffix."""
    return generated.get(obj["metadata"]["name"], obj["metadata"]["name"])


def secrets_by_base_name(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Secrets by the name the manifests use (secretGenerator appends -<hash>)."""
    found = {}
    for secret in of_kind(objects, "Secret"):
        name = secret["metadata"]["name"]
        base, _, suffix = name.rpartition("-")
        found[base if base and len(suffix) == 10 else name] = secret
    return found


def secret_values(secret: dict[str, Any]) -> dict[str, str]:
    values = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    values.update(secret.get("stringData", {}))
    return values


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def all_containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job")]


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


def selected(objects: list[dict[str, Any]], selector: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in workloads(objects) if selects(selector, pod_labels(w))]


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


def env_value(container: dict[str, Any], name: str) -> str | None:
    for variable in container.get("env", []):
        if variable["name"] == name:
            return variable.get("value")
    return None


def container_env(objects: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """A container's environment: its ConfigMaps and Secrets, then its own env."""
    config_maps, secrets = by_name(objects, "ConfigMap"), by_name(objects, "Secret")
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            environment.update(config_maps[source["configMapRef"]["name"]].get("data", {}))
        if "secretRef" in source:
            environment.update(secret_values(secrets[source["secretRef"]["name"]]))
    for variable in container.get("env", []):
        if "value" in variable:
            environment[variable["name"]] = variable["value"]
        elif "secretKeyRef" in variable.get("valueFrom", {}):
            ref = variable["valueFrom"]["secretKeyRef"]
            environment[variable["name"]] = secret_values(secrets[ref["name"]])[ref["key"]]
    return environment


def is_eshop(container: dict[str, Any]) -> bool:
    return container["image"].rsplit(":", 1)[0].split("/")[-1] == "eshop"


def role_of(container: dict[str, Any]) -> str | None:
    """The image's role a container runs (its first argument), None for a command."""
    if "command" in container or not container.get("args"):
        return None
    return container["args"][0]


def ingress_allowed(
    objects: list[dict[str, Any]], source: dict[str, Any], target: dict[str, Any], port: int
) -> bool:
    """Whether a NetworkPolicy lets ``source``'s pods reach ``target``'s pods on ``port``."""
    target_ports = container_ports(pod_spec(target)["containers"][0])
    for policy in of_kind(objects, "NetworkPolicy"):
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


def ingress_routes(objects: list[dict[str, Any]], path: str) -> bool:
    """Whether the Ingress sends a request for ``path`` anywhere (Exact / Prefix rules)."""
    for ingress in of_kind(objects, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for route in rule["http"]["paths"]:
                wanted, kind = route["path"], route["pathType"]
                if kind == "Exact" and path == wanted:
                    return True
                if kind == "Prefix":
                    prefix = wanted.rstrip("/")
                    if not prefix or path == prefix or path.startswith(prefix + "/"):
                        return True
    return False


def validate_strict(text: str, where: str) -> None:
    if importlib.util.find_spec("kubernetes_validate") is None:
        pytest.fail(
            "kubernetes-validate is not installed: it is pinned in requirements/test.txt "
            "(`make venv`, or `.venv/bin/pip install -r requirements/test.txt "
            "-c requirements/constraints.txt`)."
        )
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        handle.write(text)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "kubernetes_validate", "--strict", handle.name],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        Path(handle.name).unlink()
    # An unknown kind or apiVersion is only a warning there: make it count too.
    output = (result.stdout + result.stderr).splitlines()
    problems = "\n".join(line for line in output if not line.startswith("INFO "))
    assert result.returncode == 0, f"{where}:\n{problems}"
    assert not problems, f"{where}:\n{problems}"


# ------------------------------------------------------------------ rendering and schemas


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_passes_kubernetes_validate_strict(overlay: str) -> None:
    objects = rendered(overlay)
    assert objects, overlay
    # KEDA's kinds are CustomResources: no schema to validate against (checked below).
    plain = [obj for obj in objects if obj["kind"] not in KEDA_KINDS]
    validate_strict(yaml.safe_dump_all(plain), overlay)
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]
    assert set(by_name(objects, "Namespace")) == {NAMESPACE}


SCALED_OBJECT_FIELDS = {
    "scaleTargetRef",
    "minReplicaCount",
    "maxReplicaCount",
    "pollingInterval",
    "cooldownPeriod",
    "triggers",
}
RABBITMQ_TRIGGER_METADATA = {"protocol", "queueName", "mode", "value"}


@pytest.mark.parametrize("overlay", ["local+keda", "production+keda"])
def test_keda_scales_each_worker_on_its_queue_length(overlay: str) -> None:
    objects = rendered(overlay)
    deployments = by_name(objects, "Deployment")
    authentications = by_name(objects, "TriggerAuthentication")
    secrets = by_name(objects, "Secret")
    scaled = by_name(objects, "ScaledObject")
    assert {o["spec"]["scaleTargetRef"]["name"] for o in scaled.values()} == {
        f"{worker}-worker" for worker in WORKERS
    }
    for name, scaled_object in scaled.items():
        assert scaled_object["apiVersion"] == "keda.sh/v1alpha1", name
        spec = scaled_object["spec"]
        assert set(spec) <= SCALED_OBJECT_FIELDS, f"{name}: unknown fields"
        target = spec["scaleTargetRef"]
        deployment = deployments[target["name"]]
        assert target.get("kind", "Deployment") == "Deployment"
        assert target.get("apiVersion", "apps/v1") == "apps/v1"
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], name
        for key in ("pollingInterval", "cooldownPeriod"):
            assert isinstance(spec[key], int), name
            assert spec[key] > 0, name
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "rabbitmq"
        metadata = trigger["metadata"]
        assert set(metadata) == RABBITMQ_TRIGGER_METADATA, name
        assert metadata["protocol"] == "amqp"
        assert metadata["mode"] == "QueueLength"
        assert int(metadata["value"]) > 0  # KEDA wants a string holding a number
        assert isinstance(metadata["value"], str)
        # The queue the worker consumes (its -Q): the service's name.
        service = pod_labels(deployment)["app.kubernetes.io/name"]
        assert role_of(pod_spec(deployment)["containers"][0]) == "worker"
        assert metadata["queueName"] == service
        # The broker address from the worker's own Secret, through a TriggerAuthentication.
        authentication = authentications[trigger["authenticationRef"]["name"]]
        assert authentication["apiVersion"] == "keda.sh/v1alpha1"
        (reference,) = authentication["spec"]["secretTargetRef"]
        assert reference["parameter"] == "host"
        assert reference["key"] == "BROKER_URL"
        worker_secrets = {
            source["secretRef"]["name"]
            for source in pod_spec(deployment)["containers"][0]["envFrom"]
            if "secretRef" in source
        }
        assert reference["name"] in worker_secrets, name
        if overlay.startswith("local"):
            # The generated (hashed) name reached the TriggerAuthentication too.
            broker = secret_values(secrets[reference["name"]])["BROKER_URL"]
            # KEDA's operator lives in another namespace: a name it can resolve.
            assert urlsplit(broker).hostname == f"rabbitmq.{NAMESPACE}.svc"


def test_base_kustomization_lists_every_manifest() -> None:
    base = K8S / "base"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {path.name for path in base.glob("*.yaml") if path.name != "kustomization.yaml"}
    assert listed == on_disk
    assert kustomization["namespace"] == NAMESPACE


def test_no_secret_value_is_committed() -> None:
    for path in K8S.rglob("*.yaml"):
        if "secrets" in path.relative_to(K8S).parts:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (doc and doc.get("kind") == "Secret"), f"{path} holds a Secret"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "k8s/overlays/local/secrets/catalog.env"],
        cwd=REPO,
        check=False,
    )
    assert ignored.returncode == 0, "k8s/overlays/local/secrets/ is not in .gitignore"


# ------------------------------------------------------------------ local: backing services


def test_local_overlay_runs_postgresql_rabbitmq_and_redis_as_statefulsets_with_storage() -> None:
    objects = rendered("local")
    statefulsets = by_name(objects, "StatefulSet")
    assert set(statefulsets) == set(BACKING)
    services = by_name(objects, "Service")
    for name, kind in BACKING.items():
        statefulset = statefulsets[name]
        (container,) = pod_spec(statefulset)["containers"]
        assert container["image"] == OFFICIAL_IMAGES[kind], name
        (claim,) = statefulset["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert claim["metadata"]["name"] in mounts, f"{name} does not mount its volume"
        # The governing Service: headless, selecting exactly this StatefulSet's pods.
        governing = services[statefulset["spec"]["serviceName"]]
        assert governing["spec"]["clusterIP"] == "None"
        assert selected(objects, governing["spec"]["selector"]) == [statefulset]
        port = BACKING_PORTS[kind]
        assert port in container_ports(container), name
        assert port in {p["port"] for p in governing["spec"]["ports"]}
        kinds = dict(probes(container))
        assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(kinds), name


def test_each_database_belongs_to_its_service_and_matches_its_url() -> None:
    objects = rendered("local")
    statefulsets = by_name(objects, "StatefulSet")
    secrets = secrets_by_base_name(objects)
    for database, service in DATABASES.items():
        (container,) = pod_spec(statefulsets[database])["containers"]
        environment = container_env(objects, container)
        url = urlsplit(secret_values(secrets[f"{service}-secrets"])["DATABASE_URL"])
        assert (url.hostname, url.port) == (database, 5432)
        assert url.path == f"/{environment['POSTGRES_DB']}"
        assert url.username == environment["POSTGRES_USER"]
        assert url.password == environment["POSTGRES_PASSWORD"]
        assert environment["PGDATA"].startswith("/var/lib/postgresql/data/")
    cache_password = secret_values(secrets["redis"])["REDIS_PASSWORD"]
    for service in SERVICES:
        values = secret_values(secrets[f"{service}-secrets"])
        assert urlsplit(values["CACHE_URL"]).password == cache_password
        assert len(values["SECRET_KEY"]) >= 50


def test_each_service_connects_to_the_broker_as_its_own_user_the_broker_imports() -> None:
    """Users and rights from common.broker_access, imported by the broker at boot."""
    objects = rendered("local")
    secrets = secrets_by_base_name(objects)
    broker = by_name(objects, "StatefulSet")["rabbitmq"]
    (container,) = pod_spec(broker)["containers"]
    environment = container_env(objects, container)
    config = secret_values(secrets["rabbitmq-config"])
    # The image's config file is the Secret's rabbitmq.conf, which imports its definitions.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(broker)["volumes"]}
    config_file = PurePosixPath(environment["RABBITMQ_CONFIG_FILE"])
    mount = mounts[str(config_file.parent)]
    assert mount.get("readOnly") is True
    secret_name = volumes[mount["name"]]["secret"]["secretName"]
    assert secret_name == secrets["rabbitmq-config"]["metadata"]["name"]
    assert f"load_definitions = {config_file.parent}/definitions.json" in config[config_file.name]
    definitions = json.loads(config["definitions.json"])
    users = {user["name"]: user for user in definitions["users"]}
    rights = {right["user"]: right for right in definitions["permissions"]}
    admin = users[environment["RABBITMQ_DEFAULT_USER"]]
    assert admin["tags"] == ["administrator"]
    assert matches_hash(environment["RABBITMQ_DEFAULT_PASS"], admin["password_hash"])
    for service in SERVICES:
        url = urlsplit(secret_values(secrets[f"{service}-secrets"])["BROKER_URL"])
        assert url.username == service
        assert matches_hash(url.password or "", users[service]["password_hash"]), service
        assert users[service]["tags"] == []
        assert {key: rights[service][key] for key in ("configure", "write", "read")} == (
            permissions(service)
        )
    assert set(users) == {*ACCESS, environment["RABBITMQ_DEFAULT_USER"]}
    # No password in clear anywhere in the broker's Secret.
    for service in SERVICES:
        password = urlsplit(secret_values(secrets[f"{service}-secrets"])["BROKER_URL"]).password
        assert password not in config["definitions.json"]


def matches_hash(password: str, stored: str) -> bool:
    """RabbitMQ's sha256 scheme: the stored value's salt, hashed again with the password."""
    salt = base64.b64decode(stored)[:4]
    return password_hash(password, salt=salt) == stored


def test_local_secrets_are_generated_with_the_jwt_key_pair() -> None:
    objects = rendered("local")
    secrets = secrets_by_base_name(objects)
    for name, secret in secrets.items():
        assert secret["metadata"]["name"] != name, f"{name}: no content hash in its name"
        assert "stringData" not in secret
    keys = secret_values(secrets["gateway-jwt"])
    assert keys["private.pem"].startswith("-----BEGIN PRIVATE KEY-----")
    assert keys["public.pem"].startswith("-----BEGIN PUBLIC KEY-----")
    # Every value is new for each run of the script (nothing fixed in the repository).
    passwords = [secret_values(secrets[f"{db}"])["POSTGRES_PASSWORD"] for db in DATABASES]
    assert len(set(passwords)) == len(passwords)


def test_images_are_official_and_overridable() -> None:
    objects = render_custom(
        "images-override",
        {
            "resources": ["../local"],
            "images": [
                {"name": "postgres", "newName": "mirror.example/postgres", "newTag": "15.8"},
                {"name": "eshop", "newName": "registry.example/eshop", "newTag": "2.0.0"},
            ],
        },
    )
    images = {c["image"] for w in workloads(objects) for c in all_containers(w)}
    assert "mirror.example/postgres:15.8" in images
    assert "registry.example/eshop:2.0.0" in images
    assert not any(image.startswith(("postgres:", "eshop:")) for image in images)


# ------------------------------------------------------------------ production


def test_production_uses_managed_services_and_operator_secrets() -> None:
    objects = rendered("production")
    assert not of_kind(objects, "StatefulSet"), "no in-cluster database or broker"
    assert not of_kind(objects, "Secret"), "the operator provides every Secret"
    assert not of_kind(objects, "PersistentVolumeClaim")
    # Every Secret a pod names is one of the documented, operator-made ones.
    text = (K8S / "overlays" / "production" / "kustomization.yaml").read_text()
    for workload in workloads(objects):
        for container in all_containers(workload):
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"].endswith("-secrets")
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in text, volume["secret"]["secretName"]
    assert "catalog-secrets" in text
    assert "gateway-jwt" in text


def test_production_pins_the_image_and_serves_tls() -> None:
    objects = rendered("production")
    for workload in workloads(objects):
        for container in all_containers(workload):
            name, _, tag = container["image"].rpartition(":")
            assert name, container["image"]
            assert tag not in ("", "latest"), container["image"]
    (ingress,) = of_kind(objects, "Ingress")
    (tls,) = ingress["spec"]["tls"]
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    assert hosts
    assert hosts <= set(tls["hosts"])
    assert tls["secretName"]
    assert "SECURE_SSL_REDIRECT" not in by_name(objects, "ConfigMap")["eshop-config"]["data"]


def test_production_spreads_every_deployment_over_zones_and_nodes() -> None:
    objects = rendered("production")
    for deployment in of_kind(objects, "Deployment"):
        name = deployment["metadata"]["name"]
        constraints = pod_spec(deployment)["topologySpreadConstraints"]
        keys = {c["topologyKey"] for c in constraints}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, name
        for constraint in constraints:
            # The pod's own name and component: each Deployment is spread on its own.
            assert selects(constraint["labelSelector"], pod_labels(deployment)), name
            assert {"app.kubernetes.io/name", "app.kubernetes.io/component"} <= set(
                constraint["matchLabelKeys"]
            )
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] >= 3


# ------------------------------------------------------------------ workloads: roles


@pytest.mark.parametrize("overlay", ["local", "production"])
def test_every_eshop_container_runs_a_role_of_its_service(overlay: str) -> None:
    objects = rendered(overlay)
    for workload in workloads(objects):
        for container in all_containers(workload):
            if not is_eshop(container):
                continue
            where = f"{workload['metadata']['name']}/{container['name']}"
            if container["name"] == "copy-static":
                continue  # a plain `sh -c cp ...`: no service, no settings
            assert "command" not in container, f"{where}: say the role, not a command"
            service = env_value(container, "SERVICE")
            assert service in SERVICES, f"{where}: SERVICE={service}"
            role = role_of(container)
            if container["name"] == "wait-for-migrations":
                assert container["args"] == ["sh", "-c", WAIT_FOR_MIGRATIONS], where
                continue
            assert role in ROLES, f"{where}: {role} is not a role of the image"
            allowed = ROLES[role]
            assert allowed is None or service in allowed, f"{where}: {role} is not for {service}"
            assert "workingDir" not in container, f"{where}: the entrypoint picks the folder"


def test_every_deployment_selector_matches_only_its_own_pods() -> None:
    objects = rendered("local")
    deployments = of_kind(objects, "Deployment")
    assert len(deployments) == (len(SERVICES) + len(WORKERS) + len(BACKGROUND) + len(GRPC_SERVERS))
    for workload in workloads(objects):
        if workload["kind"] == "Job":
            continue
        selector = workload["spec"]["selector"]
        assert selects(selector, pod_labels(workload)), workload["metadata"]["name"]
        assert [w for w in selected(objects, selector) if w["kind"] != "Job"] == [workload]


@pytest.mark.parametrize(("service", "port"), SERVICES.items())
def test_web_deployment(service: str, port: int) -> None:
    objects = rendered("local")
    deployment = by_name(objects, "Deployment")[service]
    (web,) = pod_spec(deployment)["containers"]
    assert web["args"] == ["web"]
    assert env_value(web, "SERVICE") == service
    assert container_ports(web)["http"] == port  # the entrypoint's default port
    assert "PORT" not in container_env(objects, web)
    kinds = dict(probes(web))
    assert kinds["livenessProbe"]["httpGet"]["path"] == "/health/"
    assert kinds["readinessProbe"]["httpGet"]["path"] == "/ready/"
    assert "startupProbe" in kinds
    assert env_value(web, "PROMETHEUS_MULTIPROC_DIR") == "/app/var/prometheus"


def test_migrations_run_once_per_release_in_a_job_per_service() -> None:
    objects = rendered("local")
    jobs = by_name(objects, "Job")
    deployments = by_name(objects, "Deployment")
    for service in SERVICES:
        job = jobs[f"{service}-migrate"]
        (migrate,) = pod_spec(job)["containers"]
        assert migrate["args"] == ["migrate"]
        assert env_value(migrate, "SERVICE") == service
        assert pod_spec(job)["restartPolicy"] in ("OnFailure", "Never")
        assert job["spec"]["backoffLimit"] > 0
        web = pod_spec(deployments[service])["containers"][0]
        assert migrate["envFrom"] == web["envFrom"], "migrate must see the same database"
    # Nothing else migrates: no init container in any pod, no other container.
    for workload in workloads(objects):
        for container in all_containers(workload):
            if role_of(container) == "migrate":
                assert workload["kind"] == "Job", workload["metadata"]["name"]


def test_every_pod_of_a_service_waits_for_its_migrations() -> None:
    objects = rendered("local")
    for workload in workloads(objects):
        name = workload["metadata"]["name"]
        if workload["kind"] == "StatefulSet" or name.endswith("-migrate"):
            continue
        (main, *_) = pod_spec(workload)["containers"]
        service = env_value(main, "SERVICE")
        waits = [
            init
            for init in pod_spec(workload).get("initContainers", [])
            if init["name"] == "wait-for-migrations"
        ]
        assert len(waits) == 1, f"{name} starts without waiting for its migrations"
        (wait,) = waits
        assert wait["args"] == ["sh", "-c", WAIT_FOR_MIGRATIONS]
        assert env_value(wait, "SERVICE") == service, name
        assert wait["envFrom"] == main["envFrom"], f"{name}: it must check the same database"


@pytest.mark.parametrize("worker", WORKERS)
def test_worker_deployment(worker: str) -> None:
    objects = rendered("local")
    deployments = by_name(objects, "Deployment")
    (container,) = pod_spec(deployments[f"{worker}-worker"])["containers"]
    assert container["args"] == ["worker"]
    assert env_value(container, "SERVICE") == worker
    web = pod_spec(deployments[worker])["containers"][0]
    assert container["envFrom"] == web["envFrom"]


@pytest.mark.parametrize("name", BACKGROUND)
def test_background_deployment(name: str) -> None:
    objects = rendered("local")
    service, role = BACKGROUND[name]
    deployments = by_name(objects, "Deployment")
    deployment = deployments[name]
    assert pod_labels(deployment)["app.kubernetes.io/name"] == service
    assert deployment["spec"]["replicas"] == 1
    if name in SINGLETONS:
        # A rolling update would run the old pod and the new one side by side.
        assert deployment["spec"]["strategy"]["type"] == "Recreate", name
    (container,) = pod_spec(deployment)["containers"]
    assert container["args"] == [role]
    assert env_value(container, "SERVICE") == service
    web = pod_spec(deployments[service])["containers"][0]
    assert container["envFrom"] == web["envFrom"]
    assert env_value(container, "OTEL_SERVICE_NAME") == name
    assert not container.get("ports"), f"{name} serves nothing"
    assert not dict(probes(container)), f"{name} has no endpoint to probe"


def test_relay_declares_every_event_queue_before_it_publishes() -> None:
    objects = rendered("local")
    relay = pod_spec(by_name(objects, "Deployment")[RELAY])
    (container,) = relay["containers"]
    declared = {
        env_value(init, "SERVICE"): init
        for init in relay["initContainers"]
        if role_of(init) == "queues"
    }
    assert set(declared) == set(CONSUMERS)
    for init in declared.values():
        # The relay pod's own settings: its broker, no other service's credentials.
        assert init["envFrom"] == container["envFrom"]
        # So it waits for the consumer to declare its queue (as its own broker user):
        # orders' user may not declare another service's queues (common.broker_access).
        assert init["args"] == ["queues", "--wait"]


def test_pods_read_only_their_own_service_secrets() -> None:
    objects = rendered("local")
    secrets = by_name(objects, "Secret")
    for workload in workloads(objects):
        labels = pod_labels(workload)
        owner_label = "app.kubernetes.io/instance" if workload["kind"] == "StatefulSet" else None
        owner = labels[owner_label] if owner_label else labels["app.kubernetes.io/name"]
        for container in all_containers(workload):
            names = [
                s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s
            ]
            names += [
                v["valueFrom"]["secretKeyRef"]["name"]
                for v in container.get("env", [])
                if "secretKeyRef" in v.get("valueFrom", {})
            ]
            for name in names:
                secret_labels = secrets[name]["metadata"]["labels"]
                key = owner_label or "app.kubernetes.io/name"
                assert secret_labels.get(key) == owner, f"{workload['metadata']['name']}: {name}"


@pytest.mark.parametrize("overlay", ["local", "production"])
def test_pods_run_non_root_on_a_read_only_filesystem_with_limits(overlay: str) -> None:
    for workload in workloads(rendered(overlay)):
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        writable = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        writable |= {
            c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])
        }
        secrets = {v["name"] for v in spec.get("volumes", []) if "secret" in v}
        for container in all_containers(workload):
            where = f"{name}/{container['name']}"
            security = container["securityContext"]
            # RabbitMQ's image writes its configuration at start (rabbitmq.yaml).
            if name != "rabbitmq":
                assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            for key in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][key]), where
            for mount in container.get("volumeMounts", []):
                read_only_secret = mount["name"] in secrets and mount.get("readOnly") is True
                assert mount["name"] in writable or read_only_secret, f"{where} {mount['name']}"
        if all(is_eshop(c) for c in spec["containers"]):
            mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
            assert {"/app/var", "/tmp"} <= mounts, name  # noqa: S108 (mount paths)


def test_every_probe_is_a_health_endpoint_on_a_declared_port() -> None:
    for workload in workloads(rendered("local")):
        for container in all_containers(workload):
            for kind, probe in probes(container):
                where = f"{workload['metadata']['name']}/{container['name']} {kind}"
                if "httpGet" in probe:
                    assert probe["httpGet"]["path"] in HEALTH_PATHS, where
                    assert probe["httpGet"]["port"] in container_ports(container), where
                elif "grpc" in probe:  # the standard gRPC health service
                    assert probe["grpc"]["port"] in container_ports(container).values(), where
                else:
                    assert probe["exec"]["command"], where


def test_gateway_reads_its_keys_from_a_read_only_secret_volume() -> None:
    objects = rendered("local")
    gateway = by_name(objects, "Deployment")["gateway"]
    (web,) = pod_spec(gateway)["containers"]
    environment = container_env(objects, web)
    volumes = {v["name"]: v for v in pod_spec(gateway)["volumes"]}
    mounts = {m["mountPath"]: m for m in web.get("volumeMounts", [])}
    secrets = by_name(objects, "Secret")
    for variable in ("JWT_PRIVATE_KEY", "JWT_PUBLIC_KEY"):
        path = PurePosixPath(environment[variable].split(",")[0])
        mount = mounts[str(path.parent)]
        assert mount.get("readOnly") is True, variable
        assert "subPath" not in mount, f"{variable}: a subPath mount never sees Secret updates"
        source = volumes[mount["name"]]["secret"]
        keys = {item["path"]: item["key"] for item in source.get("items", [])}
        assert keys[path.name] in secret_values(secrets[source["secretName"]]), variable
        if variable == "JWT_PRIVATE_KEY":
            item = next(i for i in source["items"] if i["path"] == path.name)
            mode = item.get("mode", source.get("defaultMode", 0o644))
            assert mode & 0o077 == 0, f"the private key is mode {mode:o}, not owner-only"
    retired = mounts[environment["JWT_RETIRED_KEYS"]]
    assert retired.get("readOnly") is True
    assert volumes[retired["name"]]["secret"]["optional"] is True


def test_services_verify_tokens_with_the_gateway_jwks() -> None:
    objects = rendered("local")
    deployments = by_name(objects, "Deployment")
    for name in [*BACKENDS, *(f"{w}-worker" for w in WORKERS)]:
        (container,) = pod_spec(deployments[name])["containers"]
        url = urlsplit(container_env(objects, container)["JWT_JWKS_URL"])
        assert (url.scheme, url.hostname, url.port, url.path) == (
            "http",
            "gateway",
            SERVICES["gateway"],
            JWKS_PATH,
        ), name
    for container in all_containers(deployments["gateway"]):
        assert "JWT_JWKS_URL" not in container_env(objects, container), container["name"]


# ------------------------------------------------------------------ traffic


def test_gateway_discovers_every_instance_through_headless_services() -> None:
    objects = rendered("local")
    services = by_name(objects, "Service")
    deployments = by_name(objects, "Deployment")
    gateway = pod_spec(deployments["gateway"])["containers"][0]
    environment = container_env(objects, gateway)
    assert environment["DISCOVERY"] == "dns"
    for backend in BACKENDS:
        host, _, port = environment[f"{backend.upper()}_DNS"].rpartition(":")
        headless = services[host]
        assert headless["spec"]["clusterIP"] == "None", f"{host} is not headless"
        assert not headless["spec"].get("publishNotReadyAddresses"), "unready pods get traffic"
        assert int(port) == SERVICES[backend]
        assert selected(objects, headless["spec"]["selector"]) == [deployments[backend]]
        (service_port,) = headless["spec"]["ports"]
        web_ports = container_ports(pod_spec(deployments[backend])["containers"][0])
        assert web_ports[service_port["targetPort"]] == int(port)


@pytest.mark.parametrize("name", GRPC_SERVERS)
def test_grpc_servers_are_probed_over_grpc_and_reached_by_the_gateway_alone(name: str) -> None:
    service, port, health_name = GRPC_SERVERS[name]
    objects = rendered("local")
    deployments = by_name(objects, "Deployment")
    (server,) = pod_spec(deployments[name])["containers"]
    kinds = dict(probes(server))
    headless = by_name(objects, "Service")[name]
    gateway = deployments["gateway"]
    gateway_env = container_env(objects, pod_spec(gateway)["containers"][0])

    assert server["args"] == ["grpc"]
    assert env_value(server, "SERVICE") == service
    assert container_ports(server)["grpc"] == port
    assert {kind: probe["grpc"]["port"] for kind, probe in kinds.items()} == {
        "startupProbe": port,
        "livenessProbe": port,
        "readinessProbe": port,
    }
    assert kinds["readinessProbe"]["grpc"]["service"] == health_name
    assert headless["spec"]["clusterIP"] == "None"  # one HTTP/2 connection per pod, not per VIP
    assert gateway_env[f"{service.upper()}_GRPC_URL"] == f"dns:///{name}:{port}"
    assert ingress_allowed(objects, gateway, deployments[name], port)
    assert not ingress_allowed(objects, deployments[f"{service}-worker"], deployments[name], port)


def test_every_service_selects_one_workload_on_a_declared_port() -> None:
    objects = rendered("local")
    for name, service in by_name(objects, "Service").items():
        chosen = [w for w in selected(objects, service["spec"]["selector"]) if w["kind"] != "Job"]
        assert len(chosen) == 1, f"Service {name} selects {len(chosen)} workloads"
        ports = container_ports(pod_spec(chosen[0])["containers"][0])
        for port in service["spec"]["ports"]:
            assert ports.get(port["targetPort"]) == port["port"], name


def test_web_deployments_scale_on_cpu_with_disruption_budgets() -> None:
    objects = rendered("production")
    deployments = by_name(objects, "Deployment")
    autoscalers = by_name(objects, "HorizontalPodAutoscaler")
    assert set(autoscalers) == set(SERVICES)
    for name, hpa in autoscalers.items():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
    budgets = by_name(objects, "PodDisruptionBudget")
    assert set(budgets) == set(SERVICES)
    for name, budget in budgets.items():
        assert selected(objects, budget["spec"]["selector"]) == [deployments[name]]
    # One pod each locally: the budget must still let a node drain.
    for budget in of_kind(rendered("local"), "PodDisruptionBudget"):
        assert budget["spec"]["maxUnavailable"] == 1


def test_network_policies_reach_only_what_they_must() -> None:
    objects = rendered("local")
    policies = by_name(objects, "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert (deny["podSelector"], deny["policyTypes"]) == ({}, ["Ingress"])
    for name, policy in policies.items():
        spec = policy["spec"]
        if spec["podSelector"]:
            assert selected(objects, spec["podSelector"]), f"{name} selects no pod"
    deployments = by_name(objects, "Deployment")
    statefulsets = by_name(objects, "StatefulSet")
    jobs = by_name(objects, "Job")
    gateway = deployments["gateway"]
    for backend in BACKENDS:
        assert ingress_allowed(objects, gateway, deployments[backend], SERVICES[backend])
        assert not ingress_allowed(objects, deployments[f"{backend}-worker"], gateway, 5432)
        # Every service and worker fetches the gateway's JWKS.
        for name in (backend, f"{backend}-worker"):
            assert ingress_allowed(objects, deployments[name], gateway, SERVICES["gateway"])
    for database, owner in DATABASES.items():
        for workload in [*deployments.values(), *jobs.values()]:
            service = pod_labels(workload)["app.kubernetes.io/name"]
            allowed = ingress_allowed(objects, workload, statefulsets[database], 5432)
            assert allowed == (service == owner), f"{workload['metadata']['name']} -> {database}"
    for workload in deployments.values():
        assert ingress_allowed(objects, workload, statefulsets["rabbitmq"], 5672)
        assert ingress_allowed(objects, workload, statefulsets["redis"], 6379)
    # The background pods serve nothing: no policy lets anything in.
    for name in [*(f"{w}-worker" for w in WORKERS), *BACKGROUND]:
        for policy in policies.values():
            if selects(policy["spec"]["podSelector"], pod_labels(deployments[name])):
                assert not policy["spec"].get("ingress"), f"{policy['metadata']['name']}"


@pytest.mark.parametrize("overlay", ["local", "production"])
def test_ingress_routes_only_the_public_surface_to_the_gateway(overlay: str) -> None:
    objects = rendered(overlay)
    (ingress,) = of_kind(objects, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    ports = {p["port"] for p in by_name(objects, "Service")["gateway"]["spec"]["ports"]}
    for rule in ingress["spec"]["rules"]:
        for route in rule["http"]["paths"]:
            backend = route["backend"]["service"]
            assert backend["name"] == "gateway"
            assert backend["port"]["number"] in ports
    for path in PUBLIC_PATHS:
        assert ingress_routes(objects, path), f"{path} is not reachable from outside"
    for path in PRIVATE_PATHS:
        assert not ingress_routes(objects, path), f"{path} is routed from outside"


def test_expired_refresh_tokens_are_flushed_daily_by_a_cronjob() -> None:
    cron = by_name(rendered("local"), "CronJob")["gateway-flush-refresh-tokens"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(cron["spec"]["schedule"].split()) == 5
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["manage", "flush_refresh_tokens"]
    assert env_value(container, "SERVICE") == "gateway"
    assert {"configMapRef": {"name": "eshop-config"}} in container["envFrom"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_gateways_operators_surface_is_on_an_internal_port_no_service_routes() -> None:
    objects = rendered("local")
    deployment = by_name(objects, "Deployment")["gateway"]
    (web,) = pod_spec(deployment)["containers"]
    internal = container_ports(web)["internal"]
    assert env_value(web, "GATEWAY_INTERNAL_PORT") == str(internal)
    assert internal != container_ports(web)["http"]
    # Probes and Prometheus use it; the Service (the Ingress's backend) does not.
    for kind, probe in probes(web):
        assert probe["httpGet"]["port"] == "internal", kind
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(internal)
    service_ports = by_name(objects, "Service")["gateway"]["spec"]["ports"]
    assert [port["targetPort"] for port in service_ports] == ["http"]


# Deployments that send or receive commands, replies or events (common.signing), with the
# services whose public keys each needs: catalog and users hear from orders, orders from both,
# users' worker from catalog too (the credit step catalog passes on).
SIGNING = {
    "catalog-worker": ("catalog", {"orders"}),
    "catalog-events": ("catalog", {"orders"}),
    "users-worker": ("users", {"orders", "catalog"}),
    "users-events": ("users", {"orders"}),
    "orders": ("orders", {"catalog", "users"}),
    "orders-worker": ("orders", {"catalog", "users"}),
    "orders-saga": ("orders", {"catalog", "users"}),
    "orders-relay": ("orders", {"catalog", "users"}),
}


@pytest.mark.parametrize("name", sorted(SIGNING))
def test_messaging_pods_sign_with_their_own_key_from_a_secret(name: str) -> None:
    objects = rendered("local")
    service, hears_from = SIGNING[name]
    workload = by_name(objects, "Deployment")[name]
    container = pod_spec(workload)["containers"][0]
    environment = container_env(objects, container)
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    secrets = by_name(objects, "Secret")

    key = PurePosixPath(environment["MESSAGE_SIGNING_KEY"])
    key_mount = mounts[str(key.parent)]
    key_source = volumes[key_mount["name"]]["secret"]
    public_mount = mounts[environment["MESSAGE_SIGNING_PUBLIC_KEYS"]]
    public_source = volumes[public_mount["name"]]["secret"]
    secret = secrets[key_source["secretName"]]
    values = secret_values(secret)

    assert secret["metadata"]["labels"]["app.kubernetes.io/name"] == service
    assert key_mount.get("readOnly") is True
    assert public_mount.get("readOnly") is True
    assert {item["path"]: item["key"] for item in key_source["items"]} == {key.name: "key.pem"}
    assert key_source["defaultMode"] & 0o077 == 0, "the private key is not owner-only"
    assert public_source["secretName"] == key_source["secretName"]
    assert {item["path"] for item in public_source["items"]} == {f"{s}.pem" for s in hears_from}
    # The service's Secret: its key and what its pods need between them, nothing more.
    needed = {peer for own, peers in SIGNING.values() if own == service for peer in peers}
    assert set(values) == {"key.pem", *(f"{s}.pem" for s in needed)}
    assert "PRIVATE KEY" in values["key.pem"]
    assert all("PUBLIC KEY" in values[f"{s}.pem"] for s in hears_from)
