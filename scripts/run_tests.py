"""Run every test suite on PostgreSQL and RabbitMQ, then print one pytest-style summary.

Each service is its own Django project, and Django is configured once per
process, so each suite is one pytest run with that service's settings and a
test database of its own (pytest-django creates ``test_<service>``). The
cross-service tests in tests/ start services as real processes.

    python scripts/run_tests.py            # everything
    python scripts/run_tests.py catalog    # some suites; extra pytest args after --
    python scripts/run_tests.py system -- tests/test_saga.py   # files replace the suite's folder
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
BROKER_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
# Two runs on one PostgreSQL (say a clean clone beside a working tree) need
# different test databases: TEST_DB_SUFFIX=b gives test_catalog_b and so on.
DB_SUFFIX = f"_{os.environ['TEST_DB_SUFFIX']}" if os.environ.get("TEST_DB_SUFFIX") else ""

# name -> (path, settings module); None settings: no Django in the test process itself.
SUITES: dict[str, tuple[str, str | None]] = {
    "common": ("common/src/common/tests", "common.tests.settings"),
    "catalog": ("catalog_svc", "catalog_svc.settings"),
    "users": ("users_svc", "users_svc.settings"),
    "orders": ("orders_svc", "orders_svc.settings"),
    "gateway": ("gateway_svc", "gateway_svc.settings"),
    "system": ("tests", None),
}


def run_suite(name: str, extra_args: list[str], results_dir: Path) -> tuple[int, dict[str, float]]:
    path, settings_module = SUITES[name]
    junit = results_dir / f"{name}.xml"
    env = {
        **os.environ,
        "DATABASE_URL": f"{POSTGRES_URL.rstrip('/')}/{name}{DB_SUFFIX}",
        "BROKER_URL": BROKER_URL,
        "TEST_POSTGRES_URL": POSTGRES_URL,
        "TEST_BROKER_URL": BROKER_URL,
        "ENVIRONMENT": "local",
    }
    # Test files or folders among the extra arguments replace the suite's folder; each
    # suite gets only those inside its own folder.
    paths = [arg for arg in extra_args if (REPO / arg.split("::")[0]).exists()]
    chosen = [a for a in paths if (REPO / a.split("::")[0]).resolve().is_relative_to(REPO / path)]
    extra_args = [arg for arg in extra_args if arg not in paths] + chosen
    command = [
        sys.executable,
        "-m",
        "pytest",
        *([] if chosen else [path]),
        f"--junitxml={junit}",
        "-p",
        "no:cacheprovider",
    ]
    if settings_module:
        command.append(f"--ds={settings_module}")
    else:
        env.pop("DJANGO_SETTINGS_MODULE", None)
    print(f"\n##### suite {name}: {' '.join(command[2:])}", flush=True)
    code = subprocess.run([*command, *extra_args], cwd=REPO, env=env, check=False).returncode
    return code, read_counts(junit)


def read_counts(junit: Path) -> dict[str, float]:
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
    if not junit.exists():
        return counts
    # Our own pytest wrote this file a moment ago; it is not untrusted input.
    for suite in ET.parse(junit).getroot().iter("testsuite"):  # noqa: S314
        for key in counts:
            counts[key] += float(suite.get(key, 0))
    return counts


def summary_line(totals: dict[str, float], seconds: float) -> str:
    failed, errors, skipped = int(totals["failures"]), int(totals["errors"]), int(totals["skipped"])
    passed = int(totals["tests"]) - failed - errors - skipped
    parts = [f"{failed} failed"] if failed else []
    parts.append(f"{passed} passed")
    if skipped:
        parts.append(f"{skipped} skipped")
    if errors:
        parts.append(f"{errors} errors")
    text = f" {', '.join(parts)} in {seconds:.2f}s "
    return text.center(80, "=")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="*", help=f"some of {', '.join(SUITES)}; default: all")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    extra = argv[split + 1 :]  # passed on to pytest
    if unknown := set(args.suites) - set(SUITES):
        parser.error(f"unknown suites: {', '.join(sorted(unknown))}")
    results_dir = REPO / "var" / "test-results"
    results_dir.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
    failed_suites = []
    for name in args.suites or list(SUITES):
        code, counts = run_suite(name, extra, results_dir)
        for key in totals:
            totals[key] += counts[key]
        # Exit code 5 means the suite collected nothing: a missing suite is a failure here.
        if code != 0:
            failed_suites.append(f"{name} (exit {code})")

    print()
    if failed_suites:
        print(f"Suites that failed: {', '.join(failed_suites)}")
    print(summary_line(totals, time.monotonic() - started))
    return 1 if failed_suites else 0


if __name__ == "__main__":
    sys.exit(main())
