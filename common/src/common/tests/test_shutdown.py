"""stop_on_signals: a loop that spins in Event.wait() still stops on SIGTERM and SIGINT.

Run in a child process: blocking signals in the test runner itself would
change how every later test is stopped.
"""

import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def child_running(script: str) -> Iterator[subprocess.Popen[str]]:
    """``python -c script`` with its output piped; killed if a test leaves it running."""
    child = subprocess.Popen(  # noqa: S603 - a fixed command line
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# The loop spends nearly all its time inside Event.wait() holding the Event's
# lock: the moment where a handler calling set() deadlocks the process (it did
# in CI). The child says "looping" once the loop runs, so the signal lands in it.
LOOP = textwrap.dedent(
    """
    import logging, threading
    from common.shutdown import stop_on_signals

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stop = threading.Event()
    spins = 0
    with stop_on_signals(stop.set, name="spinner"):
        while not stop.is_set():
            stop.wait(0)
            spins += 1
            if spins == 1000:
                print("looping", flush=True)
    print("stopped", flush=True)
    """
)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_loop_in_event_wait_stops_on_the_signal(stop_signal: signal.Signals) -> None:
    for _ in range(5):  # a handler calling set() hung in 8 of 8 such runs here
        with child_running(LOOP) as child:
            assert child.stdout is not None
            assert child.stdout.readline() == "looping\n"
            child.send_signal(stop_signal)
            out, err = child.communicate(timeout=10)
        assert child.returncode == 0, err
        assert out == "stopped\n"
        assert err == f"spinner: {stop_signal.name} received, stopping\n"


# Stops on the first signal, then stays in the block until the second one has
# been taken (its log line) before it leaves and exits.
TWICE = textwrap.dedent(
    """
    import logging, sys, threading
    from common.shutdown import stop_on_signals

    second = threading.Event()

    class SecondSignal(logging.Handler):
        def emit(self, record):
            if "already stopping" in record.getMessage():
                second.set()

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger().addHandler(SecondSignal())
    stop = threading.Event()
    with stop_on_signals(stop.set, name="twice"):
        print("looping", flush=True)
        stop.wait()
        print("stopping", flush=True)
        if not second.wait(10):
            sys.exit("the second signal was not taken")
    print("stopped", flush=True)
    """
)


def test_a_second_signal_while_stopping_is_taken_and_does_not_kill_the_process() -> None:
    with child_running(TWICE) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "looping\n"
        child.send_signal(signal.SIGTERM)
        assert child.stdout.readline() == "stopping\n"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=10)
    assert child.returncode == 0, err
    assert out == "stopped\n"
    assert err.splitlines() == [
        "twice: SIGTERM received, stopping",
        "twice: SIGINT received, already stopping",
    ]
