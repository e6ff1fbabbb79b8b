"""Batch bounds (issue 9, point 4): a batch is bounded by bytes as well as by count, and
entries read again after a crash are retried in batches that start at one entry, so a
batch that kills its process is isolated by the restarts instead of crash-looping."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from actors.shard import ConversationShard
from actors.shard_batches import BatchCutter, entry_bytes
from actors.shard_metrics import ShardStats
from adapters.outbox import OutboxPublisher, read_outbox
from adapters.sqlite_inbox import SqliteInbox
from models.dead_letter import DeadLetter
from models.event import NormalizedEvent
from models.inbox import InboxItem, StoredItem
from tests.support.configs import shard_config, sqlite_inbox
from tests.support.events import check_streams, inbox_item, item_events, store
from tests.support.shards import drain

if TYPE_CHECKING:
    from adapters.ports import Inbox, Rejection

MIB = 1024 * 1024


def large(n: int, size: int) -> InboxItem:
    """Item n: a text message of `size` bytes."""
    item = inbox_item(n)
    raw = {**item.item, "text": {"body": "x" * size}}
    return item.model_copy(update={"item": raw})


def event_ids(path: Path) -> list[str]:
    """The items' event ids in publish order, once c1's stream is checked: sequences 1..n,
    its `conversation.created` first (every test here publishes c1, new to its store)."""
    events = [row["event"] for row in read_outbox(path, limit=10_000)]
    check_streams(events, {"c1": "customer"})
    return [e["event_id"] for e in item_events(events)]


def entries(sizes: list[int]) -> list[int]:
    """The entries per batch of `drain`'s event counts: the first batch of a new store
    also published c1's `conversation.created`."""
    return [sizes[0] - 1, *sizes[1:]]


async def test_a_batch_is_bounded_by_bytes_and_nothing_read_is_lost_or_reordered(
    tmp_path: Path,
) -> None:
    """Six 1.5 MiB entries fit one count-bounded read but not the default byte bound: they
    go in several batches, every one published once, in append order."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    await store(inbox, [large(n, 3 * MIB // 2) for n in range(1, 7)])
    config = shard_config(block_ms=10, max_item_age_s=None)
    assert config.batch_size >= 6
    sizes = entries(await drain(ConversationShard(config, inbox, outbox, ShardStats())))
    assert len(sizes) > 1, f"9 MiB in one batch: {sizes}"
    assert sum(sizes) == 6
    assert max(sizes) * 3 * MIB // 2 <= max(config.max_batch_bytes, 3 * MIB // 2)
    assert event_ids(tmp_path / "outbox.db") == [f"wamid.{n}" for n in range(1, 7)]
    assert await inbox.backlog(0) == 0
    await inbox.close()
    await outbox.close()


async def test_an_entry_larger_than_the_byte_bound_is_a_batch_of_its_own(tmp_path: Path) -> None:
    """The bound never blocks: an entry above it is published alone."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    await store(inbox, [inbox_item(1), large(2, 64 * 1024), inbox_item(3)])
    config = shard_config(block_ms=10, max_batch_bytes=16 * 1024, max_item_age_s=None)
    sizes = entries(await drain(ConversationShard(config, inbox, outbox, ShardStats())))
    assert sizes == [1, 1, 1]
    assert event_ids(tmp_path / "outbox.db") == ["wamid.1", "wamid.2", "wamid.3"]
    await inbox.close()
    await outbox.close()


async def test_redelivered_entries_are_retried_in_batches_growing_from_one(
    tmp_path: Path,
) -> None:
    """A crashed reader left ten entries uncommitted: its successor publishes them in
    batches of 1, 2, 4, ... (then new entries at the read size reached, not from one
    again), in order."""
    path = tmp_path / "inbox.db"
    crashed = sqlite_inbox(path)
    await store(crashed, [inbox_item(n) for n in range(1, 11)])
    assert len(await crashed.read(0, 100, 10)) == 10  # read, never committed
    inbox = sqlite_inbox(path)
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    config = shard_config(block_ms=10, max_item_age_s=None)
    shard = ConversationShard(config, inbox, outbox, ShardStats())
    assert entries(await drain(shard)) == [1, 2, 4, 3]
    await store(inbox, [inbox_item(n) for n in range(11, 21)])
    assert await drain(shard) == [8, 2]
    assert event_ids(tmp_path / "outbox.db") == [f"wamid.{n}" for n in range(1, 21)]
    for closable in (crashed, inbox, outbox):
        await closable.close()


class ProcessKilled(BaseException):
    """Stands for the process dying mid-publish (OOM, a segfault in a native library):
    nothing in the process survives it, so no `except Exception` may catch it."""


class KillingPublisher:
    """The Publisher port on the outbox; a batch holding the `killer` event id kills it."""

    def __init__(self, inner: OutboxPublisher, killer: str) -> None:
        self.inner = inner
        self.killer = killer
        self.fatal: list[int] = []  # the size of every batch that killed the process

    async def publish(self, events: Sequence[NormalizedEvent]) -> list[Rejection]:
        if any(e.event_id == self.killer for e in events):
            self.fatal.append(len(events))
            raise ProcessKilled
        return await self.inner.publish(events)

    async def publish_dead(self, letters: Sequence[DeadLetter]) -> list[str]:
        """The inner outbox's dead letters."""
        return await self.inner.publish_dead(letters)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


async def test_a_batch_that_kills_its_process_is_isolated_by_the_restarts(
    tmp_path: Path,
) -> None:
    """Ten entries, the fifth kills the process whenever it is published: after a few
    restarts it is alone in its batch, and every entry before it is published once.
    (The first process reads 1, 2, then 4 entries: the fatal batch is [4, 5, 6, 7]; the
    first batch, wamid.1, also carries c1's `conversation.created`.)"""
    path = tmp_path / "inbox.db"
    first = sqlite_inbox(path)
    await store(first, [inbox_item(n) for n in range(1, 11)])
    await first.close()
    publisher = KillingPublisher(OutboxPublisher(tmp_path / "outbox.db"), killer="wamid.5")
    for _restart in range(12):
        inbox = sqlite_inbox(path)
        config = shard_config(block_ms=10, max_item_age_s=None)
        shard = ConversationShard(config, inbox, publisher, ShardStats())
        try:
            await drain(shard)
        except ProcessKilled:
            pass
        finally:
            await inbox.close()
        if publisher.fatal[-1] == 1:
            break
    assert publisher.fatal[0] == 4
    assert publisher.fatal[-1] == 1, f"never isolated: {publisher.fatal}"
    assert len(publisher.fatal) <= 6
    assert event_ids(tmp_path / "outbox.db") == [f"wamid.{n}" for n in range(1, 5)]
    await publisher.close()


class ReadSpy:
    """The Inbox port on a SqliteInbox, recording each read: (count asked, entries got,
    bytes of the largest entry got)."""

    def __init__(self, inner: SqliteInbox) -> None:
        self.inner = inner
        self.reads: list[tuple[int, int, int]] = []

    async def read(self, partition: int, count: int, block_ms: int) -> list[StoredItem]:
        got = await self.inner.read(partition, count, block_ms)
        self.reads.append((count, len(got), max((entry_bytes(s) for s in got), default=0)))
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def within_bytes(reads: list[tuple[int, int, int]], max_bytes: int) -> bool:
    """Every read asked for no more entries than fit `max_bytes` at the size of the
    largest entry seen before it (the first read, with nothing seen, asks for one)."""
    largest = 0
    for asked, _got, size in reads:
        if largest == 0 and asked != 1:
            return False
        if largest and asked > 1 and asked * largest > max_bytes:
            return False
        largest = size or largest
    return True


async def test_a_restarted_process_reads_one_entry_first_not_a_full_batch(tmp_path: Path) -> None:
    """A reader died holding forty 1 MiB entries (its read is what ran out of memory):
    the next process does not read them all again at once; it reads one, then as many as
    the sizes it has seen allow within the byte bound, and publishes all in order."""
    path = tmp_path / "inbox.db"
    crashed = sqlite_inbox(path)
    await store(crashed, [large(n, MIB) for n in range(1, 41)])
    assert len(await crashed.read(0, 256, 10)) == 40  # read, never committed
    spy = ReadSpy(sqlite_inbox(path))
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    config = shard_config(block_ms=10, max_item_age_s=None)
    await drain(ConversationShard(config, cast("Inbox", spy), outbox, ShardStats()))
    assert spy.reads[0][0] == 1, spy.reads[:3]
    assert within_bytes(spy.reads, config.max_batch_bytes), spy.reads
    assert event_ids(tmp_path / "outbox.db") == [f"wamid.{n}" for n in range(1, 41)]
    for closable in (crashed, spy.inner, outbox):
        await closable.close()


async def test_a_new_process_grows_its_reads_from_one_as_the_sizes_seen_allow(
    tmp_path: Path,
) -> None:
    """New entries in a new process: reads of 1, 2, 4, ... while entries are small, and
    never more than fit the byte bound at the largest entry seen; nothing lost or reordered."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    await store(inbox, [inbox_item(n) for n in range(1, 21)])
    await store(inbox, [large(n, 3 * MIB // 2) for n in range(21, 27)])
    await store(inbox, [inbox_item(n) for n in range(27, 31)])
    spy = ReadSpy(inbox)
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    config = shard_config(block_ms=10, max_item_age_s=None)
    await drain(ConversationShard(config, cast("Inbox", spy), outbox, ShardStats()))
    assert [asked for asked, _, _ in spy.reads[:4]] == [1, 2, 4, 8]
    assert within_bytes(spy.reads, config.max_batch_bytes), spy.reads
    assert event_ids(tmp_path / "outbox.db") == [f"wamid.{n}" for n in range(1, 31)]
    await inbox.close()
    await outbox.close()


def stored(n: int, deliveries: int) -> StoredItem:
    return StoredItem(entry_id=str(n), item=inbox_item(n), deliveries=deliveries)


def test_redelivered_entries_start_the_reads_at_one_again() -> None:
    """Mid-process, a read that returns redelivered entries (a failed read's, handed over
    again) sends the read count back to one; it grows again as batches commit."""
    cutter = BatchCutter(batch_size=256, max_bytes=4 * MIB)
    counts = []
    for n in range(1, 6):  # small new entries: the count grows
        counts.append(cutter.read_count())
        entries = [stored(n * 100 + i, 1) for i in range(cutter.read_count())]
        cutter.hold(entries)
        while batch := cutter.take():
            cutter.committed(batch)
    assert counts == [1, 2, 4, 8, 16]
    cutter.hold([stored(900 + i, 2) for i in range(cutter.read_count())])
    assert cutter.read_count() == 1
    assert len(cutter.take()) == 1


async def test_the_loop_does_not_linger_after_a_slow_start_read_that_came_back_full(
    tmp_path: Path,
) -> None:
    """The linger after a short read (so that the next batch is larger) is not spent
    while a new process's reads grow: reads of 1, 2 and 4 that came back full are
    followed at once by the next, so seven entries go well within a 30 s linger."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    await store(inbox, [inbox_item(n) for n in range(1, 8)])
    stats = ShardStats()
    config = shard_config(block_ms=10, linger_ms=30_000.0, max_item_age_s=None)
    shard = ConversationShard(config, inbox, outbox, stats)
    task = asyncio.create_task(shard.run())
    # 8 events: the seven messages and c1's `conversation.created`.
    await asyncio.wait_for(stats.wait_until(lambda s: s.published >= 8), 5.0)
    shard.stop()
    await asyncio.wait_for(task, 5.0)
    assert stats.batches == 3
    assert event_ids(tmp_path / "outbox.db") == [f"wamid.{n}" for n in range(1, 8)]
    await inbox.close()
    await outbox.close()
