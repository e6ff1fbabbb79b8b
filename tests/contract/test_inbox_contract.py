"""One suite, both Inbox adapters: the embedded SQLite one and Redis Streams (real server)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.ports import Inbox, StateWrite
from models.conversation import ConversationRecord, MessageRecord
from tests.conftest import REDIS_URL
from tests.support.configs import redis_inbox, sqlite_inbox
from tests.support.events import inbox_item as item
from tests.support.events import store
from tests.support.unreachable import UNWRITABLE_DB_KINDS, fails_transiently, unwritable_db_path

Factory = Callable[[], Inbox]

WINDOW_S = 3600  # dedup window of every inbox here; expiry is the dedup suite's subject


def numbered(**last_sequences: int) -> StateWrite:
    """A commit's state: each conversation's record with this last sequence (the records
    themselves are tests/contract/test_conversation_store_contract.py's subject)."""
    return StateWrite(
        conversations={
            cid: ConversationRecord(
                conversation_id=cid,
                tenant_id="acme",
                kind="customer",
                created_at=datetime(2026, 1, 1, tzinfo=UTC),
                last_sequence=seq,
            )
            for cid, seq in last_sequences.items()
        }
    )


async def last_sequences(inbox: Inbox, *conversation_ids: str) -> dict[str, int]:
    """The stored last sequence of each conversation that has a record."""
    found = await inbox.conversations(conversation_ids)
    return {cid: record.last_sequence for cid, record in found.items()}


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
    await crashed.commit(0, [batch[0].entry_id], numbered(c1=1))
    restarted = make_inbox()
    again = await restarted.read(0, 10, 50)
    rest = again + await restarted.read(0, 10, 50)
    assert [s.item.delivery_id for s in rest] == ["d1", "d2", "d3"]
    assert rest[0].deliveries > 1


async def test_entries_committed_out_of_order_are_not_handed_out_twice(
    make_inbox: Factory,
) -> None:
    """The shard commits later entries while it holds an earlier one back (its reorder
    window): the held entry is not handed out again by this process, and a restarted
    process gets it back as a redelivery."""
    inbox = make_inbox()
    await store(inbox, [item(n) for n in range(1, 4)])
    first, second, third = await inbox.read(0, 3, 50)
    await inbox.commit(0, [second.entry_id, third.entry_id], numbered(c1=2))
    assert await inbox.read(0, 10, 30) == []
    assert await inbox.backlog(0) == 1
    restarted = make_inbox()
    (again,) = await restarted.read(0, 10, 50)
    assert again.entry_id == first.entry_id
    assert again.item == first.item
    assert again.deliveries > 1
    assert await restarted.read(0, 10, 30) == []


async def test_commit_removes_entries_and_stores_records_together(make_inbox: Factory) -> None:
    """After commit the backlog shrinks and the conversations' records (their last
    sequences) are readable; a later commit replaces a record."""
    inbox = make_inbox()
    await store(inbox, [item(1), item(2, conversation="c2")])
    assert await inbox.backlog(0) == 2
    batch = await inbox.read(0, 10, 50)
    await inbox.commit(0, [s.entry_id for s in batch], numbered(c1=7, c2=1))
    assert await inbox.backlog(0) == 0
    assert await last_sequences(inbox, "c1", "c2", "c3") == {"c1": 7, "c2": 1}
    await inbox.commit(0, [], numbered(c1=8))
    assert await last_sequences(inbox, "c1", "c2") == {"c1": 8, "c2": 1}


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
    await inbox.commit(0, [s.entry_id for s in batch], numbered(c1=1), seen=["i:a", "i:b", "i:c"])
    stats = await inbox.stats()
    assert stats.expiring_keys >= 3
    assert stats.used_memory_bytes > 0


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
    "commit": lambda inbox: inbox.commit(0, ["1"], numbered(c1=1), seen=["i:1"]),
    "commit_messages": lambda inbox: inbox.commit(
        0, [], StateWrite(messages={"c1:wamid.1": MessageRecord(state="sent")})
    ),
    "record_order": lambda inbox: inbox.record_order(0, ["2", "1"]),
    "recorded_order": lambda inbox: inbox.recorded_order(0),
    "entries": lambda inbox: inbox.entries(0, ["2", "1"]),
    "seen": lambda inbox: inbox.seen(["i:1"]),
    "conversations": lambda inbox: inbox.conversations(["c1"]),
    "messages": lambda inbox: inbox.messages(["c1:wamid.1"]),
    "find_conversations_by_wa_id": lambda inbox: inbox.find_conversations("acme", wa_id="1"),
    "find_conversations_by_user_id": lambda inbox: inbox.find_conversations("acme", user_id="US.1"),
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
