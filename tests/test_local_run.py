"""`make run` under supervisord: a process that dies comes back, Ctrl-C stops them all.

One shop (tests/local_run.py) serves the module: the restart test first, then the
Ctrl-C test, which stops it. The config tests start nothing.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from supervisor.datatypes import RestartUnconditionally
from supervisor.options import ServerOptions

from tests.harness import REPO, wait_until
from tests.local_run import LocalRun, port_is_free, session_pids, supervisord_conf

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    run = LocalRun(tmp_path_factory.mktemp("local-run"))
    try:
        yield run.start()
    finally:
        run.stop()


def json_lines(text: str) -> list[dict[str, object]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def worker_ready_lines(shop: LocalRun, name: str) -> int:
    """How many times the Celery worker ``name`` logged that it is ready."""
    return sum(
        1
        for line in json_lines(shop.log())
        if line.get("process") == name and str(line.get("message", "")).endswith(" ready.")
    )


# ----------------------------------------------------------------- the config


def test_every_procfile_process_becomes_a_supervisord_program(tmp_path: Path) -> None:
    procfile = supervisord_conf.read_procfile(REPO / "Procfile")
    conf = tmp_path / "supervisord.conf"
    conf.write_text(supervisord_conf.render(procfile, var_dir=tmp_path))

    options = ServerOptions()
    options.realize(["-c", str(conf)])

    (group,) = options.process_group_configs
    assert group.name == supervisord_conf.GROUP
    programs = {program.name: program for program in group.process_configs}
    assert set(programs) == set(procfile)
    for name, command in procfile.items():
        program = programs[name]
        # The Procfile line reaches /bin/sh unchanged: ${VAR:-default}, &&, Celery's %h.
        assert shlex.split(program.command) == ["/bin/sh", "-c", command], name
        assert program.directory == str(REPO)
        assert program.autorestart is RestartUnconditionally
        assert program.stopasgroup
        assert program.killasgroup
        assert program.startretries >= 1000
    assert "-n catalog@%h " in shlex.split(programs["catalog_worker"].command)[2]


def test_a_procfile_line_the_config_would_cut_short_is_refused(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text("web: echo one ; echo two\n")

    with pytest.raises(supervisord_conf.ProcfileError, match="comment"):
        supervisord_conf.render(supervisord_conf.read_procfile(procfile), var_dir=tmp_path)


# ----------------------------------------------------------------- make run


def test_a_killed_worker_is_started_again(shop: LocalRun) -> None:
    before = shop.status()
    assert {status.state for status in before.values()} == {"RUNNING"}, before
    killed = before["catalog_worker"].pid
    assert killed == shop.pid("catalog_worker")
    # Its JSON lines name it (SUPERVISOR_PROCESS_NAME); it has said "ready" once.
    assert wait_until(lambda: worker_ready_lines(shop, "catalog_worker") == 1, timeout=30)

    os.kill(killed, signal.SIGKILL)

    def running_again() -> bool:
        status = shop.status()["catalog_worker"]
        return status.state == "RUNNING" and status.pid not in (None, killed)

    # RUNNING comes startsecs (5 s) after the respawn, which comes about 1 s after the exit.
    assert wait_until(running_again, timeout=60, interval=0.5), shop.status()
    after = shop.status()
    log = shop.log()
    assert "WARN exited: catalog_worker (terminated by SIGKILL; not expected)" in log
    assert f"INFO spawned: 'catalog_worker' with pid {after['catalog_worker'].pid}" in log
    assert wait_until(lambda: worker_ready_lines(shop, "catalog_worker") == 2, timeout=30)
    # Nothing else was restarted.
    others = {name: status.pid for name, status in before.items() if name != "catalog_worker"}
    assert {name: after[name].pid for name in others} == others
    assert shop.ready()


def test_an_unreadable_message_is_dead_lettered_and_the_worker_reads_on(shop: LocalRun) -> None:
    """What ended a Celery worker under load on kombu's own filesystem transport."""
    worker = shop.pid("catalog_worker")
    queue = shop.var_dir / "broker" / "queues" / "catalog"
    assert queue.is_dir()
    # As a half-written file looked: older than anything queued, so it is read first.
    (queue / "00000000000000000001-1-0000000001.msg").write_bytes(b'{"body": "eyJh')

    assert wait_until(lambda: "unreadable message in queue catalog" in shop.log(), timeout=30)
    listed = subprocess.run(
        [sys.executable, "manage.py", "dlq", "list"],
        cwd=REPO / "catalog_svc",
        env=shop.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "unreadable message in queue catalog: JSONDecodeError" in listed
    # Still the same worker, and still working: the shop takes and decides an order.
    assert shop.pid("catalog_worker") == worker
    assert shop.status()["catalog_worker"].state == "RUNNING"
    assert place_an_order(shop) in {"APPROVED", "REJECTED"}


def place_an_order(shop: LocalRun) -> str:
    """Sign up, log in, order one unit of the first product; its final status."""
    with httpx.Client(base_url=shop.gateway_url, timeout=30) as client:
        email = f"unreadable-{time.time_ns()}@example.com"
        account = {"email": email, "password": "correct horse battery", "name": "Una"}
        assert client.post("/api/users/register/", json=account).status_code == 201
        token = client.post("/api/auth/token/", json=account).json()["access"]
        client.headers["Authorization"] = f"Bearer {token}"
        product = client.get("/api/catalog/products/", params={"in_stock": "true"}).json()
        line = {"product_id": product["results"][0]["id"], "quantity": 1}
        order = client.post("/api/orders/", json={"lines": [line]})
        assert order.status_code == 202, order.text
        path = f"/api/orders/{order.json()['id']}/"
        final = {"APPROVED", "REJECTED"}
        assert wait_until(lambda: client.get(path).json()["status"] in final, timeout=60)
        return str(client.get(path).json()["status"])


def test_ctrl_c_stops_every_process(shop: LocalRun) -> None:
    assert shop.process is not None
    session = shop.session
    pids = {status.pid for status in shop.status().values()}
    assert pids <= session_pids(session)

    started = time.monotonic()
    shop.signal(signal.SIGINT)
    bound = supervisord_conf.STOPWAITSECS + 10
    try:
        code: int | None = shop.process.wait(timeout=bound)
    except subprocess.TimeoutExpired:
        code = None
    elapsed = time.monotonic() - started

    assert code == 0, f"supervisord still running {bound}s after SIGINT:\n{shop.log_tail()}"
    assert elapsed < bound
    assert "WARN received SIGINT indicating exit request" in shop.log()
    assert wait_until(lambda: not session_pids(session), timeout=5), session_pids(session)
    assert all(port_is_free(port) for port in shop.ports.values()), shop.ports
