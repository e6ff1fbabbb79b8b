"""The LimiterStateStore port (the tenant limiters' state, issue 13) on both adapters: a
tenant's state is what was last put, per tenant, seen by another instance (the restarted
limiter's process)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from adapters.ports import LimiterStateStore
from adapters.redis_limiter_state import RedisLimiterState
from adapters.sqlite_limiter_state import SqliteLimiterState
from tests.conftest import REDIS_URL

Factory = Callable[[], LimiterStateStore]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """A factory of store instances over one store."""
    made: list[LimiterStateStore] = []
    if request.param == "sqlite":

        def factory() -> LimiterStateStore:
            made.append(SqliteLimiterState(tmp_path / "inbox.db"))
            return made[-1]
    else:
        prefix = request.getfixturevalue("redis_prefix")

        def factory() -> LimiterStateStore:
            made.append(RedisLimiterState(REDIS_URL, prefix))
            return made[-1]

    yield factory
    for store in made:
        await store.close()


async def test_the_last_state_put_is_read_back_by_another_instance(make_store: Factory) -> None:
    first, second = make_store(), make_store()
    assert await first.get("acme") is None
    await first.put("acme", b'{"blocked_until": 1.0}')
    await first.put("acme", b'{"blocked_until": 2.0}')
    await first.put("beta", b"{}")
    assert await second.get("acme") == b'{"blocked_until": 2.0}'
    assert await second.get("beta") == b"{}"
    assert await second.get("gamma") is None
