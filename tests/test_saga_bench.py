"""bench/saga_bench.py's side-by-side mode, the parts a real run cannot show went right:
the baseline's services import the baseline's code (not the working tree's editable
install), its worktree goes away afterwards, and the results file carries both sides.

A whole run (two shops) takes minutes; it is `make bench-saga`'s, not a test's.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.harness import REPO

pytestmark = pytest.mark.system


def _saga_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("saga_bench", REPO / "bench" / "saga_bench.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


saga_bench = _saga_bench()


def _worktrees() -> str:
    return subprocess.run(
        ["git", "worktree", "list", "--porcelain"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
def test_the_baseline_runs_from_its_worktree_which_is_removed_afterwards(tmp_path):
    commit = saga_bench.commit_info("HEAD")["commit"]
    folder = tmp_path / "baseline-source"

    with saga_bench.baseline_worktree(commit, folder) as root:
        side = saga_bench.baseline_side(root, tmp_path / "work")
        listed = _worktrees()
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        # What a baseline service process imports: its environment's PYTHONPATH, run
        # from its folder in the worktree, as the harness starts it.
        imported = subprocess.run(
            [sys.executable, "-c", "import common; print(common.__file__)"],
            cwd=root / "orders_svc",
            env={"PYTHONPATH": ":".join(side.pythonpath), "PATH": "/usr/bin:/bin"},
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        harness = sys.modules[type(side.launcher).__module__]

    assert f"worktree {folder}" in listed
    assert head == commit
    assert Path(imported).is_relative_to(root / "common" / "src")
    assert root.resolve() == harness.REPO  # its services start from the worktree's folders
    assert not folder.exists()
    assert f"worktree {folder}" not in _worktrees()


def _side_figures(cpu: float, max_rate: float | None, p50: float) -> dict[str, Any]:
    return {
        "rate": 20.0,
        "p50_ms": p50,
        "p99_ms": p50 * 2,
        "cpu_ms_per_order": cpu,
        "max_orders_per_s": max_rate,
        "peak_completed_per_s": 30.0,
        "event_p50_ms": 15.0,
        "event_p99_ms": 40.0,
        "targets": {"p50_ms<=100": p50 <= 100},
        "steps": [],
    }


def test_the_results_file_holds_both_sides_and_the_issue_targets():
    current = _side_figures(cpu=27.0, max_rate=40.0, p50=80.0)
    baseline = _side_figures(cpu=90.0, max_rate=20.0, p50=900.0)
    commits = {"working_tree": {"commit": "b" * 40}, "baseline": {"commit": "a" * 40}}

    results = saga_bench.combine(current, baseline, commits, {"cpu": "a CPU", "cores": 2})

    expected_keys = {
        "cpu_ms_per_order",
        "baseline_cpu_ms_per_order",
        "max_orders_per_s",
        "baseline_max_orders_per_s",
        "p50_ms",
        "p99_ms",
        "event_p50_ms",
        "rate",
        "baseline_p50_ms",
        "baseline_p99_ms",
        "baseline_event_p50_ms",
        "commits",
        "machine",
        "date",
    }
    assert expected_keys <= results.keys()
    assert (results["cpu_ms_per_order"], results["baseline_cpu_ms_per_order"]) == (27.0, 90.0)
    assert (results["max_orders_per_s"], results["baseline_max_orders_per_s"]) == (40.0, 20.0)
    assert (results["p50_ms"], results["baseline_p50_ms"]) == (80.0, 900.0)
    assert results["baseline"] == baseline
    assert results["cpu_ratio_to_baseline"] == 0.3
    assert results["targets"]["cpu_ms_per_order<=baseline/3"] is True
    assert results["targets"]["max_orders_per_s>=2.5x_baseline"] is False  # 2.0 times


def test_without_a_baseline_the_baseline_keys_are_empty():
    current = _side_figures(cpu=30.0, max_rate=None, p50=80.0)

    results = saga_bench.combine(current, None, {"working_tree": {}, "baseline": None}, {})

    assert results["baseline"] is None
    assert results["baseline_cpu_ms_per_order"] is None
    assert results["cpu_ms_per_order"] == 30.0
    assert "cpu_ms_per_order<=baseline/3" not in results["targets"]


def test_the_side_that_goes_first_alternates_round_by_round():
    working, baseline = object(), object()

    orders = [saga_bench.in_turn([working, baseline], index) for index in range(3)]

    assert orders == [[working, baseline], [baseline, working], [working, baseline]]


def _slice(start: float, orders: int, latency: float, cpu: dict[str, float]) -> Any:
    """A fixed-rate slice: ``orders`` sent 0.1 s apart from ``start``, each approved
    ``latency`` s after it was sent."""
    records, settled = [], {}
    for n in range(orders):
        sent = start + n / 10
        order_id = f"{start}-{n}"
        records.append(saga_bench.Sent(planned=sent, sent=sent, answered=sent, order_id=order_id))
        settled[order_id] = ("order.approved", sent + latency)
    return saga_bench.Measured(
        records=records, settled=settled, cpu=cpu, busy=50.0, jiffies=100.0, elapsed=5.0
    )


def test_the_fixed_rate_slices_add_up_to_one_run():
    idle = {"orders web": 0.0, "rabbitmq": 0.0}
    fast = _slice(1000.0, 10, 0.02, {**idle, "orders web": 0.1, "rabbitmq": 9.0})
    slow = _slice(2000.0, 30, 0.06, {**idle, "orders web": 0.5, "rabbitmq": 9.0})

    summary = saga_bench.summarize_runs([fast, slow], rate=10.0)

    # CPU over all 40 orders, not an average of the two slices' figures (10 and 16.7 ms).
    assert summary["cpu_ms_per_order"]["orders web"] == 15.0
    assert summary["cpu_ms_per_order_total"] == 15.0  # RabbitMQ is shown, not counted
    assert summary["approved"] == 40
    assert summary["p50_ms"] == 60.0
    assert summary["p99_ms"] == 60.0
    assert summary["drain_s"] == 0.06  # the slower slice's
    # 40 orders over the two slices' own spans (0.92 s and 2.96 s), not the 1,000 s between.
    assert summary["completed_per_s"] == round(40 / (0.92 + 2.96), 1)
    assert summary["slices"] == 2
    assert summary["shop_cores"] == round((0.6 + 18.0) / 10.0, 2)


def test_a_private_postgres_server_has_postgresql_s_defaults_and_goes_away_afterwards():
    # Where the bench makes its folder: pytest's tmp_path is closed to PostgreSQL's own user.
    workdir = Path(tempfile.mkdtemp(prefix="saga-bench-test-"))
    try:
        with saga_bench.postgres_server(None, workdir) as url:
            info = saga_bench.postgres_info(url, private=True)
            folder = workdir / "postgres"
            assert folder.is_dir()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert info["private"] is True
    # What the machine's CI server turns off, and what tests' private servers skip.
    assert info["autovacuum"] == "on"
    assert info["fsync"] == "on"
    assert info["synchronous_commit"] == "on"
    assert info["full_page_writes"] == "on"
    assert not folder.exists()
    with pytest.raises(saga_bench.psycopg2.OperationalError):
        saga_bench.postgres_info(url, private=True)


def test_an_existing_postgres_server_is_used_as_given(tmp_path):
    with saga_bench.postgres_server("postgres://someone@127.0.0.1:1", tmp_path) as url:
        assert url == "postgres://someone@127.0.0.1:1"
    assert list(tmp_path.iterdir()) == []


def test_the_cpu_of_backends_and_autovacuum_workers_of_the_run_s_databases_is_counted():
    names = ["it_orders_1a2b", "it_users_3c4d"]

    assert saga_bench.of_databases("postgres: postgres it_orders_1a2b 127.0.0.1(5512) idle", names)
    assert saga_bench.of_databases("postgres: autovacuum worker it_users_3c4d", names)
    assert saga_bench.of_databases("postgres: autovacuum worker it_users_3c4d   ", names)
    assert not saga_bench.of_databases("postgres: postgres it_orders_1a2bX ::1(1) idle", names)
    assert not saga_bench.of_databases("postgres: walwriter ", names)
