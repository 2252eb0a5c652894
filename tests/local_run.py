"""The whole shop as `make run` starts it: ``bash scripts/run.sh`` under supervisord.

Each run gets a private ``VAR_DIR`` (SQLite files, broker folders, supervisord's
config and socket), free loopback ports, and the embedded defaults: the
database and broker settings the test runner exports are dropped unless the
caller passes its own::

    with LocalRun(tmp_path) as shop:            # started and ready
        httpx.get(f"{shop.gateway_url}/health/")
        shop.pid("catalog_worker"), shop.status()["catalog_worker"].state
    # stopped: SIGINT as Ctrl-C sends it, then SIGKILL for anything left
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType

import httpx

from tests.harness import REPO, free_port, wait_until


def _load_supervisord_conf() -> ModuleType:
    """scripts/supervisord_conf.py, which is a script rather than a package module."""
    path = REPO / "scripts" / "supervisord_conf.py"
    spec = importlib.util.spec_from_file_location("supervisord_conf", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


supervisord_conf = _load_supervisord_conf()

# The HTTP processes of the Procfile: name -> the variable its bind address comes from.
SERVERS = {
    "gateway": "GATEWAY_BIND",
    "catalog": "CATALOG_BIND",
    "users": "USERS_BIND",
    "orders": "ORDERS_BIND",
}
# The gRPC servers of the Procfile: name -> (its bind variable, the gateway's URL variable).
GRPC_SERVERS = {
    "catalog_grpc": ("CATALOG_GRPC_BIND", "CATALOG_GRPC_URL"),
    "users_grpc": ("USERS_GRPC_BIND", "USERS_GRPC_URL"),
    "orders_grpc": ("ORDERS_GRPC_BIND", "ORDERS_GRPC_URL"),
}
# Where the gateway finds the services (static discovery, common.settings).
UPSTREAM_URL_VARIABLES = {"catalog": "CATALOG_URL", "users": "USERS_URL", "orders": "ORDERS_URL"}
# Inherited settings that would take the run off its embedded defaults or out of its
# VAR_DIR (scripts/run_tests.py exports DATABASE_URL and BROKER_URL for every suite).
DROPPED_VARIABLES = {
    "DATABASE_URL",
    "BROKER_URL",
    "BROKER_FOLDER",
    "QUEUE_PREFIX",
    "DJANGO_SETTINGS_MODULE",
    "DISCOVERY",
    "PROMETHEUS_MULTIPROC_DIR",
    "SUPERVISOR_PROCESS_NAME",
}
READY_TIMEOUT = float(os.environ.get("TEST_LOCAL_RUN_READY_TIMEOUT", "180"))
_STATUS_LINE = re.compile(r"^(?P<name>\S+)\s+(?P<state>[A-Z]+)(?:\s+pid (?P<pid>\d+),)?")


@dataclass(frozen=True)
class ProcessStatus:
    """One line of ``supervisorctl status``."""

    state: str
    pid: int | None
    line: str


def session_pids(session: int) -> set[int]:
    """Live processes (zombies left out) of the session ``session`` leads.

    supervisord puts every program in a process group of its own, so the
    process group of ``make run`` does not hold them; the session does (no
    process of the shop starts a session of its own).
    """
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == session and fields[0] != "Z":
            pids.add(int(entry.name))
    return pids


def port_is_free(port: int) -> bool:
    """Whether a server could listen on this loopback port now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


class LocalRun:
    """``bash scripts/run.sh`` in a session of its own, with its output in ``log_path``."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.var_dir = workdir / "var"
        self.log_path = workdir / "run.log"
        self.ports = {name: free_port() for name in [*SERVERS, *GRPC_SERVERS]}
        self.urls = {name: f"http://127.0.0.1:{self.ports[name]}" for name in SERVERS}
        inherited = {
            key: value
            for key, value in os.environ.items()
            if key not in DROPPED_VARIABLES and not key.endswith("_DATABASE_URL")
        }
        self.env = {
            **inherited,
            "ENVIRONMENT": "local",
            "VAR_DIR": str(self.var_dir),
            # Not the developer's .env: this file does not exist.
            "ENV_FILE": str(workdir / "no.env"),
            **{variable: f"127.0.0.1:{self.ports[name]}" for name, variable in SERVERS.items()},
            **{variable: self.urls[name] for name, variable in UPSTREAM_URL_VARIABLES.items()},
            **{
                variable: f"127.0.0.1:{self.ports[name]}"
                for name, variables in GRPC_SERVERS.items()
                for variable in variables
            },
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------- lifecycle

    def start(self, *, ready_timeout: float = READY_TIMEOUT) -> LocalRun:
        """Run scripts/run.sh and wait until every server answers ``/ready/``."""
        if self.process is not None:
            raise RuntimeError("this LocalRun was started already")
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Append mode: supervisord opens /dev/stdout anew for each program, and only
        # O_APPEND keeps those writers from overwriting each other in a regular file.
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["bash", "scripts/run.sh"],
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.wait_ready(timeout=ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> LocalRun:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def session(self) -> int:
        """The session (and process group) id: run.sh's pid, supervisord's after its exec."""
        if self.process is None:
            raise RuntimeError("not started")
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        """Whether the gateway and every service answer ``/ready/`` with 200 now."""
        for url in self.urls.values():
            try:
                response = httpx.get(
                    f"{url}/ready/", headers={"Accept": "application/json"}, timeout=5
                )
            except httpx.TransportError:
                return False
            if response.status_code != 200:
                return False
        return True

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until every server is ready; fails at once if run.sh or supervisord exits."""
        if not wait_until(lambda: not self.running() or self.ready(), timeout, interval=0.2):
            raise TimeoutError(f"make run not ready after {timeout}s:\n{self.log_tail()}")
        if not self.running():
            assert self.process is not None
            raise RuntimeError(
                f"make run exited with {self.process.returncode} at start:\n{self.log_tail()}"
            )

    def signal(self, sig: int = signal.SIGINT) -> None:
        """Send ``sig`` to the process group, as a terminal sends Ctrl-C's SIGINT: before
        the exec that is run.sh and whatever command it runs, after it supervisord."""
        if self.running():
            os.killpg(self.session, sig)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGINT (Ctrl-C), wait up to ``timeout``, then SIGKILL whatever is left of the
        session; returns the exit status of run.sh/supervisord. Leaves no process behind."""
        if self.process is None:
            return None
        self.signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        self.kill_leftovers()
        return self.process.returncode

    def kill_leftovers(self, timeout: float = 15) -> set[int]:
        """SIGKILL every live process of the session; returns the pids there were."""
        assert self.process is not None
        left = session_pids(self.session)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=timeout)
        if not wait_until(lambda: not session_pids(self.session), timeout):
            raise RuntimeError(f"still running after SIGKILL: {session_pids(self.session)}")
        return left

    # ------------------------------------------------------------ inspection

    @property
    def gateway_url(self) -> str:
        return self.urls["gateway"]

    @property
    def conf_path(self) -> Path:
        return self.var_dir / supervisord_conf.CONF_NAME

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``supervisorctl -c <this run's config> ARGS`` (its exit status is not checked:
        ``status`` exits 3 while some process is not RUNNING)."""
        return subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self.conf_path), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def status(self) -> dict[str, ProcessStatus]:
        """Every program's state and pid, by Procfile name."""
        result = self.supervisorctl("status")
        statuses = {}
        for line in result.stdout.splitlines():
            match = _STATUS_LINE.match(line)
            if match is None:
                continue
            name = match["name"].removeprefix(f"{supervisord_conf.GROUP}:")
            pid = int(match["pid"]) if match["pid"] else None
            statuses[name] = ProcessStatus(state=match["state"], pid=pid, line=line)
        if not statuses:
            raise RuntimeError(f"supervisorctl status: {result.stdout}{result.stderr}")
        return statuses

    def pid(self, name: str) -> int:
        """The pid of the Procfile process ``name`` (``supervisorctl pid``); fails if it
        is not running."""
        result = self.supervisorctl("pid", f"{supervisord_conf.GROUP}:{name}")
        text = result.stdout.strip()
        if not text.isdigit() or int(text) == 0:
            raise RuntimeError(f"supervisorctl pid {name}: {text}{result.stderr}")
        return int(text)

    def log(self) -> str:
        """Everything run.sh, supervisord and the processes wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])
