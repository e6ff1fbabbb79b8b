"""Batch bounds (issue 9, point 4): a batch is bounded by bytes as well as by count, and
entries read again after a crash are retried in batches that start at one entry, so a
batch that kills its process is isolated by the restarts instead of crash-looping."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from actors.shard import ConversationShard
from actors.shard_metrics import ShardStats
from adapters.outbox import OutboxPublisher, read_outbox
from models.event import NormalizedEvent
from models.inbox import InboxItem
from tests.support.configs import shard_config, sqlite_inbox
from tests.support.events import inbox_item, store
from tests.support.shards import drain

if TYPE_CHECKING:
    from adapters.ports import Rejection

MIB = 1024 * 1024


def large(n: int, size: int) -> InboxItem:
    """Item n: a text message of `size` bytes."""
    item = inbox_item(n)
    raw = {**item.item, "text": {"body": "x" * size}}
    return item.model_copy(update={"item": raw})


def event_ids(path: Path) -> list[str]:
    return [row["event"]["event_id"] for row in read_outbox(path)]


async def test_a_batch_is_bounded_by_bytes_and_nothing_read_is_lost_or_reordered(
    tmp_path: Path,
) -> None:
    """Six 1.5 MiB entries fit one count-bounded read but not the default byte bound: they
    go in several batches, every one published once, in append order."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    await store(inbox, [large(n, 3 * MIB // 2) for n in range(1, 7)])
    config = shard_config(block_ms=10)
    assert config.batch_size >= 6
    sizes = await drain(ConversationShard(config, inbox, outbox, ShardStats()))
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
    config = shard_config(block_ms=10, max_batch_bytes=16 * 1024)
    sizes = await drain(ConversationShard(config, inbox, outbox, ShardStats()))
    assert sizes == [1, 1, 1]
    assert event_ids(tmp_path / "outbox.db") == ["wamid.1", "wamid.2", "wamid.3"]
    await inbox.close()
    await outbox.close()


async def test_redelivered_entries_are_retried_in_batches_growing_from_one(
    tmp_path: Path,
) -> None:
    """A crashed reader left ten entries uncommitted: its successor publishes them in
    batches of 1, 2, 4, ... (then new entries at full size again), in order."""
    path = tmp_path / "inbox.db"
    crashed = sqlite_inbox(path)
    await store(crashed, [inbox_item(n) for n in range(1, 11)])
    assert len(await crashed.read(0, 100, 10)) == 10  # read, never committed
    inbox = sqlite_inbox(path)
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    shard = ConversationShard(shard_config(block_ms=10), inbox, outbox, ShardStats())
    assert await drain(shard) == [1, 2, 4, 3]
    await store(inbox, [inbox_item(n) for n in range(11, 21)])
    assert await drain(shard) == [10]
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

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


async def test_a_batch_that_kills_its_process_is_isolated_by_the_restarts(
    tmp_path: Path,
) -> None:
    """Ten entries, the fifth kills the process whenever it is published: after a few
    restarts it is alone in its batch, and every entry before it is published once."""
    path = tmp_path / "inbox.db"
    first = sqlite_inbox(path)
    await store(first, [inbox_item(n) for n in range(1, 11)])
    await first.close()
    publisher = KillingPublisher(OutboxPublisher(tmp_path / "outbox.db"), killer="wamid.5")
    for _restart in range(12):
        inbox = sqlite_inbox(path)
        shard = ConversationShard(shard_config(block_ms=10), inbox, publisher, ShardStats())
        try:
            await drain(shard)
        except ProcessKilled:
            pass
        finally:
            await inbox.close()
        if publisher.fatal[-1] == 1:
            break
    assert publisher.fatal[0] == 10
    assert publisher.fatal[-1] == 1, f"never isolated: {publisher.fatal}"
    assert len(publisher.fatal) <= 6
    assert event_ids(tmp_path / "outbox.db") == [f"wamid.{n}" for n in range(1, 5)]
    await publisher.close()
