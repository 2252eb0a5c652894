"""The container deployment: compose/ (image, entrypoint, compose file) and the Procfile.

No container engine is needed: docker-compose validates the compose file (`config -q`,
with and without its secrets), and the rest are consistency checks on the parsed
files: one image whose entrypoint (compose/entrypoint.sh) takes a role, each
container's role and SERVICE, what is published and where, secrets without defaults,
migrations and queues before start, Prometheus targets, the gateway's token keys, and
the build context (.dockerignore). The k8s checks are in tests/test_k8s_manifests.py.
A missing tool fails the test with the command that installs it; nothing is skipped.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_DIR = REPO / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
ENTRYPOINT = COMPOSE_DIR / "entrypoint.sh"

SERVICES = {"gateway": 8000, "catalog": 8001, "users": 8002, "orders": 8003}
# The gateway's operators' surface (admin, /metrics, probes, /internal/): a second port,
# never published; its public port answers 404 there (GATEWAY_INTERNAL_PORT).
GATEWAY_INTERNAL_PORT = 8080
WORKERS = ("catalog", "users", "orders")
# Long-running management commands beside the workers, by their compose name (the
# Procfile's name has "_" for "-"): (service, manage.py command, entrypoint role).
BACKGROUND = {
    "orders-saga": ("orders", "saga_watchdog", "watchdog"),
    "orders-relay": ("orders", "outbox_relay", "relay"),
    "catalog-events": ("catalog", "consume_events", "consumer"),
    "users-events": ("users", "consume_events", "consumer"),
}
# The gRPC servers (manage.py grpc_serve) beside the web services: compose name -> port.
GRPC_SERVERS = {"catalog-grpc": 50051, "users-grpc": 50052, "orders-grpc": 50053}
# The outbox relay is the one event producer; every consume_events process is a consumer.
RELAY = "orders-relay"
CONSUMERS = tuple(
    service for service, command, _ in BACKGROUND.values() if command == "consume_events"
)
SETUP_ONLY = "consume_events --setup-only"
# Roles that run once per `up` and exit; every other role runs for good.
ONE_OFF_ROLES = {"migrate", "keys", "seed", "queues", "broker-users"}
# The one-off that writes RabbitMQ's users and rights (common.broker_access): no
# service's container, so not among app_services().
BROKER_USERS = "broker-users"
# What each entrypoint role runs (in the service's folder).
ROLE_RUNS = {
    "web": 'exec gunicorn -c python:common.gunicorn_conf --bind "0.0.0.0:$PORT"',
    "worker": 'exec celery -A "${SERVICE}_svc" worker -Q "${QUEUE_PREFIX:-}$SERVICE"',
    "grpc": 'exec python manage.py grpc_serve --bind "0.0.0.0:$GRPC_PORT"',
    "relay": "exec python manage.py outbox_relay",
    "watchdog": "exec python manage.py saga_watchdog",
    "consumer": 'exec python manage.py consume_events "$@"',
    "queues": f"exec python manage.py {SETUP_ONLY}",
    "migrate": "exec python manage.py migrate --noinput",
    "keys": "exec python manage.py generate_jwt_keys",
    "seed": "exec python manage.py seed_catalog",
    "manage": 'exec python manage.py "$@"',
}
# What gunicorn serves per service: WSGI, except the gateway's ASGI proxy (its own workers).
SERVER_APP = {"gateway": "gateway_svc.asgi:application"}
# The one image of every app container, and its build.
ESHOP_IMAGE = "${ESHOP_IMAGE:-eshop:latest}"
PYTHON_IMAGE = "python:3.11-slim"
# Each third-party image: its variable and the official repository of its default.
OFFICIAL_IMAGES = {
    "POSTGRES_IMAGE": "postgres",
    "RABBITMQ_IMAGE": "rabbitmq",
    "REDIS_IMAGE": "redis",
    "ETCD_IMAGE": "quay.io/coreos/etcd",
    "PROMETHEUS_IMAGE": "prom/prometheus",
    "SOCAT_IMAGE": "alpine/socat",
    "JAEGER_IMAGE": "jaegertracing/all-in-one",
    "GRAFANA_IMAGE": "grafana/grafana",
}
# The databases' data folders are PostgreSQL 15's: another major cannot read them.
POSTGRES_IMAGE = "${POSTGRES_IMAGE:-postgres:15}"
# Compose refuses to start without these (compose/.env, written by `make compose-up`).
SECRETS = (
    "SECRET_KEY",
    "POSTGRES_PASSWORD",
    "RABBITMQ_PASSWORD",
    *(f"RABBITMQ_{service.upper()}_PASSWORD" for service in SERVICES),
    "REDIS_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
)
# Host ports compose publishes (all on 127.0.0.1): the gateway, and the operator UIs in
# their profiles. Nothing else.
PUBLISHED_PORTS = {
    "gateway": {8000},
    "rabbitmq-ui": {15672},
    "prometheus-ui": {9090},
    "grafana": {3000},
    "jaeger": {16686},
}
PROFILES = {
    "rabbitmq-ui": ["ops"],
    "prometheus-ui": ["ops"],
    "grafana": ["ops"],
    "jaeger": ["tracing"],
}
# The UI forwarders (socat) and where they forward to.
UI_TARGETS = {"rabbitmq-ui": "rabbitmq:15672", "prometheus-ui": "prometheus:9090"}
PORT_SPEC = re.compile(
    r"^(?P<ip>\d+\.\d+\.\d+\.\d+):(?:\$\{\w+:-(?P<var>\d+)\}|(?P<host>\d+)):(?P<to>\d+)$"
)
# Every service but the gateway verifies tokens with the keys the gateway publishes here.
JWKS_PATH = "/.well-known/jwks.json"


# ------------------------------------------------------------------ helpers


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


def compose_services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def app_services() -> dict[str, dict[str, Any]]:
    """The containers of the eshop image (web services, workers, background, one-offs)
    of a service (all but BROKER_USERS)."""
    return {
        name: spec
        for name, spec in compose_services().items()
        if (spec.get("image") == ESHOP_IMAGE or "build" in spec) and name != BROKER_USERS
    }


def role(spec: dict[str, Any]) -> str:
    """An app container's role: the first word of its command (the entrypoint's argument)."""
    command = spec["command"]
    assert isinstance(command, list), f"not an exec-form command: {command!r}"
    return command[0]


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """depends_on as {service: condition}, whichever of the two syntaxes is used."""
    value = service.get("depends_on", {})
    if isinstance(value, list):
        return dict.fromkeys(value, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in value.items()}


def completed_before(services: dict[str, dict[str, Any]], name: str) -> set[str]:
    """Every one-off that has completed before ``name`` starts (depends_on, transitively)."""
    done: set[str] = set()
    pending = [name]
    while pending:
        for target, condition in depends_on(services[pending.pop()]).items():
            if condition == "service_completed_successfully" and target not in done:
                done.add(target)
                pending.append(target)
    return done


def split_url(value: str) -> tuple[Any, list[str]]:
    """A URL from the compose file, split: (urlsplit with each `${...}` as "x", the `${...}`s).

    An interpolation may hold any character (`${VAR:?message}`), which urlsplit would misread.
    """
    variable = r"\$\{[^}]*\}"
    return urlsplit(re.sub(variable, "x", value)), re.findall(variable, value)


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
    assert parts.hostname == "gateway", where  # the compose service
    assert parts.port == SERVICES["gateway"], where
    assert parts.path == JWKS_PATH, where


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments); [0] is before any FROM."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[tuple[str, str]]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), " ".join(arguments.split())))
    return stages


def image_env() -> dict[str, str]:
    """The ENV of the runtime image (the Dockerfile's last stage)."""
    environment = {}
    for instruction, arguments in dockerfile_stages()[-1]:
        if instruction == "ENV":
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                environment[key] = value
    return environment


def entrypoint_roles() -> dict[str, tuple[str, set[str] | None]]:
    """compose/entrypoint.sh's roles: {role: (what its arm runs, the services it is only for)}.

    The `*)` arm (run anything as a command) is left out: it handles no role by name.
    """
    text = ENTRYPOINT.read_text()
    block = text[text.index('case "$role" in') :]
    block = block[: block.index("\nesac")]
    arms = re.findall(r"^  ([\w|-]+)\)(.*?)(?=^  [\w|*-]+\)|\Z)", block, re.M | re.S)
    roles: dict[str, tuple[str, set[str] | None]] = {}
    for labels, body in arms:
        only = None
        for statement in re.split(r"[;\n]", body):
            if statement.strip().startswith("only "):
                only = set(statement.split()[1:])
        for label in labels.split("|"):
            roles[label] = (body, only)
    return roles


def entrypoint_ports() -> dict[str, int]:
    """The port each SERVICE listens on when PORT is not set."""
    text = ENTRYPOINT.read_text()
    return {name: int(port) for name, port in re.findall(r"(\w+)\) default_port=(\d+)", text)}


def dockerignore_excludes(path: str) -> bool:
    """Whether .dockerignore leaves ``path`` (relative to the repository) out of the context.

    Docker's rules: the last pattern that matches wins, `!` re-includes, `*` matches
    within one path element and `**` any number of them, and a pattern that matches a
    folder matches everything in it.
    """
    excluded = False
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for line in (REPO / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        regex = ""
        for piece in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                piece, re.escape(piece)
            )
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def procfile() -> dict[str, str]:
    """The Procfile's processes: {name: command}."""
    processes = {}
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            processes[name.strip()] = command.strip()
    return processes


def docker_compose(env: dict[str, str], env_file: Path) -> subprocess.CompletedProcess[str]:
    """`docker-compose config -q` with only ``env`` and ``env_file`` (never compose/.env)."""
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.fail(
            "docker-compose is not installed: `apt-get install -y docker-compose` "
            "(Debian's docker-compose v1; .ci/run installs it when missing)."
        )
    command = [executable, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config", "-q"]
    return subprocess.run(
        command,
        cwd=env_file.parent,
        env={"PATH": "/usr/bin:/bin", "HOME": str(env_file.parent), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# ------------------------------------------------------------------ the image


def test_dockerfile_builds_a_non_root_multi_stage_image_with_static_files() -> None:
    prelude, build, runtime = dockerfile_stages()
    assert prelude == [("ARG", f"PYTHON_IMAGE={PYTHON_IMAGE}")]
    # The build stage makes the virtualenv: the pinned requirements and common.
    assert build[0] == ("FROM", "${PYTHON_IMAGE} AS build")
    build_text = "\n".join(arguments for _, arguments in build)
    assert "python -m venv /opt/venv" in build_text
    assert re.search(
        r"/opt/venv/bin/pip install .*-r \S*requirements/base\.txt "
        r"-c \S*requirements/constraints\.txt",
        build_text,
    )
    assert re.search(r"/opt/venv/bin/pip install .*--no-deps \S*/common\b", build_text)
    # The runtime stage copies the virtualenv and installs nothing itself.
    assert runtime[0] == ("FROM", "${PYTHON_IMAGE}")
    runtime_text = "\n".join(arguments for _, arguments in runtime)
    assert ("COPY", "--from=build /opt/venv /opt/venv") in runtime
    assert "pip install" not in runtime_text
    assert "build-ca" not in runtime_text, "the build's CA bundle stays in the build stage"
    environment = image_env()
    assert environment["PATH"].startswith("/opt/venv/bin:")
    assert environment["VAR_DIR"] == "/app/var"
    assert environment["ENVIRONMENT"] == "production"
    # A fixed numeric non-root user (Kubernetes' runAsNonRoot checks the number).
    users = [arguments for instruction, arguments in runtime if instruction == "USER"]
    assert users, "the image must switch to a non-root user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), users[-1]
    assert int(uid) != 0, users[-1]
    assert f"--uid {uid}" in runtime_text
    assert ("WORKDIR", "/app") in runtime
    for service in SERVICES:
        assert ("COPY", f"{service}_svc/ {service}_svc/") in runtime, service
    # Static files are collected at build time, as the app user, for every service.
    collect = next(
        arguments
        for instruction, arguments in runtime
        if instruction == "RUN" and "collectstatic --noinput" in arguments
    )
    assert runtime.index(("RUN", collect)) > runtime.index(("USER", users[-1]))
    loop = re.search(r"for service in ([\w ]+);", collect)
    assert loop
    assert set(loop.group(1).split()) == set(SERVICES)
    assert 'cd "${service}_svc"' in collect
    # The entrypoint is the image's command, and its health check.
    assert ("COPY", "compose/entrypoint.sh /usr/local/bin/eshop") in runtime
    assert ("ENTRYPOINT", '["eshop"]') in runtime
    healthchecks = [arguments for instruction, arguments in runtime if instruction == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert healthchecks[0].endswith('CMD ["eshop", "healthcheck"]')


def test_dockerfile_copies_only_what_the_build_context_holds() -> None:
    for stage in dockerfile_stages():
        for instruction, arguments in stage:
            if instruction in ("COPY", "ADD") and "--from=" not in arguments:
                *sources, _ = arguments.split()
                for source in sources:
                    assert not dockerignore_excludes(source.rstrip("/")), source
                    assert (REPO / source).exists(), source


def test_dockerignore_keeps_tests_local_state_and_secrets_out_of_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allowlist: everything is left out, then some is let in"
    for left_out in (
        "tests/test_deploy_manifests.py",
        "bench/run.py",
        "k8s/base/kustomization.yaml",
        "var/catalog.sqlite3",
        ".venv/bin/python",
        ".git/HEAD",
        ".env",
        "compose/.env",
        "compose/offline.env",
        "compose/docker-compose.yml",
        "gateway_svc/var/jwt/private.pem",
        "catalog_svc/catalog/tests/test_api.py",
        "common/src/common/tests/test_events.py",
        "orders_svc/conftest.py",
        "users_svc/accounts/__pycache__/models.cpython-311.pyc",
    ):
        assert dockerignore_excludes(left_out), f"{left_out} is in the build context"
    for let_in in (
        "requirements/base.txt",
        "common/pyproject.toml",
        "catalog_svc/manage.py",
        "gateway_svc/gateway_svc/asgi.py",
        "compose/entrypoint.sh",
    ):
        assert not dockerignore_excludes(let_in), f"{let_in} is not in the build context"


def test_entrypoint_runs_each_role_in_the_service_folder() -> None:
    text = ENTRYPOINT.read_text()
    assert ENTRYPOINT.stat().st_mode & 0o111, "compose/entrypoint.sh must be executable"
    assert text.startswith("#!/bin/sh\n")
    assert "set -eu" in text
    assert entrypoint_ports() == SERVICES
    assert 'cd "/app/${SERVICE}_svc"' in text
    roles = entrypoint_roles()
    assert set(roles) == set(ROLE_RUNS)
    for name, runs in ROLE_RUNS.items():
        assert runs in roles[name][0], f"the {name} role does not run `{runs}`"
    web = roles["web"][0]
    assert '"${SERVICE}_svc.wsgi"' in web
    assert f"-k gateway_svc.workers.GatewayWorker {SERVER_APP['gateway']}" in web
    # The image's HEALTHCHECK: the /ready/ of a web role, on the port it listens on.
    healthcheck = text[text.index('if [ "$role" = healthcheck ]') :]
    healthcheck = healthcheck[: healthcheck.index("\nfi\n")]
    assert "http://127.0.0.1:$port/ready/" in healthcheck


def test_entrypoint_handles_every_role_the_compose_file_uses() -> None:
    roles = entrypoint_roles()
    for name, spec in app_services().items():
        used = role(spec)
        assert used in roles, f"{name}: the entrypoint has no `{used}` role"
        only = roles[used][1]
        service = spec["environment"]["SERVICE"]
        assert only is None or service in only, f"{name}: `{used}` is not for {service}"


# ------------------------------------------------------------------ make run (Procfile)


def test_procfile_runs_every_process() -> None:
    processes = procfile()
    for service in SERVICES:
        assert processes[service].startswith(f"cd {service}_svc && exec gunicorn "), service
    for worker in WORKERS:
        assert processes[f"{worker}_worker"].startswith(
            f"cd {worker}_svc && exec celery -A {worker}_svc worker -Q ${{QUEUE_PREFIX:-}}{worker} "
        ), worker
    for name, (service, command, _) in BACKGROUND.items():
        assert processes[name.replace("-", "_")] == (
            f"cd {service}_svc && exec python manage.py {command}"
        ), name


def test_every_grpc_server_runs_in_make_run_and_compose_and_the_gateway_reaches_it() -> None:
    processes = procfile()
    services = compose()["services"]
    gateway_env = services["gateway"]["environment"]
    for name, port in GRPC_SERVERS.items():
        service = name.removesuffix("-grpc")
        assert processes[name.replace("-", "_")] == (
            f"cd {service}_svc && exec python manage.py grpc_serve "
            f"--bind ${{{service.upper()}_GRPC_BIND:-127.0.0.1:{port}}}"
        )
        assert services[name]["command"] == ["grpc"]
        assert services[name]["environment"]["SERVICE"] == service
        assert services[name]["expose"] == [str(port)]
        assert gateway_env[f"{service.upper()}_GRPC_URL"] == f"dns:///{name}:{port}"
        assert f"default_grpc_port={port}" in ENTRYPOINT.read_text()


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


def test_compose_file_is_valid_with_its_secrets(tmp_path: Path) -> None:
    env_file = tmp_path / "secrets.env"
    env_file.write_text("".join(f"{secret}=test-{secret.lower()}\n" for secret in SECRETS))
    result = docker_compose({}, env_file)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    # The same secrets from the environment, with an empty env file.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = docker_compose({secret: f"test-{secret.lower()}" for secret in SECRETS}, empty)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", SECRETS)
def test_compose_refuses_to_start_without_a_secret(missing: str, tmp_path: Path) -> None:
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    others = {secret: f"test-{secret.lower()}" for secret in SECRETS if secret != missing}
    for env in (others, {**others, missing: ""}):  # unset, then set but empty
        result = docker_compose(env, env_file)
        assert result.returncode != 0, f"compose starts without {missing}"
        assert f"set {missing} in compose/.env" in result.stderr, result.stderr


def test_compose_secrets_have_no_default() -> None:
    text = COMPOSE_FILE.read_text()
    for secret in SECRETS:
        uses = re.findall(rf"\$\{{{secret}(\}}|:?[-?+])", text)
        assert uses, f"{secret} is not used"
        # `${VAR}` or `${VAR:?message}` only: never `${VAR:-default}` nor `${VAR-default}`.
        assert set(uses) <= {"}", ":?"}, f"{secret}: {set(uses)}"
        assert ":?" in uses, f"nothing makes compose refuse to start without {secret}"
    services = compose_services()
    for name in (f"{service}-db" for service in SERVICES):
        password = services[name]["environment"]["POSTGRES_PASSWORD"]
        assert password.startswith("${POSTGRES_PASSWORD:?"), name
    rabbitmq = services["rabbitmq"]["environment"]
    assert rabbitmq["RABBITMQ_DEFAULT_USER"] != "guest"
    assert rabbitmq["RABBITMQ_DEFAULT_PASS"].startswith("${RABBITMQ_PASSWORD:?")
    redis = services["redis"]["command"]
    assert redis[redis.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    for name, spec in app_services().items():
        environment = spec["environment"]
        assert environment["SECRET_KEY"].startswith("${SECRET_KEY:?"), name
        for variable, secret in (
            # Each service its own broker user (common.broker_access).
            ("BROKER_URL", f"RABBITMQ_{environment['SERVICE'].upper()}_PASSWORD"),
            ("DATABASE_URL", "POSTGRES_PASSWORD"),
            ("CACHE_URL", "REDIS_PASSWORD"),
        ):
            if variable in environment:
                parts, variables = split_url(environment[variable])
                assert parts.password == "x", f"{name}: {variable} has a literal password"
                assert len(variables) == 1, f"{name}: {variable}"
                assert re.fullmatch(rf"\$\{{{secret}(:\?[^}}]*)?\}}", variables[0]), (
                    f"{name}: {variable}'s password is not {secret}"
                )


def test_compose_services_connect_to_the_broker_as_their_own_user() -> None:
    """One RabbitMQ user per service, from definitions broker-users writes before the
    broker starts and the broker imports at boot (common.broker_access)."""
    services = compose_services()
    for name, spec in app_services().items():
        environment = spec["environment"]
        if "BROKER_URL" in environment:
            url = split_url(environment["BROKER_URL"])[0]
            assert url.username == environment["SERVICE"], f"{name}: {url.username}"
    maker = services[BROKER_USERS]
    assert role(maker) == "broker-users"
    assert maker["restart"] == "no"
    assert maker["image"] == ESHOP_IMAGE
    for secret in ("RABBITMQ_PASSWORD", *(f"RABBITMQ_{s.upper()}_PASSWORD" for s in SERVICES)):
        assert maker["environment"][secret].startswith(f"${{{secret}:?"), secret
    # Nothing else of the shop's secrets reaches it.
    assert set(maker["environment"]) == {
        "RABBITMQ_PASSWORD",
        *(f"RABBITMQ_{s.upper()}_PASSWORD" for s in SERVICES),
    }
    rabbitmq = services["rabbitmq"]
    assert depends_on(rabbitmq)[BROKER_USERS] == "service_completed_successfully"
    written = mount_holding(compose_mounts(maker), "/app/var/rabbitmq/definitions.json")
    read = mount_holding(compose_mounts(rabbitmq), "/etc/rabbitmq/eshop/definitions.json")
    assert written, "broker-users writes no volume"
    assert read, "the broker mounts no definitions"
    assert written[0] == read[0], "not one shared volume"
    assert written[0] in (compose().get("volumes") or {})
    assert not written[2], "broker-users must be able to write the definitions"
    assert read[2], "the broker must mount the definitions read-only"
    assert rabbitmq["environment"]["RABBITMQ_CONFIG_FILE"] == "/etc/rabbitmq/eshop/rabbitmq.conf"
    # The entrypoint writes where the volume is, for the broker's mount point.
    entrypoint = ENTRYPOINT.read_text()
    assert "--out /app/var/rabbitmq --mounted-at /etc/rabbitmq/eshop" in entrypoint
    assert "mkdir -p /app/var/jwt /app/var/rabbitmq" in DOCKERFILE.read_text()


def test_compose_images_are_variables_with_the_official_default() -> None:
    defaults: dict[str, str] = {}
    for name, spec in compose_services().items():
        match = re.fullmatch(r"\$\{(\w+):-([^}]+)\}", spec["image"])
        assert match, f"{name}: the image is not `${{VARIABLE:-default}}`: {spec['image']}"
        variable, default = match.groups()
        # One variable, one default, wherever it is used.
        assert defaults.setdefault(variable, default) == default, name
        if variable == "ESHOP_IMAGE":
            assert spec["image"] == ESHOP_IMAGE, name
            continue
        assert variable in OFFICIAL_IMAGES, f"{name}: unknown image variable {variable}"
        repository, _, tag = default.rpartition(":")
        assert repository == OFFICIAL_IMAGES[variable], name
        assert tag, f"{name}: the default has no tag"
        assert tag != "latest", f"{name}: the default is not pinned"
    assert set(defaults) == {"ESHOP_IMAGE", *OFFICIAL_IMAGES}
    services = compose_services()
    for service in SERVICES:
        assert services[f"{service}-db"]["image"] == POSTGRES_IMAGE
    # The operator UI forwards to the management plugin's port: the image must have it.
    assert defaults["RABBITMQ_IMAGE"].endswith("-management")
    # The image's build: the same Python image as the Dockerfile's default.
    for name, spec in app_services().items():
        assert spec["image"] == ESHOP_IMAGE, name
        assert spec["build"] == {
            "context": "..",
            "dockerfile": "compose/Dockerfile",
            "args": {"PYTHON_IMAGE": f"${{PYTHON_IMAGE:-{PYTHON_IMAGE}}}"},
        }, name


def test_compose_has_every_part_of_the_platform() -> None:
    expected = {"rabbitmq", "redis", "etcd", "prometheus", *PUBLISHED_PORTS}
    for service in SERVICES:
        expected |= {service, f"{service}-db", f"{service}-migrate"}
    expected |= {f"{worker}-worker" for worker in WORKERS}
    expected |= set(BACKGROUND)
    expected |= {"gateway-keys", "catalog-seed", *(f"{c}-queues" for c in CONSUMERS)}
    expected |= {"gateway-housekeeping", BROKER_USERS, *GRPC_SERVERS}
    assert set(compose_services()) == expected
    # Only the operator UIs are optional: the platform itself is in no profile.
    profiled = {
        name: spec["profiles"] for name, spec in compose_services().items() if "profiles" in spec
    }
    assert profiled == PROFILES


def test_compose_publishes_only_the_gateway_and_the_operator_uis_on_localhost() -> None:
    published: dict[str, set[int]] = {}
    for name, service in compose_services().items():
        for port in service.get("ports", []):
            match = PORT_SPEC.fullmatch(str(port))
            assert match, f"{name}: {port} is not `127.0.0.1:HOST:CONTAINER`"
            assert match["ip"] == "127.0.0.1", f"{name}: {port} is not on 127.0.0.1"
            host = int(match["var"] or match["host"])
            assert host == int(match["to"]), f"{name}: {port}"
            published.setdefault(name, set()).add(host)
    assert published == PUBLISHED_PORTS
    services = compose_services()
    for name, target in UI_TARGETS.items():
        port = target.rsplit(":", 1)[1]
        assert services[name]["command"] == [
            f"TCP-LISTEN:{port},fork,reuseaddr",
            f"TCP:{target}",
        ], name


@pytest.mark.parametrize(("service", "port"), SERVICES.items())
def test_compose_web_service(service: str, port: int) -> None:
    services = compose_services()
    spec = services[service]
    assert spec["command"] == ["web"]
    assert "working_dir" not in spec, "the entrypoint goes to the service's folder"
    environment = spec["environment"]
    assert environment["SERVICE"] == service
    assert "PORT" not in environment, "the entrypoint's default port is the service's"
    assert entrypoint_ports()[service] == port
    if service == "gateway":
        assert spec["ports"] == [f"127.0.0.1:${{GATEWAY_PORT:-{port}}}:{port}"]
        assert environment["GATEWAY_INTERNAL_PORT"] == str(GATEWAY_INTERNAL_PORT)
        assert [str(p) for p in spec["expose"]] == [str(GATEWAY_INTERNAL_PORT)]
    else:
        assert [str(p) for p in spec["expose"]] == [str(port)]
    # The image's HEALTHCHECK (/ready/): not replaced, not disabled.
    assert "healthcheck" not in spec
    assert f"{service}-migrate" in completed_before(services, service)
    assert spec["restart"] == "unless-stopped"


@pytest.mark.parametrize("service", SERVICES)
def test_compose_migrations_run_once_before_the_service(service: str) -> None:
    spec = compose_services()[f"{service}-migrate"]
    assert spec["command"] == ["migrate"]
    assert spec["environment"]["SERVICE"] == service
    assert "working_dir" not in spec
    assert spec["restart"] == "no"
    assert depends_on(spec) == {f"{service}-db": "service_healthy"}


@pytest.mark.parametrize("worker", WORKERS)
def test_compose_worker(worker: str) -> None:
    services = compose_services()
    spec = services[f"{worker}-worker"]
    assert spec["command"] == ["worker"]
    assert spec["environment"]["SERVICE"] == worker
    assert "working_dir" not in spec
    assert spec["restart"] == "unless-stopped"
    assert f"{worker}-migrate" in completed_before(services, f"{worker}-worker")
    assert depends_on(spec)["rabbitmq"] == "service_healthy"
    assert not spec.get("ports"), f"{worker}-worker serves nothing"
    assert not spec.get("expose"), f"{worker}-worker serves nothing"


@pytest.mark.parametrize("name", BACKGROUND)
def test_compose_background_process(name: str) -> None:
    service, _, expected_role = BACKGROUND[name]
    services = compose_services()
    spec = services[name]
    web = services[service]
    assert spec["command"] == [expected_role]
    assert spec["environment"]["SERVICE"] == service
    assert "working_dir" not in spec
    assert spec["restart"] == "unless-stopped", f"{name} runs for good"
    needs = depends_on(spec)
    assert needs[f"{service}-migrate"] == "service_completed_successfully"
    assert needs["rabbitmq"] == "service_healthy"
    # The same database, cache and broker as its web process.
    for variable in ("DATABASE_URL", "CACHE_URL", "BROKER_URL"):
        assert spec["environment"][variable] == web["environment"][variable], variable
    assert not spec.get("ports"), f"{name} serves nothing"
    assert not spec.get("expose"), f"{name} serves nothing"


def test_compose_one_offs_run_once_and_the_rest_for_good() -> None:
    for name, spec in app_services().items():
        if role(spec) in ONE_OFF_ROLES:
            assert spec["restart"] == "no", f"{name} is a one-off"
            assert spec["healthcheck"] == {"disable": True}, name
        else:
            assert spec["restart"] == "unless-stopped", f"{name} runs for good"
    for name, spec in compose_services().items():
        if name == BROKER_USERS:
            assert spec["restart"] == "no", f"{name} is a one-off"
            assert spec["healthcheck"] == {"disable": True}, name
        elif name not in app_services() and "profiles" not in spec:
            assert spec["restart"] == "unless-stopped", f"{name} runs for good"


def compose_queue_setups(consumer: str) -> list[str]:
    """The one-offs that declare ``consumer``'s event queue."""
    return [
        name
        for name, spec in app_services().items()
        if role(spec) == "queues" and spec["environment"]["SERVICE"] == consumer
    ]


def test_compose_consumers_are_the_ones_expected() -> None:
    consumers = [
        spec["environment"]["SERVICE"]
        for spec in app_services().values()
        if role(spec) == "consumer"
    ]
    assert sorted(consumers) == sorted(CONSUMERS)


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_compose_declares_each_event_queue_before_the_relay_publishes(consumer: str) -> None:
    services = compose_services()
    setups = compose_queue_setups(consumer)
    assert len(setups) == 1, f"one one-off runs the queues role for {consumer}"
    (setup,) = setups
    spec = services[setup]
    assert spec["restart"] == "no", f"{setup} is a one-off"
    assert depends_on(spec).get("rabbitmq") == "service_healthy"
    # The queue is bound where the relay publishes: the same broker (and exchange).
    relay = services[RELAY]["environment"]
    for variable in ("EVENT_EXCHANGE", "QUEUE_PREFIX"):
        assert spec["environment"].get(variable) == relay.get(variable), variable
    # The same broker and virtual host, each as its own service's user.
    broker, relay_broker = (
        split_url(environment["BROKER_URL"])[0] for environment in (spec["environment"], relay)
    )
    assert (broker.hostname, broker.port, broker.path) == (
        relay_broker.hostname,
        relay_broker.port,
        relay_broker.path,
    )
    # Before the relay's first event, and before the consumer itself.
    assert depends_on(services[RELAY]).get(setup) == "service_completed_successfully"
    assert depends_on(services[f"{consumer}-events"]).get(setup) == (
        "service_completed_successfully"
    )


def test_compose_app_containers_use_their_own_database_and_production_settings() -> None:
    for name, spec in app_services().items():
        environment = spec["environment"]
        service = environment["SERVICE"]
        assert service in SERVICES, name
        assert name.split("-")[0] == service, name
        database = split_url(environment["DATABASE_URL"])[0]
        assert database.scheme == "postgres", name
        assert (database.hostname, database.path) == (f"{service}-db", f"/{service}"), name
        assert environment["ENVIRONMENT"] == "production", name
        assert environment["DEBUG"] == "false", name
        assert environment["DISCOVERY"] == "dns", name
        assert environment["ALLOWED_HOSTS"], name
        assert split_url(environment["BROKER_URL"])[0].hostname == "rabbitmq", name
        if "CACHE_URL" in environment:
            assert split_url(environment["CACHE_URL"])[0].hostname == "redis", name
    # Each service's cache is a Redis database of its own, shared by all its containers.
    caches: dict[str, set[str]] = {}
    for spec in app_services().values():
        if "CACHE_URL" in spec["environment"]:
            caches.setdefault(spec["environment"]["SERVICE"], set()).add(
                split_url(spec["environment"]["CACHE_URL"])[0].path
            )
    assert set(caches) == set(SERVICES)
    assert all(len(paths) == 1 for paths in caches.values()), caches
    assert len({path for paths in caches.values() for path in paths}) == len(SERVICES)


def test_compose_waits_only_for_services_that_report_their_state() -> None:
    services = compose_services()
    image_checks_health = any(
        instruction == "HEALTHCHECK" for instruction, _ in dockerfile_stages()[-1]
    )
    for name, spec in services.items():
        for target, condition in depends_on(spec).items():
            assert target in services, f"{name} depends on unknown {target}"
            target_spec = services[target]
            assert condition in ("service_healthy", "service_completed_successfully"), (
                f"{name} waits for {target} to start only"
            )
            if condition == "service_healthy":
                # Its own healthcheck, or the image's HEALTHCHECK (an app container).
                healthcheck = target_spec.get("healthcheck") or {}
                checked = "test" in healthcheck or (
                    not healthcheck and target in app_services() and image_checks_health
                )
                assert checked, f"{name} waits for {target}'s health, which nothing checks"
                assert not healthcheck.get("disable"), f"{name} waits for {target}'s health"
            if condition == "service_completed_successfully":
                assert target_spec.get("restart") == "no", f"{target} is a one-off"
                assert role(target_spec) in ONE_OFF_ROLES, f"{target} is a one-off"


def test_prometheus_scrapes_every_replica_of_every_service() -> None:
    config = load_yaml(COMPOSE_DIR / "prometheus.yml")
    found: dict[str, int] = {}
    for job in config["scrape_configs"]:
        if job.get("metrics_path", "/metrics") != "/metrics":
            continue
        for discovery in job.get("dns_sd_configs", []):
            assert discovery.get("type", "SRV") == "A", "compose's DNS has A records only"
            for name in discovery["names"]:
                found[name] = discovery["port"]
    assert found == {**SERVICES, "gateway": GATEWAY_INTERNAL_PORT}
    volumes = compose_services()["prometheus"]["volumes"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in volumes
    assert (
        "--config.file=/etc/prometheus/prometheus.yml"
        in compose_services()["prometheus"]["command"]
    )


def test_compose_gateway_keys_are_generated_before_the_gateway_in_a_shared_volume() -> None:
    services = compose_services()
    volumes = compose().get("volumes") or {}
    makers = [name for name, spec in app_services().items() if role(spec) == "keys"]
    assert makers == ["gateway-keys"]
    gateway = services["gateway"]
    dockerfile = DOCKERFILE.read_text()
    for name in makers:
        maker = services[name]
        assert maker["environment"]["SERVICE"] == "gateway", name
        assert maker["restart"] == "no", f"{name} is a one-off"
        assert depends_on(gateway).get(name) == "service_completed_successfully", name
        # Both containers resolve the key files to the same place in the same named volume.
        made_env = {**image_env(), **maker["environment"]}
        used_env = {**image_env(), **gateway["environment"]}
        assert jwt_key_files(made_env) == jwt_key_files(used_env), name
        for path in jwt_key_files(used_env):
            made = mount_holding(compose_mounts(maker), path)
            used = mount_holding(compose_mounts(gateway), path)
            assert made, f"{path} is not in a volume of {name}"
            assert used, f"{path} is not in a volume of the gateway"
            assert made[0] in volumes, f"{path}: {made[0]} is not a named volume"
            assert (made[0], made[1]) == (used[0], used[1]), f"{path}: not one shared volume"
            assert not made[2], f"{name} must be able to write {path}"
            assert used[2], f"the gateway must mount {used[1]} read-only"
            # A new named volume takes the owner of the image's folder: the app user's.
            assert f"mkdir -p {made[1]}" in dockerfile, f"the image does not create {made[1]}"


def test_compose_services_verify_tokens_with_the_gateway_jwks() -> None:
    services = app_services()
    for name, spec in services.items():
        if spec["environment"]["SERVICE"] != "gateway":
            environment = spec["environment"]
            assert "JWT_JWKS_URL" in environment, f"{name} has no JWT_JWKS_URL"
            assert_is_the_gateway_jwks(environment["JWT_JWKS_URL"], name)
    # The gateway signs with, and publishes, its own key files: never a JWKS URL.
    assert services["gateway"]["environment"]["JWT_JWKS_URL"] == ""
