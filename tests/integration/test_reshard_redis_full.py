"""A reshard on a Redis at its memory limit (`noeviction`, a server of the test's own): a
backlog behind a broker outage is when one reshards, and when Redis may be full. Every
write of the reshard is an allow-oom script, so it finishes where plain writes are refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from adapters.redis_reshard import RedisLayoutStore
from cluster.reshard import reshard
from models.inbox_layout import InboxLayout
from tests.contract.test_inbox_layout_contract import crash_shards, fill, number, read_back
from tests.support.configs import redis_inbox
from tests.support.redis_server import own_redis, server_binary

pytestmark = pytest.mark.redis

MACHINE = server_binary((7, 0))
PREFIX = "watest:full:"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """The machine's redis-server binary on a port of its own, noeviction."""
    assert MACHINE is not None
    with own_redis(MACHINE, tmp_path / "redis", "--maxmemory-policy", "noeviction") as url:
        yield url


async def test_a_reshard_finishes_on_a_redis_past_its_memory_limit(server: str) -> None:
    """maxmemory set below what the backlog uses: a plain SET is refused (OOM), the reshard
    4 -> 2 still moves every entry once and records the count."""
    inbox = redis_inbox(PREFIX, url=server)
    items = await fill(inbox, 4, conversations=32, per=8)
    await crash_shards(inbox, 4)
    layout = RedisLayoutStore(server, PREFIX)
    await layout.set_layout(InboxLayout(shards=4))
    with redis.Redis.from_url(server) as raw:
        raw.config_set("maxmemory", int(raw.info("memory")["used_memory"]) - 100_000)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            raw.set("watest:probe", "x")
    try:
        report = await reshard(layout, 2, batch=10)
        assert report.moved > 0
        assert await layout.layout() == InboxLayout(shards=2)
        restarted = redis_inbox(PREFIX, url=server)
        try:
            reading = await read_back(restarted, 2)
        finally:
            await restarted.close()
        taken = sorted(number(s) for p in range(2) for s in reading.taken[p])
        assert taken == list(range(len(items)))
    finally:
        await layout.close()
        await inbox.close()
