"""The RateLimiter port on both adapters: fixed windows, per key, Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from adapters.local_rate_limit import LocalRateLimiter
from adapters.ports import RateLimiter
from adapters.redis_rate_limit import RedisRateLimiter
from tests.conftest import REDIS_URL


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    """A limiter with 1 s windows."""
    made: RateLimiter
    if request.param == "local":
        made = LocalRateLimiter(1)
    else:
        made = RedisRateLimiter(REDIS_URL, request.getfixturevalue("redis_prefix"), 1)
    yield made
    await made.close()


async def test_requests_within_the_limit_pass(limiter: RateLimiter) -> None:
    """limit=3: three hits answer 0.0."""
    assert [await limiter.hit([("ip:a", 3)]) for _ in range(3)] == [0.0, 0.0, 0.0]


async def test_the_hit_over_the_limit_gets_the_time_left_in_the_window(
    limiter: RateLimiter,
) -> None:
    """The fourth hit of limit 3 answers 0 < retry <= 1 s; another key is unaffected."""
    results = [await limiter.hit([("ip:a", 3)]) for _ in range(4)]
    if results[-1] == 0.0:  # the window turned between hits: the next burst must trip
        results = [await limiter.hit([("ip:a", 3)]) for _ in range(4)]
    assert 0.0 < results[-1] <= 1.0
    assert await limiter.hit([("ip:b", 3)]) == 0.0


async def test_any_key_over_its_limit_refuses_the_request(limiter: RateLimiter) -> None:
    """Keys are counted together: the tenant's limit trips whatever the address."""
    answers = [await limiter.hit([(f"ip:{n}", 100), ("tenant:t", 2)]) for n in range(3)]
    if answers[-1] == 0.0:
        answers = [await limiter.hit([(f"ip:{n}", 100), ("tenant:t", 2)]) for n in range(3)]
    assert answers[-1] > 0.0


async def test_a_new_window_starts_from_zero(limiter: RateLimiter) -> None:
    """After the window ends the key passes again."""
    for _ in range(3):
        await limiter.hit([("ip:a", 1)])
    await asyncio.sleep(1.05)
    assert await limiter.hit([("ip:a", 1)]) == 0.0
