"""A real, throwaway etcd process for tests (Debian's ``etcd-server`` provides ``etcd``).

Used by common's own tests and by the cross-service tests in tests/ (the
``etcd`` fixture), so both run against the same server the sidecar talks to
in production, not a mock. It lives in the package, like ``common.testing``,
because common's test suite cannot import the repository's tests/ folder.

    server = EtcdServer(data_dir=tmp_path / "etcd")
    server.start()
    server.url          # http://127.0.0.1:<free port>
    server.stop(); server.start()   # a restart: same ports, same data
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import etcd3gw
import httpx

from common.discovery.etcd import etcd_client


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def etcd_binary() -> str:
    """The etcd executable, or an error that says how to install it."""
    found = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)
    if found is None:
        raise RuntimeError(
            "etcd is not installed: `make system-deps` or `apt-get install etcd-server`."
        )
    return found


class EtcdServer:
    """One single-member etcd cluster on loopback, on free ports, with its own data folder."""

    def __init__(
        self,
        *,
        data_dir: Path,
        client_port: int | None = None,
        peer_port: int | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.data_dir = data_dir
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.ready_timeout = ready_timeout
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client URL, what ``ETCD_URL`` should say."""
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        """Whether the process is alive (it may still be starting up)."""
        return self.process is not None and self.process.poll() is None

    def client(self, *, timeout: float = 5.0) -> etcd3gw.Etcd3Client:
        """An etcd3gw client for this server."""
        return etcd_client(self.url, timeout=timeout)

    def start(self) -> None:
        """Start (or restart, keeping ports and data) and wait until etcd answers."""
        if self.running:
            return
        peer = f"http://127.0.0.1:{self.peer_port}"
        command = [
            etcd_binary(),
            "--name=test",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=test={peer}",
            "--logger=zap",
            "--log-level=warn",
        ]
        # etcd reads ETCD_* variables as flags: ETCD_URL meant for us must not reach it.
        env = {key: value for key, value in os.environ.items() if not key.startswith("ETCD_")}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - a fixed command line
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.wait_ready()

    def wait_ready(self) -> None:
        """Poll ``/health`` until etcd has a leader and serves requests."""
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"etcd exited at start:\n{self.log_tail()}")
            try:
                response = httpx.get(f"{self.url}/health", timeout=1)
                if response.status_code == 200 and response.json().get("health") == "true":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"etcd not ready after {self.ready_timeout}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop the process (SIGKILL after ``timeout``); the data folder stays for a restart."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        """The end of etcd's log, for error messages."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> EtcdServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
