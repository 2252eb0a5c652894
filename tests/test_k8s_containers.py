"""The local Kubernetes overlay, pod by pod, in Docker: what a kubelet would do, short of a cluster.

k8s/overlays/local is rendered (tests/test_k8s_manifests.py: a copy of k8s/ with
Secrets from scripts/k8s_secrets.py, the script behind `make k8s-secrets`), its official
images pointed at the offline stand-ins through kustomize's `images:`, and every
container of every StatefulSet, Job and Deployment is started with the settings the
manifest gives it: image, command and role arguments, environment from the rendered
ConfigMaps and Secrets (with the kubelet's $(VAR) expansion), user and groups,
read-only root filesystem, dropped capabilities, memory and CPU limits, emptyDir,
Secret and PersistentVolumeClaim volumes (host folders and Docker volumes), the pod's
host name. Each pod's containers join a Docker network of the test's own under the
names of the Services that select the pod, so in-cluster names (catalog-db,
rabbitmq.eshop.svc, catalog-headless, ...) resolve as cluster DNS would resolve them
(Docker answers for a container once it runs; a Service waits for its readiness, which
the phases below wait for anyway).

Order, as the cluster would settle: the StatefulSets until their probes pass, then the
Jobs (the migrations, the demo catalog) to completion, then the Deployments, each pod's
init containers one after the other to success, then its container until its startup,
liveness and readiness probes pass. httpGet probes run inside the container
(`docker exec ... python -c urllib...`), grpc probes with `python -m common.grpc_probe`
(the health service's Check, as the kubelet asks it), exec probes with `docker exec`; nothing is
published on the host. Containers without probes (workers, consumers, relay, watchdog)
must still be running at the end. Last, one request through the gateway shows its DNS
discovery reaching the catalog's pods.

Every container, volume, host folder and the network are removed at the end, also on
failure (all carry a label with the run's id).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.docker_support import ensure_images
from tests.test_k8s_manifests import (
    NAMESPACE,
    by_name,
    of_kind,
    pod_labels,
    pod_spec,
    probes,
    render_custom,
    secret_values,
    selects,
)

LABEL = "eshop-k8s-test"
# Per phase: how long a pod may take to become ready (the probes' own budgets apply too).
READY_DEADLINE = 150.0
JOB_DEADLINE = 150.0
DOCKER_TIMEOUT = 60.0
# The official images of the overlay -> the variable of the stand-in (ensure_images()).
STAND_INS = {"postgres": "POSTGRES_IMAGE", "rabbitmq": "RABBITMQ_IMAGE", "redis": "REDIS_IMAGE"}
VAR_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def docker(*args: str, timeout: float = DOCKER_TIMEOUT, check: bool = True) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} ...: {result.stderr.strip()}")
    return result.stdout.strip()


def expand(text: str, environment: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion: $$ is a literal $, unknown references stay as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return environment.get(match.group(1), match.group(0))

    return VAR_REFERENCE.sub(replace, text)


def quantity_bytes(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return int(float(value[: -len(suffix)]) * factor)
    return int(value)


def quantity_cpus(value: str) -> str:
    return str(int(value[:-1]) / 1000) if value.endswith("m") else str(float(value))


@dataclass
class Pod:
    """One pod of a workload (replica 0: enough to show that its spec starts)."""

    workload: dict[str, Any]
    name: str
    aliases: list[str]
    containers: list[str] = field(default_factory=list)  # Docker names, in start order
    main: dict[str, str] = field(default_factory=dict)  # k8s container name -> Docker name

    @property
    def spec(self) -> dict[str, Any]:
        return pod_spec(self.workload)


class Cluster:
    """Starts pods as Docker containers on a network of the run's own; removes them all."""

    def __init__(self, objects: list[dict[str, Any]], stand_ins: set[str], root: Path) -> None:
        self.objects = objects
        self.stand_ins = stand_ins
        self.root = root
        self.run = uuid.uuid4().hex[:8]
        self.network = f"eshop-k8s-{self.run}"
        self.config_maps = by_name(objects, "ConfigMap")
        self.secrets = {name: secret_values(s) for name, s in by_name(objects, "Secret").items()}
        self.services = of_kind(objects, "Service")
        self.pods: list[Pod] = []

    # ---------------------------------------------------------------- lifecycle

    def create_network(self) -> None:
        docker("network", "create", "--label", f"{LABEL}={self.run}", self.network)

    def clean_up(self) -> None:
        label = f"label={LABEL}={self.run}"
        containers = docker("ps", "-aq", "--filter", label, check=False).split()
        if containers:
            docker("rm", "-f", "-v", *containers, check=False, timeout=120)
        volumes = docker("volume", "ls", "-q", "--filter", label, check=False).split()
        if volumes:
            docker("volume", "rm", "-f", *volumes, check=False)
        docker("network", "rm", self.network, check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    # ---------------------------------------------------------------- pods

    def pod(self, workload: dict[str, Any]) -> Pod:
        name = workload["metadata"]["name"]
        pod_name = f"{name}-0" if workload["kind"] == "StatefulSet" else f"{name}-{self.run[:5]}"
        labels = pod_labels(workload)
        aliases = []
        for service in self.services:
            if service["spec"].get("selector") and selects(service["spec"]["selector"], labels):
                service_name = service["metadata"]["name"]
                aliases += [
                    service_name,
                    f"{service_name}.{NAMESPACE}",
                    f"{service_name}.{NAMESPACE}.svc",
                    f"{service_name}.{NAMESPACE}.svc.cluster.local",
                ]
        pod = Pod(workload=workload, name=pod_name, aliases=aliases)
        self.pods.append(pod)
        return pod

    def environment(self, container: dict[str, Any]) -> dict[str, str]:
        environment: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                environment.update(self.config_maps[source["configMapRef"]["name"]]["data"])
            if "secretRef" in source:
                environment.update(self.secrets[source["secretRef"]["name"]])
        for variable in container.get("env", []):
            if "value" in variable:
                environment[variable["name"]] = expand(variable["value"], environment)
                continue
            source = variable["valueFrom"]
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                environment[variable["name"]] = self.secrets[ref["name"]][ref["key"]]
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                environment[variable["name"]] = self.config_maps[ref["name"]]["data"][ref["key"]]
            else:
                raise NotImplementedError(f"env {variable['name']}: {source}")
        return environment

    def volume_mounts(self, pod: Pod, container: dict[str, Any]) -> list[str]:
        volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
        claims = {
            c["metadata"]["name"] for c in pod.workload["spec"].get("volumeClaimTemplates", [])
        }
        fs_group = pod.spec.get("securityContext", {}).get("fsGroup")
        options = []
        for mount in container.get("volumeMounts", []):
            read_only = ",readonly" if mount.get("readOnly") else ""
            target = mount["mountPath"]
            if mount["name"] in claims:
                # A PersistentVolumeClaim: a Docker volume, kept for the pod's life.
                volume = f"eshop-k8s-{self.run}-{mount['name']}-{pod.name}"
                docker("volume", "create", "--label", f"{LABEL}={self.run}", volume)
                options += ["--mount", f"type=volume,src={volume},dst={target}{read_only}"]
                continue
            volume = volumes[mount["name"]]
            folder = self.root / pod.name / mount["name"]
            if "emptyDir" in volume:
                if not folder.exists():
                    folder.mkdir(parents=True)
                    folder.chmod(0o777)  # the kubelet's emptyDir mode
            elif "secret" in volume:
                if not folder.exists():
                    self.write_secret_volume(folder, volume["secret"], fs_group)
            else:
                raise NotImplementedError(f"volume {mount['name']}: {volume}")
            options += ["--mount", f"type=bind,src={folder},dst={target}{read_only}"]
        return options

    def write_secret_volume(
        self, folder: Path, source: dict[str, Any], fs_group: int | None
    ) -> None:
        """The files the kubelet projects: items (or every key), modes, fsGroup's group."""
        folder.mkdir(parents=True)
        folder.chmod(0o755)
        values = self.secrets.get(source["secretName"])
        if values is None:
            assert source.get("optional"), f"Secret {source['secretName']} is missing"
            return
        items = source.get("items") or [{"key": key, "path": key} for key in values]
        for item in items:
            path = folder / item["path"]
            path.write_text(values[item["key"]])
            mode = item.get("mode", source.get("defaultMode", 0o644))
            if fs_group is not None:
                # With fsGroup the files are group-owned and group-readable (0400 -> 0440).
                shutil.chown(path, user=0, group=fs_group)
                mode |= 0o440
            path.chmod(mode)

    def run_args(
        self, pod: Pod, container: dict[str, Any], docker_name: str, main: bool
    ) -> list[str]:
        image = container["image"]
        stand_in = image in self.stand_ins
        pod_security = pod.spec.get("securityContext", {})
        security = container.get("securityContext", {})
        args = ["run", "-d", "--name", docker_name, "--label", f"{LABEL}={self.run}"]
        args += ["--network", self.network, "--hostname", pod.name]
        if main:  # a Service's endpoints are the pods' running containers
            for alias in pod.aliases:
                args += ["--network-alias", alias]
        if not stand_in:
            # The stand-ins run as their Debian package's user (uid 100 or 101), where
            # the official images the manifest names run as 999 (runAsUser there).
            user = security.get("runAsUser", pod_security.get("runAsUser"))
            group = security.get("runAsGroup", pod_security.get("runAsGroup"))
            if user is not None:
                args += ["--user", f"{user}:{group}" if group is not None else str(user)]
            if pod_security.get("fsGroup") is not None:
                args += ["--group-add", str(pod_security["fsGroup"])]
        if security.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if "ALL" in security.get("capabilities", {}).get("drop", []):
            args += ["--cap-drop", "ALL"]
        if security.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        limits = container.get("resources", {}).get("limits", {})
        if "memory" in limits:
            args += ["--memory", str(quantity_bytes(limits["memory"]))]
        if "cpu" in limits:
            args += ["--cpus", quantity_cpus(str(limits["cpu"]))]
        if "workingDir" in container:
            args += ["--workdir", container["workingDir"]]
        environment = self.environment(container)
        env_file = self.root / pod.name / f"{container['name']}.env"
        env_file.parent.mkdir(parents=True, exist_ok=True)
        env_file.write_text("".join(f"{k}={v}\n" for k, v in environment.items()))
        args += ["--env-file", str(env_file)]
        args += self.volume_mounts(pod, container)
        command = [expand(part, environment) for part in container.get("command", [])]
        arguments = [expand(part, environment) for part in container.get("args", [])]
        if command:
            args += ["--entrypoint", command[0], image, *command[1:], *arguments]
        else:
            args += [image, *arguments]
        return args

    def start(self, pod: Pod, container: dict[str, Any], *, main: bool) -> str:
        docker_name = f"ek8s-{self.run}-{pod.name}-{container['name']}"
        docker(*self.run_args(pod, container, docker_name, main))
        pod.containers.append(docker_name)
        if main:
            pod.main[container["name"]] = docker_name
        return docker_name

    # ---------------------------------------------------------------- waiting

    def logs(self, docker_name: str) -> str:
        result = subprocess.run(
            ["docker", "logs", "--tail", "40", docker_name],
            capture_output=True,
            text=True,
            timeout=DOCKER_TIMEOUT,
            check=False,
        )
        return (result.stdout + result.stderr)[-4000:]

    def state(self, docker_name: str) -> dict[str, Any]:
        return json.loads(docker("inspect", "--format", "{{json .State}}", docker_name))

    def run_to_completion(self, pod: Pod, container: dict[str, Any], deadline: float) -> None:
        """Start a container and wait for exit 0 (an init container, a Job's container)."""
        docker_name = self.start(pod, container, main=False)
        remaining = max(deadline - time.monotonic(), 1.0)
        try:
            code = int(docker("wait", docker_name, timeout=remaining))
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{pod.name}/{container['name']} still runs after its deadline:\n"
                f"{self.logs(docker_name)}"
            ) from None
        if code != 0:
            raise AssertionError(
                f"{pod.name}/{container['name']} exited {code}:\n{self.logs(docker_name)}"
            )

    def probe_once(
        self, docker_name: str, container: dict[str, Any], probe: dict[str, Any]
    ) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        if "httpGet" in probe:
            get = probe["httpGet"]
            port = get["port"]
            if isinstance(port, str):
                port = next(p["containerPort"] for p in container["ports"] if p.get("name") == port)
            url = f"http://127.0.0.1:{port}{get.get('path', '/')}"
            # The kubelet accepts 200-399; urlopen raises on 400 and above.
            command = [
                "python",
                "-c",
                f"import urllib.request; urllib.request.urlopen({url!r}, timeout={timeout})",
            ]
        elif "exec" in probe:
            command = probe["exec"]["command"]
        elif "grpc" in probe:
            # As the kubelet asks: grpc.health.v1 Check on the port, for the named service.
            check = probe["grpc"]
            address = f"127.0.0.1:{check['port']}"
            command = ["python", "-m", "common.grpc_probe", address, check.get("service", "")]
        else:
            raise NotImplementedError(f"probe {probe}")
        try:
            result = subprocess.run(
                ["docker", "exec", docker_name, *command],
                capture_output=True,
                timeout=timeout + 10,  # docker exec's own start-up on a busy machine
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    def wait_until(
        self, what: str, docker_name: str, check: Callable[[], bool], period: float, deadline: float
    ) -> None:
        while True:
            if check():
                return
            state = self.state(docker_name)
            if not state["Running"]:
                raise AssertionError(
                    f"{what}: the container exited ({state['ExitCode']}):\n{self.logs(docker_name)}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not passed in time:\n{self.logs(docker_name)}")
            time.sleep(period)

    def wait_probes(self, pod: Pod, container: dict[str, Any], deadline: float) -> None:
        """startupProbe first (its budget: failureThreshold x periodSeconds), then liveness
        and readiness. Polled at most every 2 s: sooner than the kubelet, same verdict."""
        docker_name = pod.main[container["name"]]
        found = dict(probes(container))
        started = time.monotonic()
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            if kind not in found:
                continue
            probe = found[kind]
            period = min(float(probe.get("periodSeconds", 10)), 2.0)
            limit = deadline
            if kind == "startupProbe":
                budget = probe.get("initialDelaySeconds", 0) + probe.get(
                    "failureThreshold", 3
                ) * probe.get("periodSeconds", 10)
                limit = min(deadline, started + budget + 15)
            self.wait_until(
                f"{pod.name}/{container['name']} {kind}",
                docker_name,
                lambda probe=probe: self.probe_once(docker_name, container, probe),
                period,
                limit,
            )

    # ---------------------------------------------------------------- phases

    def bring_up(self, pod: Pod, deadline: float) -> None:
        """Init containers in order to success, then the containers until their probes pass."""
        for init in pod.spec.get("initContainers", []):
            self.run_to_completion(pod, init, deadline)
        for container in pod.spec["containers"]:
            self.start(pod, container, main=True)
        for container in pod.spec["containers"]:
            self.wait_probes(pod, container, deadline)

    def complete_job(self, pod: Pod, deadline: float) -> None:
        """A Job's pod: init containers, then its container to exit 0, retried as
        restartPolicy OnFailure would (backoffLimit times) before the deadline."""
        for init in pod.spec.get("initContainers", []):
            self.run_to_completion(pod, init, deadline)
        (container,) = pod.spec["containers"]
        attempts = pod.workload["spec"].get("backoffLimit", 6) + 1
        for attempt in range(attempts):
            try:
                self.run_to_completion(
                    pod, {**container, "name": f"{container['name']}-{attempt}"}, deadline
                )
                return
            except AssertionError:
                if attempt == attempts - 1 or time.monotonic() > deadline:
                    raise

    def all_at_once(
        self, action: Callable[[Pod, float], None], pods: list[Pod], budget: float
    ) -> None:
        deadline = time.monotonic() + budget
        with ThreadPoolExecutor(max_workers=max(len(pods), 1)) as pool:
            futures = {pod.name: pool.submit(action, pod, deadline) for pod in pods}
        errors = []
        for name, future in futures.items():
            error = future.exception()
            if error is not None:
                errors.append(f"--- {name}: {error}")
        assert not errors, "\n".join(errors)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    images = ensure_images()
    overrides = [
        {
            "name": "eshop",
            "newName": images["ESHOP_IMAGE"].split(":")[0],
            "newTag": images["ESHOP_IMAGE"].split(":")[1],
        }
    ]
    stand_ins = set()
    for official, variable in STAND_INS.items():
        name, _, tag = images[variable].rpartition(":")
        overrides.append({"name": official, "newName": name, "newTag": tag})
        stand_ins.add(images[variable])
    objects = render_custom("docker-test", {"resources": ["../local"], "images": overrides})
    root = Path(tempfile.mkdtemp(prefix="eshop-k8s-pods-"))
    cluster = Cluster(objects, stand_ins, root)
    try:
        cluster.create_network()
        yield cluster
    finally:
        cluster.clean_up()


@pytest.mark.timeout(480)
def test_local_overlay_pods_start_in_docker_and_pass_their_probes(cluster: Cluster) -> None:
    objects = cluster.objects
    timings: dict[str, float] = {}

    started = time.monotonic()
    statefulsets = [cluster.pod(w) for w in of_kind(objects, "StatefulSet")]
    assert {p.workload["metadata"]["name"] for p in statefulsets} >= {
        "rabbitmq",
        "redis",
        "catalog-db",
    }
    cluster.all_at_once(cluster.bring_up, statefulsets, READY_DEADLINE)
    timings["statefulsets"] = time.monotonic() - started

    started = time.monotonic()
    jobs = [cluster.pod(w) for w in of_kind(objects, "Job")]
    assert {p.workload["metadata"]["name"] for p in jobs} >= {"catalog-migrate", "gateway-migrate"}
    cluster.all_at_once(cluster.complete_job, jobs, JOB_DEADLINE)
    timings["jobs"] = time.monotonic() - started

    started = time.monotonic()
    deployments = [cluster.pod(w) for w in of_kind(objects, "Deployment")]
    cluster.all_at_once(cluster.bring_up, deployments, READY_DEADLINE)
    timings["deployments"] = time.monotonic() - started

    # What has no probe must at least still run (a kubelet would restart it otherwise).
    for pod in [*statefulsets, *deployments]:
        for name, docker_name in pod.main.items():
            state = cluster.state(docker_name)
            assert state["Running"], f"{pod.name}/{name} exited:\n{cluster.logs(docker_name)}"
            assert not state["Restarting"], f"{pod.name}/{name}"

    # The gateway's DNS discovery (catalog-headless) reaches the catalog's pod, which
    # serves the demo catalog the seed Job wrote: the pieces fit, not only start.
    gateway = next(p for p in deployments if p.workload["metadata"]["name"] == "gateway")
    products = (
        "import json, urllib.request; "
        "r = urllib.request.urlopen('http://127.0.0.1:8000/api/catalog/products/', timeout=10); "
        "assert json.load(r)['count'] > 0"
    )
    # The gateway resolves the name again every DNS_REFRESH_SECONDS: poll, with a deadline.
    cluster.wait_until(
        "the catalog through the gateway",
        gateway.main["web"],
        lambda: (
            subprocess.run(
                ["docker", "exec", gateway.main["web"], "python", "-c", products],
                capture_output=True,
                timeout=30,
                check=False,
            ).returncode
            == 0
        ),
        1.0,
        time.monotonic() + 60,
    )
    print(f"k8s pods in Docker: {', '.join(f'{k} {v:.0f}s' for k, v in timings.items())}")
