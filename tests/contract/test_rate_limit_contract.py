"""The RateLimiter port on both adapters: fixed windows, per key, Retry-After.

Both run on a clock that stands still (tests/support/clock.py), 0.25 s into a window, so a
burst never straddles two windows and the Retry-After is exact; a new window is a step of
the clock, not a sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

import pytest

from adapters.local_rate_limit import LocalRateLimiter
from adapters.ports import RateLimiter
from tests.support.clock import FixedClock
from tests.support.configs import redis_rate_limiter


class MakeLimiter(Protocol):
    """Builds a limiter of the adapter under test."""

    def __call__(self, window_s: int = 1) -> RateLimiter: ...


@pytest.fixture
def clock() -> FixedClock:
    """The limiter's clock: 0.25 s into a window."""
    return FixedClock()


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
async def make_limiter(
    request: pytest.FixtureRequest, clock: FixedClock
) -> AsyncIterator[MakeLimiter]:
    """A factory of limiters with `window_s` windows on the fixed clock (one key prefix)."""
    made: list[RateLimiter] = []

    def factory(window_s: int = 1) -> RateLimiter:
        limiter: RateLimiter
        if request.param == "local":
            limiter = LocalRateLimiter(window_s, clock=clock)
        else:
            prefix = request.getfixturevalue("redis_prefix")
            limiter = redis_rate_limiter(prefix, window_s=window_s, clock=clock)
        made.append(limiter)
        return limiter

    yield factory
    for limiter in made:
        await limiter.close()


@pytest.fixture
def limiter(make_limiter: MakeLimiter) -> RateLimiter:
    """A limiter with 1 s windows."""
    return make_limiter()


async def test_requests_within_the_limit_pass(limiter: RateLimiter) -> None:
    """limit=3: three hits answer 0.0."""
    assert [await limiter.hit([("ip:a", 3)]) for _ in range(3)] == [0.0, 0.0, 0.0]


async def test_the_hit_over_the_limit_gets_the_time_left_in_the_window(
    limiter: RateLimiter,
) -> None:
    """The fourth hit of limit 3 answers the rest of the window (0.75 s); another key is
    unaffected."""
    results = [await limiter.hit([("ip:a", 3)]) for _ in range(4)]
    assert results[:3] == [0.0, 0.0, 0.0]
    assert results[3] == pytest.approx(0.75)
    assert await limiter.hit([("ip:b", 3)]) == 0.0


async def test_any_key_over_its_limit_refuses_the_request(limiter: RateLimiter) -> None:
    """Keys are counted together: the tenant's limit trips whatever the address."""
    answers = [await limiter.hit([(f"ip:{n}", 100), ("tenant:t", 2)]) for n in range(3)]
    assert answers[:2] == [0.0, 0.0]
    assert answers[2] > 0.0


async def test_concurrent_hits_each_see_their_own_place_in_the_count(
    limiter: RateLimiter,
) -> None:
    """Five hits at once on limit 3 (grouped into one round trip by Redis): three pass,
    two are refused."""
    answers = await asyncio.gather(*(limiter.hit([("ip:a", 3)]) for _ in range(5)))
    assert sum(1 for a in answers if a == 0.0) == 3
    assert sum(1 for a in answers if a > 0.0) == 2


async def test_a_new_window_starts_from_zero(limiter: RateLimiter, clock: FixedClock) -> None:
    """After the window ends the key passes again."""
    for _ in range(3):
        await limiter.hit([("ip:a", 1)])
    assert await limiter.hit([("ip:a", 1)]) > 0.0
    clock.advance(1.0)
    assert await limiter.hit([("ip:a", 1)]) == 0.0


async def test_windows_are_aligned_to_their_length(
    make_limiter: MakeLimiter, clock: FixedClock
) -> None:
    """60 s windows: 10.25 s into one, the Retry-After is the 49.75 s left."""
    limiter = make_limiter(60)
    clock.now = 60 * 28_333_333 + 10.25
    assert await limiter.hit([("ip:a", 1)]) == 0.0
    assert await limiter.hit([("ip:a", 1)]) == pytest.approx(49.75)
    clock.advance(49.75)  # the first instant of the next window
    assert await limiter.hit([("ip:a", 1)]) == 0.0


async def test_no_keys_is_never_limited(limiter: RateLimiter) -> None:
    """An empty list of limits answers 0.0."""
    assert await limiter.hit([]) == 0.0
