"""Stop a long-running command's loop on SIGTERM or SIGINT, without a signal handler.

The loops (the outbox relay, the event consumer, the discovery sidecar) sleep
in ``threading.Event.wait()``. Setting that Event from a signal handler can
deadlock: Python runs the handler in the main thread between two bytecodes,
and when that moment falls inside ``wait()`` while it holds the Event's lock,
``set()`` waits for that lock forever and the process ignores every later
SIGTERM too. So the signals are blocked instead and taken synchronously by a
thread of their own (``sigwait``), which asks the loop to stop the way any
other thread would.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger("common.shutdown")

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


@contextmanager
def stop_on_signals(
    request_stop: Callable[[], None], *, name: str, signals: frozenset[int] = STOP_SIGNALS
) -> Iterator[None]:
    """Call ``request_stop()`` (from a thread, never a handler) on the first of ``signals``.

    Meant for the main loop of a process: enter it in the main thread before
    any other thread starts (threads inherit the blocked signals, so none of
    them takes one by accident) and let the process end soon after it exits.
    Later signals are taken too and only logged: the loop is already stopping,
    and left pending they would end the process by signal once the block exits.
    """
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals)

    def take_signals() -> None:
        received = signal.sigwait(signals)
        logger.info("%s: %s received, stopping", name, signal.Signals(received).name)
        request_stop()
        while True:
            received = signal.sigwait(signals)
            logger.info("%s: %s received, already stopping", name, signal.Signals(received).name)

    threading.Thread(target=take_signals, name="stop-signals", daemon=True).start()
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
