"""Run every test suite on servers of the run's own, then print one pytest-style summary.

Each service is its own Django project, and Django is configured once per
process, so each suite is one pytest run with that service's settings and a
test database of its own (pytest-django creates ``test_<service>``). The
cross-service tests in tests/ start services as real processes.

First a preflight names what the machine lacks (exit 2, nothing started). Then,
by default, a private PostgreSQL, RabbitMQ and Redis start (tests/servers.py),
shared by every suite through TEST_POSTGRES_URL, TEST_BROKER_URL and
TEST_REDIS_URL, and are stopped and removed at the end, also on Ctrl-C or
SIGTERM. TEST_SERVERS=existing uses the servers those variables name instead
(or PostgreSQL, RabbitMQ and Redis on their usual loopback ports).

    python scripts/run_tests.py            # everything
    python scripts/run_tests.py catalog    # some suites; extra pytest args after --
    python scripts/run_tests.py system -- tests/test_saga.py   # files replace the suite's folder
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.servers import PrivateServers, existing_env, is_server_url, preflight  # noqa: E402

MODES = ("private", "existing")
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


def suite_env(name: str, servers: dict[str, str], base: dict[str, str]) -> dict[str, str]:
    """The environment of one suite: ``base`` (ours) with the run's servers. With private
    servers, no other database, broker or cache URL gets through (say a CACHE_URL or
    GATEWAY_REDIS_URL of the shell): the suites reach nothing but the run's servers."""
    base = {key: value for key, value in base.items() if key != "TEST_SERVERS_DIR"}
    if servers["TEST_SERVERS"] == "private":
        base = {key: value for key, value in base.items() if not is_server_url(value)}
    return {
        **base,
        **servers,
        "DATABASE_URL": f"{servers['TEST_POSTGRES_URL'].rstrip('/')}/{name}{DB_SUFFIX}",
        "BROKER_URL": servers["TEST_BROKER_URL"],
        "ENVIRONMENT": "local",
    }


def run_suite(
    name: str, extra_args: list[str], results_dir: Path, servers: dict[str, str]
) -> tuple[int, dict[str, float]]:
    path, settings_module = SUITES[name]
    junit = results_dir / f"{name}.xml"
    env = suite_env(name, servers, dict(os.environ))
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
    junit.unlink(missing_ok=True)  # an interrupted suite's counts are its own, not the last run's
    process = subprocess.Popen([*command, *extra_args], cwd=REPO, env=env)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        stop_suite(process)
        INTERRUPTED_COUNTS.update(read_counts(junit))
        raise
    return code, read_counts(junit)


def stop_suite(process: subprocess.Popen[bytes]) -> None:
    """The run is interrupted: let pytest stop as on Ctrl-C, with its fixtures' teardown
    (which stops the services it started). On a terminal's Ctrl-C it got SIGINT with
    us; otherwise (SIGTERM, or SIGINT to us alone) it gets one. Each further Ctrl-C
    moves on to the next, harder step."""
    steps = [(None, 60.0), (signal.SIGINT, 30.0), (signal.SIGKILL, 10.0)]
    if INTERRUPTED_BY and INTERRUPTED_BY[-1] != signal.SIGINT:
        steps = steps[1:]
    for sig, seconds in steps:
        try:
            if sig is not None and process.poll() is None:
                process.send_signal(sig)
            process.wait(timeout=seconds)
            return
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            continue


INTERRUPTED_BY: list[int] = []
INTERRUPTED_COUNTS: dict[str, float] = {}  # of the suite that was running


def interrupt(signum: int, frame: object) -> None:
    """SIGINT, SIGTERM and SIGHUP all stop the run the same way, through ``finally``."""
    INTERRUPTED_BY.append(signum)
    raise KeyboardInterrupt


def quiet_signals() -> None:
    """Stopping the servers takes a second: further signals must not cut it short."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


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
    mode = os.environ.get("TEST_SERVERS") or "private"
    if mode not in MODES:
        parser.error(f"TEST_SERVERS={mode}: say {' or '.join(MODES)} (default: private)")
    suites = args.suites or list(SUITES)

    if problems := preflight(mode, suites):
        print("The tests cannot run on this machine yet:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        if any("apt-get install" in problem for problem in problems):
            print("`make system-deps` installs every Debian package they need.", file=sys.stderr)
        return 2

    results_dir = REPO / "var" / "test-results"
    results_dir.mkdir(parents=True, exist_ok=True)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    started = time.monotonic()
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
    failed_suites: list[str] = []
    private = None
    try:
        if mode == "private":
            print("Starting a private PostgreSQL, RabbitMQ and Redis...", flush=True)
            private = PrivateServers()
            try:
                private.start()
            except RuntimeError as error:
                print(f"The private servers did not start: {error}", file=sys.stderr)
                return 2
            servers = private.env()
            ready = ", ".join(
                f"{name} {seconds:.1f}s" for name, seconds in private.ready_after.items()
            )
            print(f"Private servers under {private.dir} ready ({ready}):", flush=True)
        else:
            servers = existing_env()
            print("Existing servers (TEST_SERVERS=existing):", flush=True)
        for name in ("TEST_POSTGRES_URL", "TEST_BROKER_URL", "TEST_REDIS_URL"):
            print(f"  {name}={servers[name]}", flush=True)
        for name in suites:
            code, counts = run_suite(name, extra, results_dir, servers)
            for key in totals:
                totals[key] += counts[key]
            # Exit code 5 means the suite collected nothing: a missing suite is a failure here.
            if code != 0:
                failed_suites.append(f"{name} (exit {code})")
    except KeyboardInterrupt:
        print("\nInterrupted: stopping.", file=sys.stderr, flush=True)
        for key, value in INTERRUPTED_COUNTS.items():
            totals[key] += value
    finally:
        if private is not None:
            quiet_signals()
            stopping = time.monotonic()
            private.close()
            if left := private.leftovers():
                failed_suites.append("private servers left behind")
                print(f"Left behind: {'; '.join(left)}", file=sys.stderr)
            print(f"\nPrivate servers stopped and removed in {time.monotonic() - stopping:.1f}s")

    print()
    if failed_suites:
        print(f"Suites that failed: {', '.join(failed_suites)}")
    print(summary_line(totals, time.monotonic() - started))
    if INTERRUPTED_BY:
        print("The run was interrupted.")
        return 130
    return 1 if failed_suites else 0


if __name__ == "__main__":
    sys.exit(main())
