"""The Redis rate limiter's keys: the window comes from the limiter's clock, the counter
expires by Redis's own clock after two windows, and concurrent hits share one round trip."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from adapters.errors import TransientError
from tests.conftest import REDIS_URL
from tests.support.clock import FixedClock
from tests.support.configs import redis_rate_limiter

pytestmark = pytest.mark.redis


async def test_the_counter_key_is_the_clocks_window_and_expires(redis_prefix: str) -> None:
    """At t = 60 * w + 10 with 60 s windows the counter is `<prefix>rl:<key>:<w>`, TTL 120 s."""
    clock = FixedClock(60 * 28_333_333 + 10.0)
    limiter = redis_rate_limiter(redis_prefix, window_s=60, clock=clock)
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await asyncio.gather(*(limiter.hit([("ip:a", 10), ("tenant:t", 10)]) for _ in range(3)))
        counter = f"{redis_prefix}rl:ip:a:28333333"
        assert int(await client.get(counter) or 0) == 3
        assert int(await client.get(f"{redis_prefix}rl:tenant:t:28333333") or 0) == 3
        assert 0 < await client.ttl(counter) <= 120
        clock.advance(60)
        await limiter.hit([("ip:a", 10)])
        assert int(await client.get(f"{redis_prefix}rl:ip:a:28333334") or 0) == 1
    finally:
        await limiter.close()
        await client.aclose()


async def test_an_unreachable_redis_is_a_transient_error_for_every_waiting_hit() -> None:
    """Nothing listens on the port: each grouped hit raises TransientError (never hangs)."""
    limiter = redis_rate_limiter("wa:", url="redis://127.0.0.1:1/0", linger_s=0.0)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(limiter.hit([("ip:a", 1)]) for _ in range(3)), return_exceptions=True),
            timeout=10,
        )
    finally:
        await limiter.close()
    assert [type(r) for r in results] == [TransientError] * 3
