"""The gateway's gunicorn worker: uvicorn on uvloop and httptools, tuned for proxying.

gunicorn keeps process management (signals, graceful reloads, the common
config); each worker runs one asyncio event loop that proxies many requests
at once, which is what a gateway mostly does: wait on upstreams.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import struct
import sys

import environ
from uvicorn_worker import UvicornWorker

from gateway_svc.deadlines import ReadDeadlineProtocol

logger = logging.getLogger(__name__)

_SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}
_SCHED_OTHER = 0


def sched_slice_set(microseconds: int) -> bool:
    """Ask the kernel for a shorter time slice for this thread (Linux 6.12+, EEVDF).

    A proxy runs a fraction of a millisecond per request and then waits; on
    cores shared with its upstreams, what it adds to latency is mostly the
    time it waits, woken, for a busy core. EEVDF gives a task with a short
    requested slice an early deadline, so it runs soon after each wake-up
    instead of waiting out the slice of whatever occupies the core; its share
    of CPU does not change. Needs no privilege (``sched_setattr`` with
    ``SCHED_OTHER`` and ``sched_runtime``); older kernels ignore the field.
    """
    number = _SYS_SCHED_SETATTR.get(platform.machine()) if sys.platform == "linux" else None
    if number is None or microseconds <= 0:
        return False
    # struct sched_attr, version 1: size, policy, flags, nice, priority,
    # runtime, deadline, period (ns), util_min, util_max.
    attr = ctypes.create_string_buffer(
        struct.pack(
            "IIQiIQQQII", 56, _SCHED_OTHER, 0, os.nice(0), 0, microseconds * 1000, 0, 0, 0, 0
        )
    )
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, 0, attr, 0) != 0:
        logger.warning(
            "sched_setattr refused a %d µs slice: %s", microseconds, os.strerror(ctypes.get_errno())
        )
        return False
    return True


class GatewayWorker(UvicornWorker):
    CONFIG_KWARGS = {
        "loop": "uvloop",
        # httptools, with deadlines for reading the request (gateway_svc.deadlines).
        "http": ReadDeadlineProtocol,
        "lifespan": "on",
        # The proxy writes its own access line (with the request id); the upstream's
        # Date and Server headers are relayed rather than doubled.
        "access_log": False,
        "server_header": False,
        "date_header": False,
        # The proxy reads X-Forwarded-For itself, trusting NUM_PROXIES hops only;
        # uvicorn would otherwise believe any local client's header.
        "proxy_headers": False,
    }

    def init_process(self) -> None:
        # Before the server starts: its event loop runs on this thread. 0 keeps
        # the kernel's default slice (1.4 ms on this 2-core machine).
        sched_slice_set(environ.Env().int("GATEWAY_SCHED_SLICE_US", default=100))
        super().init_process()
