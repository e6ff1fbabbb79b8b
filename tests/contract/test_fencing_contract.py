"""Shard fencing on both inbox adapters (adapters/ports.py "Fencing"): a partition's later
claim refuses the earlier incarnation's reads, recorded orders and commits, in the same
atomic step as each, so an old shard still running can neither take entries the new one
would never see nor store state over the new one's."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
import redis.asyncio as redis

from adapters.errors import Fenced
from adapters.ports import Inbox
from adapters.redis_inbox import RedisInbox
from adapters.sqlite_inbox import SqliteInbox
from tests.conftest import REDIS_URL
from tests.contract.test_batch_order_contract import ids, read_all
from tests.contract.test_inbox_contract import Factory, make_inbox, numbered
from tests.support.events import inbox_item as item
from tests.support.events import store

__all__ = ["make_inbox"]  # the inbox contract's fixture: both adapters, restartable


async def last_sequence(inbox: Inbox, conversation_id: str) -> int | None:
    """The conversation's stored last sequence, None without a record."""
    records = await inbox.conversations([conversation_id])
    record = records.get(conversation_id)
    return None if record is None else record.last_sequence


async def test_each_claim_bumps_the_partitions_epoch_independently(make_inbox: Factory) -> None:
    """Claims count up per partition, across inbox objects (the epoch is in the store)."""
    first, second = make_inbox(), make_inbox()
    one = await first.claim(0)
    assert await second.claim(0) == one + 1
    assert await first.claim(0) == one + 2
    other = await second.claim(1)
    assert await first.claim(1) == other + 1


async def test_an_old_incarnation_can_neither_read_record_nor_commit_after_a_new_claim(
    make_inbox: Factory,
) -> None:
    """The old shard read two entries and recorded their order; the new one claims. The
    old one's next read, record and commit are refused, and change nothing: the new one
    reads every entry (the old one's included), finds the old record intact and no
    sequence stored by the old one's commit."""
    old, new = make_inbox(), make_inbox()
    await old.claim(0)
    await store(old, [item(n) for n in range(1, 5)])
    taken = await old.read(0, 2, 50)
    await old.record_order(0, ids(taken)[::-1])
    await new.claim(0)
    with pytest.raises(Fenced):
        await old.read(0, 10, 50)
    with pytest.raises(Fenced):
        await old.record_order(0, ids(taken))
    with pytest.raises(Fenced):
        await old.commit(0, ids(taken), numbered(c1=7))
    assert await new.recorded_order(0) == ids(taken)[::-1]
    assert await last_sequence(new, "c1") is None
    got = await read_all(new)
    assert [s.item.delivery_id for s in got] == ["d1", "d2", "d3", "d4"]
    await new.commit(0, ids(got), numbered(c1=4))
    assert await last_sequence(new, "c1") == 4
    assert await read_all(make_inbox()) == []


async def test_an_old_incarnation_waiting_in_a_read_takes_nothing_appended_after_the_claim(
    make_inbox: Factory,
) -> None:
    """The old shard waits in a blocking read when the new one claims and an entry
    arrives: the old read wakes refused, and the entry is the new one's (a Redis consumer
    group would otherwise have handed it to the old one, pending where the new one, past
    its start-up re-read, would never look)."""
    old, new = make_inbox(), make_inbox()
    await old.claim(0)
    assert await old.read(0, 10, 20) == []
    waiting = asyncio.create_task(old.read(0, 10, 3000))
    await asyncio.sleep(0.2)
    await new.claim(0)
    assert await new.read(0, 10, 20) == []
    await store(new, [item(1)])
    with pytest.raises(Fenced):
        await waiting
    got = await new.read(0, 10, 1000)
    assert [s.item.delivery_id for s in got] == ["d1"]


async def test_a_claim_starts_the_reads_again_from_the_uncommitted_entries(
    make_inbox: Factory,
) -> None:
    """One object claiming again (a shard's new incarnation in the same process) is
    handed every uncommitted entry again, as a restarted process is."""
    inbox = make_inbox()
    await inbox.claim(0)
    await store(inbox, [item(n) for n in range(1, 4)])
    first = await inbox.read(0, 10, 50)
    assert await inbox.read(0, 10, 20) == []
    await inbox.claim(0)
    again = await read_all(inbox)
    assert ids(again) == ids(first)
    assert all(s.deliveries > 1 for s in again)


async def test_an_object_that_never_claimed_is_not_fenced(make_inbox: Factory) -> None:
    """Tools and tests that read without claiming keep working whatever the shards claim."""
    shard, tool = make_inbox(), make_inbox()
    await shard.claim(0)
    await store(tool, [item(1)])
    got = await tool.read(0, 10, 50)
    await tool.record_order(0, ids(got))
    await tool.commit(0, ids(got), numbered(c1=1))
    assert await last_sequence(shard, "c1") == 1


async def test_a_lost_or_lower_epoch_fences_nobody_and_is_set_back(
    make_inbox: Factory, tmp_path: Path
) -> None:
    """The store lost the epoch (restarted without AOF, flushed, failed over to a replica
    without the last claim): the live shard goes on reading and committing, and sets it
    back, so the next claim is still later than its own and fences it."""
    shard = make_inbox()
    epoch = await shard.claim(0)
    await store(shard, [item(1), item(2)])
    await forget_epoch(shard, 0, tmp_path / "inbox.db")
    first = await shard.read(0, 1, 50)
    await shard.commit(0, ids(first), numbered(c1=1))
    await shard.record_order(0, [])
    second = await shard.read(0, 10, 50)
    await shard.commit(0, ids(second), numbered(c1=2))
    assert await last_sequence(shard, "c1") == 2
    assert await make_inbox().claim(0) == epoch + 1
    with pytest.raises(Fenced):
        await shard.commit(0, [], numbered(c1=3))


async def forget_epoch(inbox: Inbox, partition: int, sqlite_path: Path) -> None:
    """Remove the partition's stored epoch, as a store that lost it would have."""
    if isinstance(inbox, RedisInbox):
        client = redis.Redis.from_url(REDIS_URL)
        try:
            await client.delete(inbox.epoch_key(partition))
        finally:
            await client.aclose()
    else:
        assert isinstance(inbox, SqliteInbox)
        with sqlite3.connect(sqlite_path) as conn:
            conn.execute("DELETE FROM shard_epochs WHERE partition = ?", (partition,))
