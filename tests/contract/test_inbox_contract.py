"""One suite, both Inbox adapters: the embedded SQLite one and Redis Streams (real server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.ports import Inbox
from tests.conftest import REDIS_URL
from tests.support.configs import redis_inbox, sqlite_inbox
from tests.support.events import inbox_item as item
from tests.support.events import store
from tests.support.unreachable import UNWRITABLE_DB_KINDS, fails_transiently, unwritable_db_path

Factory = Callable[[], Inbox]

WINDOW_S = 3600  # dedup window of every inbox here; expiry is the dedup suite's subject


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def make_inbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """A factory of inbox instances over one store, to simulate a reader restart."""
    made: list[Inbox] = []
    if request.param == "sqlite":

        def factory() -> Inbox:
            made.append(sqlite_inbox(tmp_path / "inbox.db", WINDOW_S))
            return made[-1]
    else:
        prefix = request.getfixturevalue("redis_prefix")

        def factory() -> Inbox:
            made.append(redis_inbox(prefix, window_s=WINDOW_S))
            return made[-1]

    yield factory
    for inbox in made:
        await inbox.close()


async def test_read_returns_appended_items_in_order_per_partition(make_inbox: Factory) -> None:
    """Items come back in append order, each only from its own partition."""
    inbox = make_inbox()
    await store(inbox, [item(1, 0), item(2, 1), item(3, 0)])
    await store(inbox, [item(4, 0)])
    got = await inbox.read(0, 10, 50)
    assert [s.item.delivery_id for s in got] == ["d1", "d3", "d4"]
    assert [s.item.delivery_id for s in await inbox.read(1, 10, 50)] == ["d2"]


async def test_read_respects_count_and_does_not_repeat_in_flight_entries(
    make_inbox: Factory,
) -> None:
    """A reader gets each uncommitted entry once while it runs."""
    inbox = make_inbox()
    await store(inbox, [item(n) for n in range(5)])
    first = await inbox.read(0, 3, 50)
    second = await inbox.read(0, 3, 50)
    assert [s.item.delivery_id for s in first] == ["d0", "d1", "d2"]
    assert [s.item.delivery_id for s in second] == ["d3", "d4"]
    assert await inbox.read(0, 3, 10) == []


async def test_uncommitted_entries_are_read_again_after_a_restart(make_inbox: Factory) -> None:
    """A reader that crashed between read and commit loses nothing: a new one re-reads."""
    crashed = make_inbox()
    await store(crashed, [item(n) for n in range(4)])
    batch = await crashed.read(0, 2, 50)
    await crashed.commit(0, [batch[0].entry_id], {"c1": 1})
    restarted = make_inbox()
    again = await restarted.read(0, 10, 50)
    rest = again + await restarted.read(0, 10, 50)
    assert [s.item.delivery_id for s in rest] == ["d1", "d2", "d3"]
    assert rest[0].deliveries > 1


async def test_commit_removes_entries_and_stores_sequences_together(make_inbox: Factory) -> None:
    """After commit the backlog shrinks and the sequences are readable."""
    inbox = make_inbox()
    await store(inbox, [item(1), item(2, conversation="c2")])
    assert await inbox.backlog(0) == 2
    batch = await inbox.read(0, 10, 50)
    await inbox.commit(0, [s.entry_id for s in batch], {"c1": 7, "c2": 1})
    assert await inbox.backlog(0) == 0
    assert await inbox.sequences(["c1", "c2", "c3"]) == {"c1": 7, "c2": 1}
    await inbox.commit(0, [], {"c1": 8})
    assert await inbox.sequences(["c1"]) == {"c1": 8}


async def test_read_blocks_up_to_block_ms_then_returns_nothing(make_inbox: Factory) -> None:
    """An idle partition returns an empty batch, not an error."""
    inbox = make_inbox()
    assert await inbox.read(3, 10, 30) == []
    await inbox.ping()


async def test_items_round_trip_unchanged(make_inbox: Factory) -> None:
    """What the ingress stored is exactly what the shard reads (the raw item included)."""
    inbox = make_inbox()
    original = item(1, raw={"id": "x", "nested": [1, {"é": None}]})
    await store(inbox, [original])
    (stored,) = await inbox.read(0, 1, 50)
    assert stored.item == original


async def test_durability_reports_the_store_s_own_settings(make_inbox: Factory) -> None:
    """What the store says about fsync and eviction, read from it (not from our config):
    SQLite's synchronous level, Redis's appendonly as CONFIG GET reports it."""
    report = await make_inbox().durability()
    settings = dict(report.settings)
    if report.store.startswith("sqlite"):
        assert settings["synchronous"] in {"2", "3"}  # FULL or EXTRA: fsynced per commit
        assert report.unsafe == report.unusable == ()
    else:
        assert report.store.startswith("redis ")
        import redis.asyncio as aioredis

        raw = aioredis.Redis.from_url(REDIS_URL)
        appendonly = (await raw.config_get("appendonly"))["appendonly"]
        await raw.aclose()
        assert settings["appendonly"] == appendonly
        assert any("appendonly is no" in u for u in report.unsafe) == (appendonly == "no")


async def test_stats_count_committed_marks(make_inbox: Factory) -> None:
    """stats() sees the marks a commit wrote (Redis: among the database's expiring keys)."""
    inbox = make_inbox()
    await store(inbox, [item(1)])
    batch = await inbox.read(0, 10, 50)
    await inbox.commit(0, [s.entry_id for s in batch], {"c1": 1}, seen=["i:a", "i:b", "i:c"])
    stats = await inbox.stats()
    assert stats.expiring_keys >= 3
    assert stats.used_memory_bytes > 0


@pytest.mark.redis
async def test_redis_sequences_expire_after_their_ttl_of_silence(redis_prefix: str) -> None:
    """A conversation's last sequence is its own key with the sequence TTL, renewed by each
    commit: a conversation silent for longer starts again from none, so memory is bounded
    by the conversations active within one TTL."""
    inbox = redis_inbox(redis_prefix, window_s=WINDOW_S, sequence_ttl_s=1)
    raw = aioredis_client()
    try:
        await inbox.commit(0, [], {"c1": 5, "c2": 1})
        assert 0 < await raw.pttl(inbox.sequence_key("c1")) <= 1000
        await asyncio.sleep(0.6)
        await inbox.commit(0, [], {"c1": 6})  # renewed
        await asyncio.sleep(0.6)
        assert await inbox.sequences(["c1", "c2"]) == {"c1": 6}
        await asyncio.sleep(0.6)
        assert await inbox.sequences(["c1", "c2"]) == {}
    finally:
        await asyncio.gather(raw.aclose(), inbox.close())


@pytest.mark.redis
async def test_redis_reads_sequences_stored_before_issue_9_then_expires_them(
    redis_prefix: str,
) -> None:
    """An upgrade keeps the numbering: sequences in the old hash `<prefix>seq` are read when
    a conversation has no key of its own yet; the first commit gives the hash the TTL, so
    it is gone once every conversation active since has its own key."""
    raw = aioredis_client()
    inbox = redis_inbox(redis_prefix, window_s=WINDOW_S, sequence_ttl_s=60)
    try:
        await raw.hset(f"{redis_prefix}seq", mapping={"c1": 41, "c2": 7})
        assert await inbox.sequences(["c1", "c2", "c3"]) == {"c1": 41, "c2": 7}
        await inbox.commit(0, [], {"c1": 42})
        assert await inbox.sequences(["c1", "c2"]) == {"c1": 42, "c2": 7}
        assert 0 < await raw.ttl(f"{redis_prefix}seq") <= 60
    finally:
        await asyncio.gather(raw.aclose(), inbox.close())


def aioredis_client() -> Any:
    """A raw client on the test Redis, to look behind the adapter."""
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(REDIS_URL)


@pytest.mark.redis
async def test_redis_recreates_a_lost_consumer_group_and_rereads(redis_prefix: str) -> None:
    """Redis lost the group (data loss / failover): the read fails once, then the group is
    created again from id 0 and every uncommitted entry is read again, none skipped."""
    import redis.asyncio as aioredis

    from adapters.errors import TransientError

    inbox = redis_inbox(redis_prefix, window_s=WINDOW_S)
    await store(inbox, [item(1), item(2)])
    assert len(await inbox.read(0, 10, 50)) == 2  # handed out, not committed
    raw = aioredis.Redis.from_url(REDIS_URL)
    await raw.xgroup_destroy(inbox.stream(0), "shards")
    await raw.aclose()
    with pytest.raises(TransientError):
        await inbox.read(0, 10, 50)
    again = await inbox.read(0, 10, 50)
    assert [s.item.delivery_id for s in again] == ["d1", "d2"]
    await inbox.close()


@pytest.fixture(
    params=[
        *(f"sqlite-{kind}" for kind in UNWRITABLE_DB_KINDS),
        "redis-refused",
        "redis-silent",
    ]
)
async def unreachable_inbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Inbox]:
    """An inbox whose store cannot be reached: SQLite on a path it cannot open, Redis on a
    port that refuses connections or one that accepts and never answers."""
    kind: str = request.param
    if kind.startswith("sqlite-"):
        path = unwritable_db_path(kind.removeprefix("sqlite-"), tmp_path)
        inbox: Inbox = sqlite_inbox(path, WINDOW_S)
    elif kind == "redis-refused":
        port = request.getfixturevalue("closed_port")
        inbox = redis_inbox("watest:unreachable:", f"redis://127.0.0.1:{port}/0", WINDOW_S)
    else:
        # Timeouts in the URL take precedence over the adapter's (5 s connect, 10 s read).
        port = request.getfixturevalue("silent_port")
        inbox = redis_inbox(
            "watest:unreachable:",
            f"redis://127.0.0.1:{port}/0?socket_connect_timeout=0.2&socket_timeout=0.2",
            WINDOW_S,
        )
    yield inbox
    await inbox.close()


# Every call the ingress and the shards make on the port.
INBOX_CALLS: dict[str, Callable[[Inbox], Awaitable[object]]] = {
    "append_deliveries": lambda inbox: inbox.append_deliveries([("d:1", [item(1)])]),
    "read": lambda inbox: inbox.read(0, 10, 50),
    "commit": lambda inbox: inbox.commit(0, ["1"], {"c1": 1}),
    "sequences": lambda inbox: inbox.sequences(["c1"]),
    "backlog": lambda inbox: inbox.backlog(0),
    "ping": lambda inbox: inbox.ping(),
    "durability": lambda inbox: inbox.durability(),
    "stats": lambda inbox: inbox.stats(),
}


@pytest.mark.parametrize("call", INBOX_CALLS.values(), ids=INBOX_CALLS.keys())
async def test_an_unreachable_store_is_a_transient_error_not_a_vendor_one(
    unreachable_inbox: Inbox, call: Callable[[Inbox], Awaitable[object]]
) -> None:
    """Store down: every call fails fast with TransientError (the ingress answers 503, the
    shard retries the batch), never with redis' or sqlite3's exceptions, and never hangs."""
    await fails_transiently(call(unreachable_inbox))
