"""The gateway worker's request for a short scheduler slice, against the real kernel."""

from __future__ import annotations

import platform
import re
import threading
from pathlib import Path

from gateway_svc.workers import sched_slice_set


def _in_new_thread(microseconds: int) -> tuple[bool, str]:
    """Call in a thread of its own, so the test process keeps its slice."""
    outcome: dict[str, object] = {}

    def run() -> None:
        outcome["applied"] = sched_slice_set(microseconds)
        outcome["sched"] = Path("/proc/thread-self/sched").read_text()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return bool(outcome["applied"]), str(outcome["sched"])


def _kernel_at_least(major: int, minor: int) -> bool:
    found = re.match(r"(\d+)\.(\d+)", platform.release())
    return bool(found) and (int(found[1]), int(found[2])) >= (major, minor)


def test_a_short_slice_is_what_the_kernel_then_reports_for_the_thread() -> None:
    applied, sched = _in_new_thread(100)
    assert applied
    if _kernel_at_least(6, 12):  # custom slices (EEVDF) landed in Linux 6.12
        assert re.search(r"^se\.slice\s*:\s*100000$", sched, re.MULTILINE), sched


def test_zero_leaves_the_kernel_default() -> None:
    applied, _ = _in_new_thread(0)
    assert applied is False
