"""Embedded rate limiter: fixed-window counters in this process (one ingress process)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence


class LocalRateLimiter:
    """The RateLimiter port in memory; the same windows as the Redis adapter.

    Only the current window's counters are kept, so memory is bounded by the keys seen in
    one window (source IPs and tenants). The clock is injectable so a test can hold time
    still (or step it into the next window).
    """

    def __init__(self, window_s: int, clock: Callable[[], float] = time.time) -> None:
        self._window_s = max(1, window_s)
        self._clock = clock
        self._window = -1
        self._counts: dict[str, int] = {}

    async def hit(self, limits: Sequence[tuple[str, int]]) -> float:
        """Count one request per key; the seconds left in the window if any is over."""
        now = self._clock()
        window = math.floor(now / self._window_s)
        if window != self._window:
            self._window, self._counts = window, {}
        over = False
        for key, limit in limits:
            count = self._counts.get(key, 0) + 1
            self._counts[key] = count
            over |= count > limit
        return (window + 1) * self._window_s - now if over else 0.0

    async def close(self) -> None:
        """Nothing to release."""
