"""The Inbox port's recorded batch order on both adapters: what a shard records before it
publishes a batch out of entry order, cleared by the commit, and the entries fetched back
by id in that order, without disturbing what `read` hands out (adapters/ports.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from adapters.errors import TransientError
from adapters.ports import Inbox, StateWrite
from adapters.redis_durability import WaitAof
from models.inbox import StoredItem
from tests.contract.test_inbox_contract import WINDOW_S, Factory, make_inbox
from tests.support.configs import redis_inbox
from tests.support.events import inbox_item as item
from tests.support.events import store
from tests.support.redis_server import own_redis, server_binary, server_version

__all__ = ["make_inbox"]  # the inbox contract's fixture: both adapters, restartable

NOTHING = StateWrite()  # a commit's state; the records are other suites' subject


def ids(stored: list[StoredItem]) -> list[str]:
    """The entry ids of a batch, in its order."""
    return [s.entry_id for s in stored]


def deliveries(stored: list[StoredItem]) -> list[str]:
    """The delivery ids (d<n>) of a batch's items, in its order."""
    return [s.item.delivery_id for s in stored]


async def read_all(inbox: Inbox, partition: int = 0) -> list[StoredItem]:
    """Everything `read` hands out now, batch after batch, until an empty one."""
    got: list[StoredItem] = []
    while batch := await inbox.read(partition, 10, 30):
        got += batch
    return got


async def test_a_recorded_order_reads_back_as_recorded_also_after_a_restart(
    make_inbox: Factory,
) -> None:
    """Nothing recorded: []. A record comes back exactly, in its order, from the instance
    that wrote it and from a new one (the record is in the store, not the process)."""
    inbox = make_inbox()
    assert await inbox.recorded_order(0) == []
    await store(inbox, [item(n) for n in range(1, 4)])
    first, second, third = await inbox.read(0, 10, 50)
    order = [third.entry_id, first.entry_id, second.entry_id]
    await inbox.record_order(0, order)
    assert await inbox.recorded_order(0) == order
    assert await make_inbox().recorded_order(0) == order


async def test_a_record_replaces_the_previous_one(make_inbox: Factory) -> None:
    """One record per partition: the latest, whole (a shorter one leaves nothing behind)."""
    inbox = make_inbox()
    await store(inbox, [item(n) for n in range(1, 4)])
    first, second, third = await inbox.read(0, 10, 50)
    await inbox.record_order(0, [third.entry_id, second.entry_id, first.entry_id])
    await inbox.record_order(0, [second.entry_id, first.entry_id])
    assert await make_inbox().recorded_order(0) == [second.entry_id, first.entry_id]


async def test_the_commit_of_the_recorded_batch_clears_the_record(make_inbox: Factory) -> None:
    """The commit acknowledges the batch and clears its record in one step: a restart
    after it finds nothing to replay."""
    inbox = make_inbox()
    await store(inbox, [item(1), item(2)])
    first, second = await inbox.read(0, 10, 50)
    await inbox.record_order(0, [second.entry_id, first.entry_id])
    await inbox.commit(0, [second.entry_id, first.entry_id], NOTHING)
    assert await make_inbox().recorded_order(0) == []
    assert await inbox.backlog(0) == 0


@pytest.mark.parametrize("committed", ["other-entries", "no-entries"])
async def test_any_commit_of_the_partition_clears_the_record(
    make_inbox: Factory, committed: str
) -> None:
    """Intended: the shard commits the recorded batch before any other, so whatever commit
    of the partition comes next (other entries, or state alone) ends the record."""
    inbox = make_inbox()
    await store(inbox, [item(n) for n in range(1, 4)])
    first, second, third = await inbox.read(0, 10, 50)
    await inbox.record_order(0, [second.entry_id, first.entry_id])
    await inbox.commit(0, [third.entry_id] if committed == "other-entries" else [], NOTHING)
    assert await inbox.recorded_order(0) == []
    assert await inbox.backlog(0) == (2 if committed == "other-entries" else 3)


async def test_partitions_keep_their_records_apart(make_inbox: Factory) -> None:
    """Each partition has its own record; a commit clears only its own partition's."""
    inbox = make_inbox()
    await store(inbox, [item(1, 0), item(2, 1), item(3, 0), item(4, 1)])
    zero = await inbox.read(0, 10, 50)
    one = await inbox.read(1, 10, 50)
    await inbox.record_order(0, ids(zero)[::-1])
    await inbox.record_order(1, ids(one)[::-1])
    assert await inbox.recorded_order(0) == ids(zero)[::-1]
    assert await inbox.recorded_order(1) == ids(one)[::-1]
    assert await inbox.recorded_order(2) == []
    await inbox.commit(0, ids(zero), NOTHING)
    assert await inbox.recorded_order(0) == []
    assert await inbox.recorded_order(1) == ids(one)[::-1]


async def test_entries_come_back_in_the_order_given_as_redeliveries(make_inbox: Factory) -> None:
    """A restarted shard fetches the recorded batch: the entries of these ids, exactly as
    stored, in the recorded order (not entry order), each a redelivery (deliveries 2)."""
    crashed = make_inbox()
    await store(crashed, [item(n) for n in range(1, 5)])
    batch = await crashed.read(0, 10, 50)
    order = [batch[2], batch[0], batch[3]]
    await crashed.record_order(0, ids(order))
    restarted = make_inbox()
    got = await restarted.entries(0, await restarted.recorded_order(0))
    assert ids(got) == ids(order)
    assert [s.item for s in got] == [s.item for s in order]
    assert [s.deliveries for s in got] == [2, 2, 2]


async def test_entries_skip_committed_ids(make_inbox: Factory) -> None:
    """An id committed since (the entry is gone) is simply absent; the rest keep the
    order given. No ids: nothing."""
    inbox = make_inbox()
    await store(inbox, [item(1), item(2), item(3)])
    first, second, third = await inbox.read(0, 10, 50)
    await inbox.commit(0, [second.entry_id], NOTHING)
    wanted = [third.entry_id, second.entry_id, first.entry_id]
    assert ids(await make_inbox().entries(0, wanted)) == [third.entry_id, first.entry_id]
    assert await inbox.entries(0, []) == []


async def test_entries_do_not_change_what_read_hands_out(make_inbox: Factory) -> None:
    """Fetching entries by id takes nothing from the reader and counts no delivery: the
    reader that fetched them, and a new one after it, still re-read every uncommitted
    entry in entry order, those fetched included, as the second delivery they are."""
    crashed = make_inbox()
    await store(crashed, [item(n) for n in range(1, 5)])
    taken = await read_all(crashed)
    restarted = make_inbox()
    for _ in range(3):
        fetched = await restarted.entries(0, ids(taken)[::-1])
        assert deliveries(fetched) == ["d4", "d3", "d2", "d1"]
    got = await read_all(restarted)
    assert ids(got) == ids(taken)
    assert [s.deliveries for s in got] == [2, 2, 2, 2]
    assert deliveries(await read_all(make_inbox())) == ["d1", "d2", "d3", "d4"]


async def test_a_restart_replays_the_recorded_batch_then_reads_the_rest(
    make_inbox: Factory,
) -> None:
    """The whole sequence: a shard records a reordered batch, publishes, crashes before the
    commit; the restarted one fetches exactly that batch in that order, commits it (the
    record goes with it), and `read` then hands out only what is left, in entry order."""
    crashed = make_inbox()
    await store(crashed, [item(n) for n in range(1, 5)])
    first, second, third, _ = await crashed.read(0, 10, 50)
    await crashed.record_order(0, [third.entry_id, first.entry_id])
    restarted = make_inbox()
    replay = await restarted.entries(0, await restarted.recorded_order(0))
    assert deliveries(replay) == ["d3", "d1"]
    await restarted.commit(0, ids(replay), NOTHING)
    assert await restarted.recorded_order(0) == []
    rest = await read_all(restarted)
    assert deliveries(rest) == ["d2", "d4"]
    assert rest[0].entry_id == second.entry_id


# The machine's server, and a 7.2+ one when there is one (7.0 refuses every command of a
# MULTI at the limit, 7.2+ only those that allocate): as tests/integration/test_redis_safety.py.
SERVERS = sorted({b for b in (server_binary((7, 0)), server_binary((7, 2))) if b is not None})
WAITAOF_SERVER = server_binary((7, 2))
DURABLE = ("--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction")


@pytest.mark.redis
@pytest.mark.parametrize(
    "binary", SERVERS, ids=[".".join(map(str, server_version(b) or ())) for b in SERVERS]
)
async def test_redis_records_the_order_at_the_memory_limit(tmp_path: Path, binary: str) -> None:
    """maxmemory + noeviction, memory full (a plain SET is refused): the shard can still
    record its batch's order, fetch the entries, and the commit clears the record, so a
    full inbox still drains a reordered batch."""
    with own_redis(binary, tmp_path / "redis", "--maxmemory-policy", "noeviction") as url:
        inbox = redis_inbox("watest:oom:", url=url, window_s=WINDOW_S)
        try:
            await store(inbox, [item(1), item(2)])
            first, second = await inbox.read(0, 10, 50)
            with redis.Redis.from_url(url) as raw:
                raw.config_set("maxmemory", 1)  # below what is used: Redis is at its limit
                with pytest.raises(redis.ResponseError, match="used memory > 'maxmemory'"):
                    raw.set("watest:oom:plain", "x")
            with pytest.raises(TransientError, match="used memory > 'maxmemory'"):
                await store(inbox, [item(3)])
            order = [second.entry_id, first.entry_id]
            await inbox.record_order(0, order)
            assert await inbox.recorded_order(0) == order
            assert ids(await inbox.entries(0, order)) == order
            await inbox.commit(0, order, NOTHING)
            assert await inbox.recorded_order(0) == []
            assert await inbox.backlog(0) == 0
        finally:
            await inbox.close()


@pytest.mark.redis
@pytest.mark.skipif(WAITAOF_SERVER is None, reason="WAITAOF needs redis-server >= 7.2")
async def test_redis_record_order_waits_for_the_fsync_like_an_append(tmp_path: Path) -> None:
    """With WAITAOF configured the record is as durable as the entries: WAITAOF rides with
    it, and one short of its counts (a replica that is not there) fails the record with
    TransientError, so the shard publishes nothing on a record that may be lost."""
    assert WAITAOF_SERVER is not None
    with own_redis(WAITAOF_SERVER, tmp_path / "redis", *DURABLE) as url:
        local = redis_inbox("watest:aof:", url, WINDOW_S, waitaof=WaitAof(1, 0, 2000))
        missing = redis_inbox("watest:aof:", url, WINDOW_S, waitaof=WaitAof(1, 1, 50))
        try:
            await local.record_order(0, ["1-0", "2-0"])
            assert await local.recorded_order(0) == ["1-0", "2-0"]
            with pytest.raises(TransientError, match="not fsynced within 50 ms"):
                await missing.record_order(0, ["2-0"])
        finally:
            await local.close()
            await missing.close()
