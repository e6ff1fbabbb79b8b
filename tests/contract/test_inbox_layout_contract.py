"""The inbox layout on both adapters (real Redis, SQLite): the record checked at start, and
reshards that move pending, unread and recorded entries with nothing lost or repeated and
each conversation's order kept, also when interrupted and run again (docs/resharding.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from adapters.errors import Fenced, TransientError
from adapters.ports import Inbox, InboxLayoutStore, StateWrite
from adapters.redis_reshard import RedisLayoutStore
from adapters.sqlite_reshard import SqliteLayoutStore
from cluster.layout import reconcile
from cluster.reshard import reshard
from models.inbox import InboxItem, StoredItem
from models.inbox_layout import InboxLayout, Move
from models.routing import partition_of
from tests.conftest import REDIS_URL
from tests.support.configs import redis_inbox, sqlite_inbox
from tests.support.events import inbox_item, store

WINDOW_S = 3600


@dataclass
class Stores:
    """Inboxes and layout stores over one store: each call a new instance (a restart)."""

    inbox: Callable[[], Inbox]
    layout: Callable[[], InboxLayoutStore]
    inboxes: list[Inbox] = field(default_factory=list)
    layouts: list[InboxLayoutStore] = field(default_factory=list)

    def new_inbox(self) -> Inbox:
        self.inboxes.append(self.inbox())
        return self.inboxes[-1]

    def new_layout(self) -> InboxLayoutStore:
        self.layouts.append(self.layout())
        return self.layouts[-1]

    async def close(self) -> None:
        for inbox in self.inboxes:
            await inbox.close()
        for layout in self.layouts:
            await layout.close()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    """Both adapters' inbox and layout store over one store, a key prefix per test."""
    if request.param == "sqlite":
        path = tmp_path / "inbox.db"
        made = Stores(lambda: sqlite_inbox(path, WINDOW_S), lambda: SqliteLayoutStore(path))
    else:
        prefix = request.getfixturevalue("redis_prefix")
        made = Stores(
            lambda: redis_inbox(prefix, window_s=WINDOW_S),
            lambda: RedisLayoutStore(REDIS_URL, prefix),
        )
    yield made
    await made.close()


def key_of(c: int) -> str:
    """Conversation c's key (what the partition is hashed from)."""
    return f"acme|106540352242922|1650555{c:04d}"


def item(n: int, c: int, shards: int) -> InboxItem:
    """Item n of conversation c, in its partition under `shards`."""
    key = key_of(c)
    return inbox_item(n, partition_of(key, shards), conversation=key)


def number(stored: StoredItem) -> int:
    """The item's n (its delivery id is d<n>)."""
    return int(stored.item.delivery_id[1:])


async def fill(inbox: Inbox, shards: int, conversations: int = 16, per: int = 6) -> list[InboxItem]:
    """Append `per` items of each conversation, interleaved, in small deliveries."""
    items = [
        item(i * conversations + c, c, shards) for i in range(per) for c in range(conversations)
    ]
    for start in range(0, len(items), 5):
        await store(inbox, items[start : start + 5])
    return items


@dataclass
class Shape:
    """What a crashed old shard left per partition: entries read (pending) and a recorded
    batch (the first read batch, recorded in reverse: out of entry order)."""

    pending: set[int] = field(default_factory=set)
    recorded: dict[int, list[int]] = field(default_factory=dict)  # partition -> n in order


async def crash_shards(inbox: Inbox, shards: int, read: int = 4, rest: int = 3) -> Shape:
    """Per partition, as a shard that crashed: read `read` entries and record them in
    reverse (as a shard does before publishing a reordered batch), then read `rest` more
    (pending, unrecorded: held or in hand); the rest is unread."""
    shape = Shape()
    for partition in range(shards):
        batch = await inbox.read(partition, read, 50)
        more = await inbox.read(partition, rest, 50)
        if batch:
            await inbox.record_order(partition, [s.entry_id for s in reversed(batch)])
            shape.recorded[partition] = [number(s) for s in reversed(batch)]
        shape.pending |= {number(s) for s in batch + more}
    return shape


@dataclass
class Reading:
    """What a new shard of each partition takes: the recorded batch, then the rest."""

    recorded: dict[int, list[StoredItem]]
    taken: dict[int, list[StoredItem]]  # recorded batch first, then read order, no repeat


async def read_back(inbox: Inbox, shards: int) -> Reading:
    """Read every partition as a restarted shard would: its recorded batch first (by
    `entries`), then `read` until nothing is left, skipping the recorded ids."""
    recorded: dict[int, list[StoredItem]] = {}
    taken: dict[int, list[StoredItem]] = {}
    for partition in range(shards):
        ids = await inbox.recorded_order(partition)
        recorded[partition] = await inbox.entries(partition, ids) if ids else []
        skip = {s.entry_id for s in recorded[partition]}
        got = list(recorded[partition])
        while batch := await inbox.read(partition, 50, 30):
            got += [s for s in batch if s.entry_id not in skip]
        taken[partition] = got
    return Reading(recorded, taken)


def expected_order(
    items: Sequence[InboxItem], shape: Shape, shards_before: int
) -> dict[str, list[int]]:
    """Each conversation's n in the order a shard takes them: its entries of its old
    partition's recorded batch (in recorded order), then the others in append order."""
    first: dict[str, list[int]] = {}
    for partition in range(shards_before):
        for n in shape.recorded.get(partition, []):
            first.setdefault(items[n].conversation_key, []).append(n)
    order: dict[str, list[int]] = {key: list(ns) for key, ns in first.items()}
    for it in items:
        n = int(it.delivery_id[1:])
        if n not in first.get(it.conversation_key, []):
            order.setdefault(it.conversation_key, []).append(n)
    return order


def check_moved(
    items: Sequence[InboxItem], shape: Shape, before: int, after: int, reading: Reading
) -> None:
    """Every item exactly once, in its new partition (the item saying so), each
    conversation in its order, pending ones as redeliveries, recorded ones recorded."""
    taken = [s for p in range(after) for s in reading.taken[p]]
    assert sorted(number(s) for s in taken) == list(range(len(items)))
    for partition in range(after):
        for s in reading.taken[partition]:
            assert partition_of(s.item.conversation_key, after) == partition
            assert s.item.partition == partition
    order: dict[str, list[int]] = {}
    for partition in range(after):
        for s in reading.taken[partition]:
            order.setdefault(s.item.conversation_key, []).append(number(s))
    assert order == expected_order(items, shape, before)
    for s in taken:
        assert (s.deliveries > 1) == (number(s) in shape.pending), number(s)
    # Each new partition's record: the old records' entries now in it, each old record's
    # in its recorded order (records of several old partitions are of disjoint
    # conversations: concatenated in any order).
    for partition in range(after):
        got = [number(s) for s in reading.recorded[partition]]
        for old in range(before):
            want = [
                n
                for n in shape.recorded.get(old, [])
                if partition_of(items[n].conversation_key, after) == partition
            ]
            assert [n for n in got if n in want] == want
        assert sorted(got) == sorted(
            n
            for ns in shape.recorded.values()
            for n in ns
            if partition_of(items[n].conversation_key, after) == partition
        )


@pytest.mark.parametrize(("before", "after"), [(4, 2), (2, 4), (3, 5)])
async def test_reshard_moves_pending_unread_and_recorded_entries_exactly_once_in_order(
    stores: Stores, before: int, after: int
) -> None:
    """A backlog of a crashed service (recorded batches, pending and unread entries) under
    one count, resharded to another: a new shard of each new partition republishes the
    recorded entries first, in their order, then takes every other entry once, in each
    conversation's order; the record says the new count; old partitions are empty."""
    inbox = stores.new_inbox()
    items = await fill(inbox, before)
    shape = await crash_shards(inbox, before)
    layout = stores.new_layout()
    await layout.set_layout(InboxLayout(shards=before))
    report = await reshard(layout, after, batch=7)
    assert report.moved > 0
    assert report.recorded_moved > 0
    assert await layout.layout() == InboxLayout(shards=after)
    assert sum((await layout.occupied()).values()) == len(items)
    assert set(await layout.occupied()) <= set(range(after))
    restarted = stores.new_inbox()
    check_moved(items, shape, before, after, await read_back(restarted, after))
    for gone in range(after, before):
        assert await restarted.backlog(gone) == 0
        assert await restarted.recorded_order(gone) == []


async def test_a_second_reshard_to_the_same_count_moves_nothing(stores: Stores) -> None:
    """Run again once done (or on an inbox already in place): nothing moves."""
    inbox = stores.new_inbox()
    await fill(inbox, 2)
    await crash_shards(inbox, 2)
    layout = stores.new_layout()
    assert (await reshard(layout, 4)).moved > 0
    again = await reshard(stores.new_layout(), 4)
    assert (again.moved, again.before) == (0, 4)


class KilledAt(Exception):
    """The injected end of a reshard process."""


class DyingLayoutStore:
    """The InboxLayoutStore port over a real one that dies (raises) at its `fail_at`-th
    move, before the store sees it, as a reshard killed between two atomic steps; or at
    the final layout write (`fail_at` 0)."""

    def __init__(self, inner: InboxLayoutStore, fail_at: int) -> None:
        self.inner = inner
        self.fail_at = fail_at
        self.moves = 0

    async def layout(self) -> InboxLayout | None:
        return await self.inner.layout()

    async def set_layout(self, layout: InboxLayout) -> None:
        if self.fail_at == 0 and layout.resharding_to is None:
            raise KilledAt("before the layout record")
        await self.inner.set_layout(layout)

    async def occupied(self) -> dict[int, int]:
        return await self.inner.occupied()

    async def scan(self, partition: int, after: str | None, count: int) -> list[StoredItem]:
        return await self.inner.scan(partition, after, count)

    async def recorded(self, partition: int) -> list[StoredItem]:
        return await self.inner.recorded(partition)

    async def fence(self, partitions: Sequence[int]) -> None:
        await self.inner.fence(partitions)

    async def move(self, partition: int, moves: Sequence[Move], *, recorded: bool) -> int:
        self.moves += 1
        if self.moves == self.fail_at:
            raise KilledAt(f"at move {self.moves}")
        return await self.inner.move(partition, moves, recorded=recorded)

    async def drop_empty(self, partition: int) -> bool:
        return await self.inner.drop_empty(partition)

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.parametrize("fail_at", [1, 2, 5, 0], ids=["first-move", "recorded", "mid", "last"])
async def test_a_reshard_killed_part_way_refuses_the_start_and_finishes_when_run_again(
    stores: Stores, fail_at: int
) -> None:
    """Killed at a move (the recorded batches' or the others') or before its last write:
    the start refuses (`did not finish`) under either count, and running it again ends
    with every entry once, in order, recorded entries recorded."""
    inbox = stores.new_inbox()
    items = await fill(inbox, 2)
    shape = await crash_shards(inbox, 2)
    await stores.new_layout().set_layout(InboxLayout(shards=2))
    dying = DyingLayoutStore(stores.new_layout(), fail_at)
    with pytest.raises(KilledAt):
        await reshard(dying, 4, batch=5)
    assert (await stores.new_layout().layout()) == InboxLayout(shards=2, resharding_to=4)
    for shards in (2, 4):
        refused = await reconcile(stores.new_layout(), shards)
        assert refused is not None
        assert "did not finish" in refused
    await reshard(stores.new_layout(), 4, batch=5)
    assert await reconcile(stores.new_layout(), 4) is None
    check_moved(items, shape, 2, 4, await read_back(stores.new_inbox(), 4))


@pytest.mark.parametrize("fail_at", [2, 5], ids=["recorded", "mid"])
async def test_a_reshard_killed_part_way_and_run_again_with_another_count_keeps_redeliveries(
    stores: Stores, fail_at: int
) -> None:
    """Killed on the way from 2 to 4, then run to 8: an entry moved once while pending
    moves again as a redelivery (it keeps out of the reorder window, as after a restart),
    and every entry is once in its partition for 8, in order, recorded ones recorded."""
    inbox = stores.new_inbox()
    items = await fill(inbox, 2)
    shape = await crash_shards(inbox, 2)
    await stores.new_layout().set_layout(InboxLayout(shards=2))
    with pytest.raises(KilledAt):
        await reshard(DyingLayoutStore(stores.new_layout(), fail_at), 4, batch=5)
    await reshard(stores.new_layout(), 8, batch=5)
    assert await reconcile(stores.new_layout(), 8) is None
    check_moved(items, shape, 2, 8, await read_back(stores.new_inbox(), 8))


async def test_a_reshard_fences_a_shard_still_running(stores: Stores) -> None:
    """A shard left running somewhere (its pid file elsewhere) had claimed partition 0: the
    reshard bumps every partition's epoch first, so that shard's next read and commit
    are refused and it can take nothing from the moved layout."""
    inbox = stores.new_inbox()
    await fill(inbox, 2)
    live = stores.new_inbox()
    await live.claim(0)
    await reshard(stores.new_layout(), 4)
    with pytest.raises(Fenced):
        await live.read(0, 10, 20)
    with pytest.raises(Fenced):
        await live.commit(0, [], StateWrite())


async def test_a_fresh_inbox_records_the_count_and_starts(stores: Stores) -> None:
    """No record, no entry: the start writes WA_SHARDS and goes on, and again next time."""
    layout = stores.new_layout()
    assert await layout.layout() is None
    assert await reconcile(layout, 4) is None
    assert await layout.layout() == InboxLayout(shards=4)
    assert await reconcile(stores.new_layout(), 4) is None


async def test_another_count_with_a_backlog_is_refused_naming_the_waiting_entries(
    stores: Stores,
) -> None:
    """Entries under 4 partitions, WA_SHARDS=2: refused with the stored count, the entries
    per partition and both ways out; the record is left as it was; with 4 it starts."""
    inbox = stores.new_inbox()
    await fill(inbox, 4, conversations=8, per=2)
    layout = stores.new_layout()
    assert await reconcile(layout, 4) is None
    waiting = await layout.occupied()
    refused = await reconcile(layout, 2)
    assert refused is not None
    assert "WA_SHARDS=4 (the inbox's stored layout)" in refused
    for partition, entries in waiting.items():
        assert f"partition {partition}: {entries}" in refused
    assert "until wa_inbox_backlog is 0" in refused
    assert "python -m cluster reshard --shards 2" in refused
    assert await layout.layout() == InboxLayout(shards=4)
    assert await reconcile(layout, 4) is None


async def test_another_count_on_an_empty_inbox_is_recorded(stores: Stores) -> None:
    """Drained (every entry committed): the new count is written, nothing to move."""
    inbox = stores.new_inbox()
    await fill(inbox, 4, conversations=4, per=1)
    layout = stores.new_layout()
    assert await reconcile(layout, 4) is None
    for partition in range(4):
        batch = await inbox.read(partition, 50, 30)
        await inbox.commit(partition, [s.entry_id for s in batch], StateWrite())
    assert await reconcile(layout, 2) is None
    assert await layout.layout() == InboxLayout(shards=2)


@pytest.mark.parametrize(("written", "started"), [(4, 2), (2, 4)])
async def test_entries_without_a_record_placed_for_another_count_are_refused(
    stores: Stores, written: int, started: int
) -> None:
    """An inbox written before the record existed: entries beyond WA_SHARDS (4 -> 2), or
    below it but where WA_SHARDS would not put them (2 -> 4), refuse the start; no
    record is written; under the count they were written for it starts."""
    inbox = stores.new_inbox()
    await fill(inbox, written, conversations=16, per=1)
    layout = stores.new_layout()
    refused = await reconcile(layout, started)
    assert refused is not None
    assert "no stored layout yet" in refused
    assert await layout.layout() is None
    assert await reconcile(layout, written) is None
    assert await layout.layout() == InboxLayout(shards=written)


async def test_the_unowned_partition_is_neither_counted_nor_moved(stores: Stores) -> None:
    """Partition -1 (numbers nobody owns, read by no shard) stays whole through a reshard
    and never makes the start refuse."""
    inbox = stores.new_inbox()
    held = inbox_item(900, -1, conversation="~unowned|999")
    await store(inbox, [held, item(1, 1, 4), item(2, 2, 4)])
    layout = stores.new_layout()
    assert -1 not in await layout.occupied()
    await reshard(layout, 2)
    assert await inbox.backlog(-1) == 1
    assert await reconcile(layout, 2) is None


async def test_a_store_that_cannot_be_reached_fails_transiently() -> None:
    """Every failure of the store is a TransientError (the start logs or refuses it)."""
    closed = RedisLayoutStore("redis://127.0.0.1:1/0", "watest:none:")
    try:
        with pytest.raises(TransientError):
            await closed.layout()
    finally:
        await closed.close()
