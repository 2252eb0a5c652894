"""Circuit breakers (one per upstream instance) and bulkheads (one per upstream).

The breaker's state machine is pybreaker's (closed → open after N consecutive
failures → half-open after the cool-down → closed on a success); its state
lives in memory or, when Redis is configured, in Redis so every gateway worker
sees the same state. pybreaker wraps synchronous calls, so the async proxy
asks ``allow()`` before a call and reports the outcome with ``record()``
afterwards.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import pybreaker

_STATE_NUMBER = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}


class _Failed(Exception):
    """Stands for the failed upstream call when its outcome is handed to pybreaker."""


def _succeed() -> None:
    return None


def _fail() -> None:
    raise _Failed


class InstanceBreaker:
    """The circuit of one upstream instance."""

    def __init__(
        self,
        name: str,
        *,
        fail_max: int,
        reset_timeout: float,
        redis: Any = None,
        redis_prefix: str = "gateway",
    ) -> None:
        if redis is not None:
            self.storage: pybreaker.CircuitBreakerStorage = pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED, redis, namespace=f"{redis_prefix}:breaker:{name}"
            )
        else:
            self.storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self.name = name
        self.reset_timeout = reset_timeout
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            state_storage=self.storage,
            name=name,
            throw_new_error_on_trip=False,
        )
        self._trial_in_flight = False
        # True once this worker has reported a failure the breaker has not yet seen
        # cleared; lets the common case (closed, all well) skip pybreaker entirely.
        # Not with Redis: there another worker's failures must be cleared too.
        self._dirty = False
        self._shared = redis is not None

    @property
    def state(self) -> str:
        return self.breaker.current_state

    @property
    def state_number(self) -> int:
        """0 closed, 1 half-open, 2 open (the Prometheus gauge's value)."""
        return _STATE_NUMBER.get(self.state, 2)

    def retry_after(self) -> float:
        """Seconds until an open circuit lets a trial call through."""
        opened_at = self.storage.opened_at
        if opened_at is None:
            return 0.0
        elapsed = (
            datetime.now(UTC) - opened_at.replace(tzinfo=opened_at.tzinfo or UTC)
        ).total_seconds()
        return max(0.0, self.reset_timeout - elapsed)

    def allow(self) -> bool:
        """May a call go to this instance now? After the cool-down, one trial at a time."""
        state = self.breaker.current_state
        if state == pybreaker.STATE_CLOSED:
            return True
        if state == pybreaker.STATE_OPEN and self.retry_after() > 0:
            return False
        if self._trial_in_flight:
            return False
        self._trial_in_flight = True
        return True

    def record(self, *, ok: bool) -> None:
        """Report how the call went (a late answer after the circuit opened is ignored)."""
        was_trial, self._trial_in_flight = self._trial_in_flight, False
        if ok and not self._dirty and not was_trial and not self._shared:
            return  # closed with no failures to clear: nothing for pybreaker to do
        self._dirty = not ok
        with contextlib.suppress(_Failed, pybreaker.CircuitBreakerError):
            self.breaker.call(_succeed if ok else _fail)


class Bulkhead:
    """At most ``limit`` calls in flight to one upstream from this worker; past it, refuse."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def try_acquire(self) -> bool:
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        self.in_flight -= 1
