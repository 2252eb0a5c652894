"""The one backoff formula of the shop: how long to wait before retry ``attempt``.

Used by every retry and reconnect loop: the gateway's upstream and gRPC calls, the
event relay's and consumers' broker reconnects and handler retries, and discovery's
etcd watch. Exponential, capped, and by default with "full jitter" (a uniform draw
below the exponential delay), so that many clients failing at once do not come back
in lockstep.
"""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int, *, base: float = 0.05, cap: float = 1.0, jitter: bool = True
) -> float:
    """Seconds to wait before retry ``attempt`` (0 for the first retry).

    ``base * 2**attempt``, at most ``cap``; with ``jitter`` a uniform draw in
    [0, that). Without jitter the delays are predictable (a consumer's handler
    retries, whose waits are logged and documented).
    """
    ceiling = min(cap, base * 2 ** min(max(attempt, 0), 62))
    return random.uniform(0, ceiling) if jitter else ceiling  # noqa: S311 - not secrets


class Backoff:
    """Successive ``backoff_delay``s for a reconnect loop; ``reset()`` after a success."""

    def __init__(self, *, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    def next(self) -> float:
        delay = backoff_delay(self.failures, base=self.initial, cap=self.maximum)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
