"""Private PostgreSQL, RabbitMQ and Redis servers, so that a test run never depends on
what else runs on the machine (and leaves the machine's own servers alone).

scripts/run_tests.py starts one of each per run (``PrivateServers``), passes their
URLs to every suite (``TEST_POSTGRES_URL``, ``TEST_BROKER_URL``, ``TEST_REDIS_URL``)
and stops and removes them at the end, also when the run is interrupted;
tests/chaos.py starts a RabbitMQ node of its own with ``PrivateRabbitMQ``, to stop and
start it. Each server runs from the Debian package's own programs as a child process
in a session of its own, on free loopback ports, and writes only under its folder:

- PostgreSQL (``postgresql``): ``initdb`` (trust auth for ``postgres``) and
  ``postgres`` from the newest ``/usr/lib/postgresql/<version>/bin`` (or the folder
  of an ``initdb`` on PATH, or ``TEST_POSTGRES_BIN``), its socket in its folder, no
  fsync (tests only; ``durable=True`` keeps PostgreSQL's defaults, for benchmarks). As
  root it runs as the ``postgres`` system user the package creates: PostgreSQL refuses
  to run as root;
- RabbitMQ (``rabbitmq-server``): its own node name, ports, config, Erlang cookie
  (in ``HOME``) and epmd, no plugins;
- Redis (``redis-server``): no persistence.

A server started from the main thread also dies with the process that started it,
even one killed with SIGKILL (no ``finally`` runs then).

``preflight()`` names what a run needs and lacks, in plain words, before anything
starts. By hand::

    python -m tests.servers    # start all three, print their URLs (JSON), stop on Ctrl-C
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

RABBITMQ_BIN = Path(os.environ.get("TEST_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
POSTGRES_LIB = Path("/usr/lib/postgresql")
BOOT_TIMEOUT = float(os.environ.get("TEST_SERVERS_TIMEOUT", "120"))
# TEST_SERVERS=existing: the servers these variables name, or else these.
EXISTING_URLS = {
    "TEST_POSTGRES_URL": "postgres://postgres@127.0.0.1:5432",
    "TEST_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
    "TEST_REDIS_URL": "redis://127.0.0.1:6379/0",
}
# URL schemes of database, broker and cache servers (what a private run must not reach).
SERVER_SCHEMES = {"postgres", "postgresql", "pgsql", "psql", "postgis", "mysql", "mysql2"}
SERVER_SCHEMES |= {"amqp", "amqps", "pyamqp", "librabbitmq", "redis", "rediss", "rediscache"}
SERVER_SCHEMES |= {"memcache", "pymemcache", "pylibmc"}

PR_SET_PDEATHSIG = 1
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


def free_port() -> int:
    """A loopback port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether something accepts TCP connections there."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _dies_with_parent(sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn``: the child gets ``sig`` when its parent dies. Linux ties this to
    the thread that started the child, so only children of the main thread get it."""
    if _LIBC is None or threading.current_thread() is not threading.main_thread():
        return None
    libc = _LIBC

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    return preexec


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def postgres_bin() -> Path | None:
    """The folder with PostgreSQL's ``initdb`` and ``postgres``: ``TEST_POSTGRES_BIN``,
    else the folder an ``initdb`` on PATH really lives in, else the newest
    /usr/lib/postgresql/<version>/bin (Debian keeps them off PATH)."""
    if os.environ.get("TEST_POSTGRES_BIN"):
        candidates = [Path(os.environ["TEST_POSTGRES_BIN"])]
    else:
        on_path = shutil.which("initdb")
        candidates = [Path(on_path).resolve().parent] if on_path else []
        versions = sorted(POSTGRES_LIB.glob("*/bin"), key=lambda p: _version_key(p.parent.name))
        candidates += reversed(versions)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in ("initdb", "postgres")):
            return folder
    return None


def postgres_os_user() -> str | None:
    """Whom PostgreSQL runs as: ``postgres`` (Debian's system user) when we are root,
    else ourselves (None)."""
    return "postgres" if os.geteuid() == 0 else None


def _as_user(user: str | None) -> dict[str, Any]:
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _clean_env(*prefixes: str) -> dict[str, str]:
    """Our environment without the variables that configure these servers."""
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


class Server:
    """One server process under ``workdir``: started in a session of its own, stopped
    (``stop_signal``, then SIGKILL for the whole group), its folder removed by ``close()``."""

    name = "server"
    stop_signal: int = signal.SIGTERM

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log_path = workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        raise NotImplementedError

    def reachable(self) -> bool:
        raise NotImplementedError

    def start(self, *, wait: bool = True) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(
        self,
        command: list[str],
        *,
        env: dict[str, str] | None = None,
        user: str | None = None,
        death_signal: int | None = None,
    ) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                command,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_dies_with_parent(death_signal or self.stop_signal),
                **_as_user(user),
            )

    def check_alive(self) -> None:
        if not self.running:
            raise RuntimeError(f"private {self.name} exited at start:\n{self.log_tail()}")

    def wait_ready(self, timeout: float = BOOT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.reachable():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"private {self.name} not ready after {timeout:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def pids(self) -> list[int]:
        """Process groups of this server (each leader's pid), to find leftovers."""
        return [self.process.pid] if self.process is not None else []

    def kill(self, timeout: float = 10.0) -> None:
        """Stop the server: ``stop_signal`` to its main process, SIGKILL to the whole
        process group if it is not gone after ``timeout``; every child is reaped."""
        _stop_group(self.process, self.stop_signal, timeout)

    def close(self) -> None:
        """Stop the server and delete its folder: nothing of it is kept."""
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _stop_group(process: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if process is None:
        return
    if process.poll() is None:
        process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):  # what is left of the group, children too
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=timeout)


class PrivatePostgres(Server):
    """A PostgreSQL cluster of its own: ``initdb`` at first start, then ``postgres``."""

    name = "PostgreSQL"
    stop_signal = signal.SIGQUIT  # immediate shutdown: its data is thrown away anyway

    def __init__(self, workdir: Path, *, max_connections: int = 300, durable: bool = False) -> None:
        super().__init__(workdir)
        # Tests throw the data away, so nothing need reach the disk; a benchmark wants
        # PostgreSQL's own defaults (WAL flushed at commit, autovacuum), as deployed.
        self.durable = durable
        self.bin = postgres_bin()
        self.user = postgres_os_user()
        self.port = free_port()
        self.data_dir = workdir / "data"
        self.max_connections = max_connections
        if self.user is not None:  # its own folder, where it writes its socket and log
            entry = pwd.getpwnam(self.user)
            os.chown(workdir, entry.pw_uid, entry.pw_gid)
            self.log_path.touch()
            os.chown(self.log_path, entry.pw_uid, entry.pw_gid)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {**_clean_env("PG", "LC_"), "LANG": "C.UTF-8"}

    def start(self, *, wait: bool = True) -> None:
        if self.bin is None:
            raise RuntimeError(
                "PostgreSQL's initdb and postgres not found: apt-get install postgresql"
            )
        if not (self.data_dir / "PG_VERSION").exists():
            with self.log_path.open("ab") as log:
                subprocess.run(
                    [
                        str(self.bin / "initdb"),
                        f"--pgdata={self.data_dir}",
                        "--username=postgres",
                        "--auth=trust",
                        "--encoding=UTF8",
                        "--locale=C.UTF-8",
                        "--no-sync",
                    ],
                    cwd=self.workdir,
                    env=self._env(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=False,
                    **_as_user(self.user),
                )
            if not (self.data_dir / "PG_VERSION").exists():
                raise RuntimeError(f"initdb failed:\n{self.log_tail()}")
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.workdir),
            "max_connections": str(self.max_connections),
            "dynamic_shared_memory_type": "mmap",  # in the data folder, gone with it
            "logging_collector": "off",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        command = [str(self.bin / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        self.process = self.spawn(command, env=self._env(), user=self.user)
        if wait:
            self.wait_ready()

    def reachable(self) -> bool:
        import psycopg2

        try:
            connection = psycopg2.connect(
                host="127.0.0.1",
                port=self.port,
                user="postgres",
                dbname="postgres",
                connect_timeout=2,
            )
        except psycopg2.OperationalError:
            return False
        connection.close()
        return True


class PrivateRabbitMQ(Server):
    """One RabbitMQ node under ``workdir``, on free loopback ports, with an epmd of its
    own; ``stop()``/``start()`` take the broker down and bring it back with its data.

    ``stop()`` stops the broker as ``rabbitmqctl stop_app`` does: its listeners close,
    every client connection is dropped, new ones are refused and its queues are shut
    down, as in a real outage. ``start()`` starts it again on the same data folder,
    which brings back the durable queues with their persistent messages. The Erlang VM
    under it stays up, so coming back takes a few seconds instead of a whole boot.
    """

    name = "RabbitMQ"
    stop_signal = signal.SIGKILL  # its data is thrown away: no need for a clean stop

    def __init__(self, workdir: Path, *, prefix: str = "test") -> None:
        super().__init__(workdir)
        self.node = f"{prefix}-{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.epmd: subprocess.Popen[bytes] | None = None
        (workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (workdir / "enabled_plugins").write_text("[].\n")
        (workdir / "rabbitmq-env.conf").write_text("")  # not the machine's /etc/rabbitmq one
        self.env = {
            **_clean_env("RABBITMQ_", "ERL_"),
            "HOME": str(workdir),  # the Erlang cookie lives here
            "RABBITMQ_CONF_ENV_FILE": str(workdir / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(workdir / "advanced.config"),  # none
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(workdir / "log"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            # The script then execs the Erlang VM instead of waiting for it in a shell:
            # the process started is the node itself, and nothing can outlive it.
            "RUNNING_UNDER_SYSTEMD": "true",
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self, *, wait: bool = True) -> None:
        """Boot the node, or start the broker again on a running node (after ``stop()``);
        with ``wait``, until it takes AMQP connections."""
        if self.running:
            self._ctl("start_app")
        else:
            self._start_epmd()
            self.process = self.spawn([str(RABBITMQ_BIN / "rabbitmq-server")], env=self.env)
        if wait:
            self.wait_ready()

    def _start_epmd(self) -> None:
        """The node's own Erlang port mapper, so that nothing of it outlives the run
        (a node started without one would start a machine-wide daemon)."""
        if self.epmd is not None and self.epmd.poll() is None:
            return
        epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
        with (self.workdir / "epmd.log").open("ab") as log:
            self.epmd = subprocess.Popen(
                [epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_dies_with_parent(signal.SIGTERM),
            )
        deadline = time.monotonic() + 10
        while not answers("127.0.0.1", self.epmd_port, timeout=0.5):
            if self.epmd.poll() is not None or time.monotonic() > deadline:
                log_text = (self.workdir / "epmd.log").read_text(errors="replace")
                raise RuntimeError(f"epmd for the private RabbitMQ did not start:\n{log_text}")
            time.sleep(0.02)

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

    def pids(self) -> list[int]:
        return super().pids() + ([self.epmd.pid] if self.epmd is not None else [])

    def kill(self, timeout: float = 10.0) -> None:
        super().kill(timeout)
        _stop_group(self.epmd, signal.SIGTERM, timeout)


class PrivateRedis(Server):
    """A Redis of its own, in memory only."""

    name = "Redis"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, wait: bool = True) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: apt-get install redis-server")
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no"]
        self.process = self.spawn(command)
        if wait:
            self.wait_ready()

    def reachable(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class PrivateServers:
    """A PostgreSQL, a RabbitMQ node and a Redis for one test run, under one new
    temporary folder (in ``base``, else the system's temporary folder)."""

    def __init__(self, base: Path | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="eshop-test-servers-", dir=base))
        self.dir.chmod(0o711)  # PostgreSQL's own user walks through it to its folder
        self.postgres = PrivatePostgres(self.dir / "postgres")
        self.rabbitmq = PrivateRabbitMQ(self.dir / "rabbitmq")
        self.redis = PrivateRedis(self.dir / "redis")
        self.ready_after: dict[str, float] = {}
        self.pgids: list[int] = []

    @property
    def servers(self) -> list[Server]:
        return [self.postgres, self.rabbitmq, self.redis]

    def start(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Start all three side by side, RabbitMQ (the slowest) first; return when each
        answers. ``ready_after``: seconds from the start until each did."""
        started = time.monotonic()
        for server in (self.rabbitmq, self.redis, self.postgres):
            server.start(wait=False)
            self.pgids += server.pids()
        pending = list(self.servers)
        while pending:
            for server in list(pending):
                if server.reachable():
                    self.ready_after[server.name] = time.monotonic() - started
                    pending.remove(server)
                else:
                    server.check_alive()
            if pending and time.monotonic() - started > timeout:
                names = ", ".join(server.name for server in pending)
                raise RuntimeError(f"private {names} not ready after {timeout:.0f}s")
            time.sleep(0.1)
        (self.dir / "servers.json").write_text(json.dumps(self.describe(), indent=2))

    def env(self) -> dict[str, str]:
        """What the suites get: the servers' URLs and this folder."""
        return {
            "TEST_SERVERS": "private",
            "TEST_SERVERS_DIR": str(self.dir),
            "TEST_POSTGRES_URL": self.postgres.url,
            "TEST_BROKER_URL": self.rabbitmq.url,
            "TEST_REDIS_URL": self.redis.url,
        }

    def describe(self) -> dict[str, Any]:
        """What the harness test checks a run against (``servers.json`` in the folder)."""
        return {
            **self.env(),
            "pgids": self.pgids,
            "postgres": {"port": self.postgres.port, "data_dir": str(self.postgres.data_dir)},
            "rabbitmq": {"port": self.rabbitmq.port, "node": self.rabbitmq.node},
            "redis": {"port": self.redis.port, "dir": str(self.redis.workdir)},
        }

    def close(self) -> None:
        """Stop every server and remove the folder."""
        for server in self.servers:
            try:
                server.kill()
            except Exception as error:  # the others and the folder still go
                print(f"stopping the private {server.name}: {error}", file=sys.stderr)
        shutil.rmtree(self.dir, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """What is left of these servers (after ``close()``, nothing)."""
        return leftovers(self.dir, self.pgids)


def leftovers(folder: Path, pgids: list[int]) -> list[str]:
    """Processes in the process groups ``pgids`` or whose command line names ``folder``,
    and the folder itself if it still exists."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        if int(fields[2]) in pgids or str(folder) in command:
            found.append(f"process {entry.name}: {command.strip() or stat.split()[1]}")
    if folder.exists():
        found.append(f"folder {folder}")
    return found


# ------------------------------------------------------------------------- preflight


def _sudo() -> str:
    return "" if os.geteuid() == 0 else "sudo "


def preflight(mode: str, suites: list[str]) -> list[str]:
    """What the run needs and lacks, one plain line each with the fix; [] when all is
    there. ``mode``: "private" (servers of the run's own) or "existing"."""
    install = f"{_sudo()}apt-get install"
    problems = []
    if {"common", "system"} & set(suites) and not (
        shutil.which("etcd") or os.access("/usr/bin/etcd", os.X_OK)
    ):
        problems.append(
            f"`etcd` is not installed (the discovery tests start their own): {install} etcd-server"
        )
    if "system" in suites and not shutil.which("docker-compose"):
        problems.append(
            "`docker-compose` is not installed (it checks compose/docker-compose.yml): "
            f"{install} docker-compose"
        )
    if "system" in suites:
        if not (shutil.which("dockerd") or os.access("/usr/sbin/dockerd", os.X_OK)):
            problems.append(
                "Docker is not installed (the container tests build images and run the shop "
                f"in it; the run starts dockerd when it is not running): {install} docker.io"
            )
        elif os.geteuid() != 0 and not _docker_answers() and not _sudo_works():
            problems.append(
                "no Docker engine answers and starting dockerd needs root: start it "
                "(sudo systemctl start docker) or let sudo run it without a password"
            )
        if not (shutil.which("chromium") or os.access("/usr/bin/chromium", os.X_OK)):
            problems.append(
                "Chromium is not installed (the status page is tested in a headless browser): "
                f"{install} chromium"
            )
        if not shutil.which("prometheus"):
            problems.append(
                "Prometheus is not installed (the alert rules' promtool tests, the dashboard's "
                f"queries): {install} prometheus"
            )
        if not shutil.which("kubectl"):
            problems.append(
                "`kubectl` is not installed (it renders the k8s/ overlays with "
                "`kubectl kustomize`): install kubectl, https://kubernetes.io/docs/tasks/tools/"
            )
    try:
        probe = Path(tempfile.mkdtemp(prefix="eshop-preflight-"))
    except OSError as error:
        problems.append(
            f"cannot write in the temporary folder {tempfile.gettempdir()} ({error}): "
            "set TMPDIR to a folder you can write in"
        )
        probe = None
    if mode == "private":
        problems += _preflight_private(install, probe)
    else:
        problems += _preflight_existing(suites)
    if probe is not None:
        shutil.rmtree(probe, ignore_errors=True)
    return problems


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _sudo_works() -> bool:
    try:
        result = subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _preflight_private(install: str, probe: Path | None) -> list[str]:
    problems = []
    where = f"not on PATH nor in {POSTGRES_LIB}/<version>/bin"
    if os.environ.get("TEST_POSTGRES_BIN"):
        where = f"not in TEST_POSTGRES_BIN={os.environ['TEST_POSTGRES_BIN']}"
    if postgres_bin() is None:
        problems.append(f"PostgreSQL's `initdb` and `postgres` are {where}: {install} postgresql")
    elif (user := postgres_os_user()) is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            problems.append(
                f"running as root, PostgreSQL needs the unprivileged user `{user}` to run as "
                f"(PostgreSQL refuses root), and there is none: {install} postgresql "
                "(it creates it), or run as a normal user"
            )
        else:
            if probe is not None and not _user_can_write(user, probe):
                problems.append(
                    f"the `{user}` user cannot reach the temporary folder {probe.parent} "
                    "(PostgreSQL runs as that user when you are root): set TMPDIR to a folder "
                    "every user can enter, such as /tmp"
                )
    for script in ("rabbitmq-server", "rabbitmqctl"):
        if not os.access(RABBITMQ_BIN / script, os.X_OK):
            problems.append(
                f"RabbitMQ's `{script}` is not in {RABBITMQ_BIN}: {install} rabbitmq-server "
                "(or set TEST_RABBITMQ_BIN to the folder of its scripts)"
            )
            break
    for command in ("erl", "epmd"):
        if not shutil.which(command):
            problems.append(
                f"`{command}` (Erlang, which RabbitMQ runs on) is not on PATH: "
                f"{install} rabbitmq-server"
            )
    if not shutil.which("redis-server"):
        problems.append(f"`redis-server` is not installed or not on PATH: {install} redis-server")
    return problems


def _user_can_write(user: str, folder: Path) -> bool:
    entry = pwd.getpwnam(user)
    os.chown(folder, entry.pw_uid, entry.pw_gid)
    result = subprocess.run(
        ["/bin/sh", "-c", 'test -w "$1" && test -x "$1"', "sh", str(folder)],
        cwd="/",
        capture_output=True,
        check=False,
        **_as_user(user),
    )
    return result.returncode == 0


def _preflight_existing(suites: list[str]) -> list[str]:
    needed = [("TEST_POSTGRES_URL", "PostgreSQL"), ("TEST_BROKER_URL", "RabbitMQ")]
    if "system" in suites:
        needed.append(("TEST_REDIS_URL", "Redis"))
    problems = []
    for variable, what in needed:
        url = existing_url(variable)
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or _default_port(parts.scheme)
        if not answers(host, port):
            problems.append(
                f"{what} does not answer at {host}:{port} ({variable}={url}, with "
                "TEST_SERVERS=existing): start it or point the variable at one, or unset "
                "TEST_SERVERS so that the run starts its own"
            )
    return problems


def _default_port(scheme: str) -> int:
    if scheme.startswith("redis"):
        return 6379
    if scheme.startswith(("amqp", "pyamqp")):
        return 5672
    return 5432


def existing_url(variable: str) -> str:
    return os.environ.get(variable) or EXISTING_URLS[variable]


def existing_env() -> dict[str, str]:
    """What the suites get with TEST_SERVERS=existing."""
    return {"TEST_SERVERS": "existing", **{name: existing_url(name) for name in EXISTING_URLS}}


def is_server_url(value: str) -> bool:
    """Whether ``value`` is the URL of a database, broker or cache server."""
    scheme, sep, _ = value.partition("://")
    return bool(sep) and bool(set(scheme.lower().split("+")) & SERVER_SCHEMES)


# ------------------------------------------------------------------------------ main


def main() -> int:
    """Start the three servers, print what the suites would get as one JSON line, and
    stop and remove them on Ctrl-C, SIGTERM or end of input."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    servers = PrivateServers()
    try:
        servers.start()
        print(json.dumps({**servers.describe(), "ready_after": servers.ready_after}), flush=True)
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        started = time.monotonic()
        servers.close()
        left = servers.leftovers()
        print(json.dumps({"closed_in": time.monotonic() - started, "leftovers": left}), flush=True)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
