"""Production rate limiter: fixed-window counters in Redis, shared by every ingress replica.

A key's counter for window `w` is `<prefix>rl:<key>:<w>` (w = unix time // window), so
no reset is needed: an old window's counter simply expires. One pipelined round trip
counts a request against all of its keys (INCR + EXPIRE per key).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from adapters.errors import TransientError


class RedisRateLimiter:
    """The RateLimiter port on Redis."""

    def __init__(self, url: str, prefix: str = "wa:", window_s: int = 1) -> None:
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url)
        self._prefix = prefix
        self._window_s = max(1, window_s)

    async def hit(self, limits: Sequence[tuple[str, int]]) -> float:
        """INCR each key's current window; the seconds left in it if any is over its limit."""
        if not limits:
            return 0.0
        now = time.time()
        window = math.floor(now / self._window_s)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, _ in limits:
                    counter = f"{self._prefix}rl:{key}:{window}"
                    pipe.incr(counter)
                    # Twice the window: a counter outlives its window by a margin, never more.
                    pipe.expire(counter, 2 * self._window_s)
                replies = await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"redis rate limit: {exc}") from exc
        counts = replies[0::2]
        if any(int(count) > limit for count, (_, limit) in zip(counts, limits, strict=True)):
            return (window + 1) * self._window_s - now
        return 0.0

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
