"""Fixed-window rate limits per client IP (anonymous) or per user (authenticated).

Counters live in this process by default, or in Redis when configured so every
gateway worker and replica counts together. If Redis fails the request is let
through (and logged): losing the limiter must not take the gateway down.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from proxy.routes import Rate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the window ends

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The ``RateLimit-*`` fields (IETF httpapi draft) for the response."""
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset).encode()),
        ]


def _window(rate: Rate, now: float) -> tuple[int, int]:
    window = int(now // rate.seconds)
    reset = max(1, int((window + 1) * rate.seconds - now + 0.999))
    return window, reset


class LocalRateLimiter:
    """Counters in this process: right for one worker, and the embedded default."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int, int], int] = {}
        self._next_prune = 0.0

    async def hit(self, key: str, rate: Rate) -> Decision:
        now = time.time()
        window, reset = _window(rate, now)
        slot = (key, rate.seconds, window)
        count = self._counts.get(slot, 0) + 1
        self._counts[slot] = count
        if now > self._next_prune:
            self._prune(now)
        return Decision(count <= rate.count, rate.count, max(0, rate.count - count), reset)

    def _prune(self, now: float) -> None:
        """Forget windows that have ended, once a minute."""
        self._next_prune = now + 60
        ended = [slot for slot in self._counts if (slot[2] + 1) * slot[1] < now]
        for slot in ended:
            del self._counts[slot]


class RedisRateLimiter:
    """Counters in Redis: one count across every worker and replica."""

    def __init__(self, client: Any, prefix: str = "gateway") -> None:
        self.client = client
        self.prefix = prefix

    async def hit(self, key: str, rate: Rate) -> Decision:
        now = time.time()
        window, reset = _window(rate, now)
        redis_key = f"{self.prefix}:rate:{key}:{rate.seconds}:{window}"
        try:
            pipeline = self.client.pipeline(transaction=False)
            pipeline.incr(redis_key)
            pipeline.expire(redis_key, rate.seconds + 1, nx=True)
            count, _ = await pipeline.execute()
        except Exception:
            logger.exception("Rate limiter unavailable; letting the request through")
            return Decision(True, rate.count, rate.count, reset)
        return Decision(count <= rate.count, rate.count, max(0, rate.count - count), reset)
