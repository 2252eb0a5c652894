"""The run's own servers (tests/servers.py, scripts/run_tests.py): every suite reaches
the private PostgreSQL, RabbitMQ and Redis and nothing else, nothing of them is left
when they stop, and a machine that lacks something is told so before anything starts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import psycopg2
import pytest

from tests import harness
from tests.servers import is_server_url, leftovers

pytestmark = pytest.mark.system

MACHINE_PORTS = {5432, 5672, 6379}
URL_VARIABLES = ("TEST_POSTGRES_URL", "TEST_BROKER_URL", "TEST_REDIS_URL")


def run_tests_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "run_tests", harness.REPO / "scripts/run_tests.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def port_of(url: str) -> int | None:
    return urlsplit(url).port


def redis_command(port: int, *words: str) -> bytes:
    """One Redis command over a plain socket, its raw answer."""
    request = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request.encode())
        time.sleep(0.05)
        return sock.recv(4096)


def amqp_server_properties(url: str) -> dict:
    from kombu import Connection

    with Connection(url, connect_timeout=5) as connection:
        connection.ensure_connection(max_retries=1)
        return dict(connection.connection.server_properties)


def test_the_suites_get_the_private_servers_of_the_run() -> None:
    if os.environ.get("TEST_SERVERS") != "private":
        pytest.skip("needs scripts/run_tests.py's default mode (TEST_SERVERS unset)")
    folder = Path(os.environ["TEST_SERVERS_DIR"])
    described = json.loads((folder / "servers.json").read_text())
    private_ports = {
        described["postgres"]["port"],
        described["rabbitmq"]["port"],
        described["redis"]["port"],
    }

    # The URLs this suite got (and the harness uses) are the run's private servers...
    for name in URL_VARIABLES:
        assert os.environ[name] == described[name]
        assert port_of(os.environ[name]) in private_ports
    assert not private_ports & MACHINE_PORTS
    harness_urls = (harness.POSTGRES_URL, harness.BROKER_URL, harness.REDIS_URL)
    assert harness_urls == tuple(described[name] for name in URL_VARIABLES)
    # ...and so is every other database, broker or cache URL it was given.
    servers = {name: value for name, value in os.environ.items() if is_server_url(value)}
    elsewhere = {name: url for name, url in servers.items() if port_of(url) not in private_ports}
    assert set(URL_VARIABLES) <= set(servers)
    assert elsewhere == {}

    # Each answers, and is the one the runner started under its folder.
    connection = psycopg2.connect(os.environ["TEST_POSTGRES_URL"] + "/postgres")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW data_directory")
            assert cursor.fetchone()[0] == described["postgres"]["data_dir"]
    finally:
        connection.close()
    properties = amqp_server_properties(os.environ["TEST_BROKER_URL"])
    # RabbitMQ names a cluster after its first node, with the machine's host name.
    assert properties["cluster_name"].split("@")[0] == described["rabbitmq"]["node"].split("@")[0]
    answer = redis_command(described["redis"]["port"], "CONFIG", "GET", "dir")
    assert described["redis"]["dir"].encode() in answer
    assert described["redis"]["dir"].startswith(str(folder))


def test_no_other_server_url_reaches_a_suite() -> None:
    run_tests = run_tests_module()
    private = {
        "TEST_SERVERS": "private",
        "TEST_SERVERS_DIR": "/nonexistent/eshop-test-servers-x",
        "TEST_POSTGRES_URL": "postgres://postgres@127.0.0.1:41001",
        "TEST_BROKER_URL": "amqp://guest:guest@127.0.0.1:41002//",
        "TEST_REDIS_URL": "redis://127.0.0.1:41003/0",
    }
    shell = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/shop",
        "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
        "CACHE_URL": "rediscache://127.0.0.1:6379/1",
        "GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/0",
        "TEST_REDIS_URL": "redis://127.0.0.1:6379/0",
        "ETCD_URL": "http://127.0.0.1:2379",
    }

    for suite in run_tests.SUITES:
        env = run_tests.suite_env(suite, private, shell)
        servers = {name: value for name, value in env.items() if is_server_url(value)}
        assert {name: port_of(value) for name, value in servers.items()} == {
            "DATABASE_URL": 41001,
            "BROKER_URL": 41002,
            "TEST_POSTGRES_URL": 41001,
            "TEST_BROKER_URL": 41002,
            "TEST_REDIS_URL": 41003,
        }
        assert env["DATABASE_URL"].endswith(f"/{suite}{run_tests.DB_SUFFIX}")
        assert env["PATH"] == "/usr/bin:/bin"
        assert env["ETCD_URL"] == "http://127.0.0.1:2379"  # not a database, broker or cache

    machine = {**private, "TEST_SERVERS": "existing", "TEST_POSTGRES_URL": shell["DATABASE_URL"]}
    del machine["TEST_SERVERS_DIR"]
    existing = run_tests.suite_env("catalog", machine, shell)
    assert existing["GATEWAY_REDIS_URL"] == shell["GATEWAY_REDIS_URL"]  # asked for: kept
    assert "TEST_SERVERS_DIR" not in existing


def test_private_servers_stop_on_sigterm_and_leave_nothing_behind() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.servers"],
        cwd=harness.REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, process.stderr.read() if process.stderr else ""
        described = json.loads(line)
        folder = Path(described["TEST_SERVERS_DIR"])
        assert folder.is_dir()
        assert len(described["pgids"]) == 4  # PostgreSQL, RabbitMQ, its epmd, Redis
        assert leftovers(folder, described["pgids"])  # all running, with their folder
        psycopg2.connect(described["TEST_POSTGRES_URL"] + "/postgres").close()
        assert amqp_server_properties(described["TEST_BROKER_URL"])["cluster_name"]
        assert redis_command(described["redis"]["port"], "PING") == b"+PONG\r\n"

        process.send_signal(signal.SIGTERM)
        output, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, errors
    assert json.loads(output)["leftovers"] == []
    assert leftovers(folder, described["pgids"]) == []
    assert not folder.exists()
    for name in URL_VARIABLES:
        url = urlsplit(described[name])
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((url.hostname, url.port), timeout=2).close()


def path_without(tmp_path: Path, hidden: str) -> str:
    """A PATH of one folder with every command of ours but ``hidden``."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            target = folder / entry.name
            if entry.name == hidden or target.exists() or not os.access(entry.path, os.X_OK):
                continue
            target.symlink_to(os.path.realpath(entry.path))
    return str(folder)


def run_stopped_by_preflight(env: dict[str, str], suite: str) -> subprocess.CompletedProcess[str]:
    """scripts/run_tests.py as `make test` runs it, expected to stop before anything
    runs; should it not, pytest selects nothing (``-k``) instead of running a suite."""
    return subprocess.run(
        [sys.executable, "scripts/run_tests.py", suite, "--", "-k", "not_a_test_name_at_all"],
        cwd=harness.REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_preflight_names_a_missing_command_and_stops_the_run_at_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEST_SERVERS")}
    env["PATH"] = path_without(tmp_path, "redis-server")

    started = time.monotonic()
    result = run_stopped_by_preflight(env, "common")

    assert time.monotonic() - started < 15
    assert result.returncode == 2, result.stdout + result.stderr
    assert "`redis-server` is not installed" in result.stderr
    assert "apt-get install redis-server" in result.stderr
    assert "Starting a private" not in result.stdout
    assert "##### suite" not in result.stdout


def test_preflight_names_an_existing_server_that_does_not_answer() -> None:
    nobody = harness.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEST_SERVERS")}
    env["TEST_SERVERS"] = "existing"
    env["TEST_REDIS_URL"] = f"redis://127.0.0.1:{nobody}/0"
    # PostgreSQL and RabbitMQ: the run's own (or the machine's outside a run).
    env["TEST_POSTGRES_URL"] = harness.POSTGRES_URL
    env["TEST_BROKER_URL"] = harness.BROKER_URL

    result = run_stopped_by_preflight(env, "system")

    assert result.returncode == 2, result.stdout + result.stderr
    assert f"Redis does not answer at 127.0.0.1:{nobody}" in result.stderr
    assert "PostgreSQL does not answer" not in result.stderr
    assert "##### suite" not in result.stdout
