"""The shard's logic on the embedded adapters: order, sequences, retries, redelivery.

Tests that run the loop await the shard's in-memory metrics (ShardStats.wait_until), never
a sleep; each wait is bounded, so a shard that does not get there fails the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from actors.shard import ConversationShard
from actors.shard_metrics import ShardStats
from adapters.errors import TransientError
from adapters.outbox import OutboxPublisher, read_outbox
from adapters.ports import Rejection
from models.conversation import ConversationKind
from models.dead_letter import DeadLetter
from models.dedup import item_key
from models.event import NormalizedEvent
from tests.support.configs import shard_config, sqlite_inbox
from tests.support.events import check_streams, inbox_item, is_state_event, store
from tests.support.shards import drain

WAIT_S = 5.0
CREATED = "conversation.created"


class FlakyPublisher:
    """A Publisher (the port, not a patch) whose broker refuses the first `failures` calls."""

    def __init__(self, inner: OutboxPublisher, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.calls = 0

    async def publish(self, events: Sequence[NormalizedEvent]) -> list[Rejection]:
        self.calls += 1
        if self.calls <= self.failures:
            raise TransientError("broker unavailable")
        return await self.inner.publish(events)

    async def publish_dead(self, letters: Sequence[DeadLetter]) -> list[str]:
        """The inner outbox's dead letters."""
        return await self.inner.publish_dead(letters)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


class ProcessKilled(BaseException):
    """Stands for the process dying: nothing in it survives, no `except Exception` catches it."""


class DyingPublisher(FlakyPublisher):
    """A publisher whose process dies right after its `dies_on_call`-th publish succeeded
    (every event confirmed, nothing committed yet)."""

    def __init__(self, inner: OutboxPublisher, dies_on_call: int) -> None:
        super().__init__(inner, failures=0)
        self.dies_on_call = dies_on_call

    async def publish(self, events: Sequence[NormalizedEvent]) -> list[Rejection]:
        self.calls += 1
        rejected = await self.inner.publish(events)
        if self.calls == self.dies_on_call:
            raise ProcessKilled
        return rejected


class BrokenPublisher(FlakyPublisher):
    """A publisher with a bug (not an adapter error) on its first call."""

    async def publish(self, events: Sequence[NormalizedEvent]) -> list[Rejection]:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("a bug, not an outage")
        return await self.inner.publish(events)


def published(path: Path) -> list[tuple[str, int, str]]:
    """(conversation, sequence, what) per event published: `what` is an item's event id,
    or `conversation.<type>` for a state event."""
    return [
        (e["conversation_id"], e["sequence"], label(e))
        for e in (r["event"] for r in read_outbox(path))
    ]


def label(event: dict[str, object]) -> str:
    return f"conversation.{event['type']}" if is_state_event(event) else str(event["event_id"])


def check_published(path: Path, *conversations: str) -> None:
    """The outbox's streams, each of a customer conversation new to the store."""
    check_streams([r["event"] for r in read_outbox(path)], dict.fromkeys(conversations, "customer"))


async def test_sequences_increase_per_conversation_in_append_order(tmp_path: Path) -> None:
    """Interleaved conversations: each gets 1, 2, 3... in the order its events were
    published: its `conversation.created` first, then its items in the order they arrived."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    stats = ShardStats()
    await store(inbox, [inbox_item(n, conversation="ab"[n % 2]) for n in range(6)])
    config = shard_config(partition=0, batch_size=4, block_ms=10, max_item_age_s=None)
    shard = ConversationShard(config, inbox, outbox, stats)
    # A new process's reads grow from one: entries 1, 2, 3; a's and b's first batches
    # also publish the conversation's `conversation.created`.
    assert await drain(shard) == [1 + 1, 2 + 1, 3]
    assert published(tmp_path / "outbox.db") == [
        ("a", 1, CREATED),
        ("a", 2, "wamid.0"),
        ("b", 1, CREATED),
        ("b", 2, "wamid.1"),
        ("a", 3, "wamid.2"),
        ("b", 3, "wamid.3"),
        ("a", 4, "wamid.4"),
        ("b", 4, "wamid.5"),
    ]
    check_published(tmp_path / "outbox.db", "a", "b")
    assert await inbox.backlog(0) == 0
    assert (stats.batches, stats.published, stats.last_batch) == (3, 8, 3)
    assert stats.last_publish_s > 0  # exported as wa_shard_publish_duration_seconds
    await inbox.close()
    await outbox.close()


async def test_sequences_continue_after_a_restart(tmp_path: Path) -> None:
    """A new shard process continues each conversation's numbering (and record: no second
    `conversation.created`) from the store."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    config = shard_config(partition=0, block_ms=10, max_item_age_s=None)
    await store(inbox, [inbox_item(1), inbox_item(2)])
    await drain(ConversationShard(config, inbox, outbox))
    await store(inbox, [inbox_item(3)])
    fresh_inbox = sqlite_inbox(tmp_path / "inbox.db")
    await drain(ConversationShard(config, fresh_inbox, outbox))
    assert published(tmp_path / "outbox.db") == [
        ("c1", 1, CREATED),
        ("c1", 2, "wamid.1"),
        ("c1", 3, "wamid.2"),
        ("c1", 4, "wamid.3"),
    ]
    check_published(tmp_path / "outbox.db", "c1")
    for closable in (inbox, fresh_inbox, outbox):
        await closable.close()


async def test_a_broker_outage_delays_but_loses_and_reorders_nothing(tmp_path: Path) -> None:
    """Publish fails twice: the same batch is retried; then published once, then committed."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    flaky = FlakyPublisher(outbox, failures=2)
    stats = ShardStats()
    config = shard_config(partition=0, block_ms=10, max_item_age_s=None)
    shard = ConversationShard(config, inbox, flaky, stats)
    await store(inbox, [inbox_item(n) for n in range(1, 4)])
    for _ in range(2):
        try:
            await shard.run_once()
        except TransientError:
            pass
        else:
            raise AssertionError("the outage should surface to the run loop")
    assert await inbox.backlog(0) == 3
    # The batch in hand first (wamid.1 and c1's `conversation.created`), then the rest.
    assert await drain(shard) == [1 + 1, 2]
    assert published(tmp_path / "outbox.db") == [
        ("c1", 1, CREATED),
        ("c1", 2, "wamid.1"),
        ("c1", 3, "wamid.2"),
        ("c1", 4, "wamid.3"),
    ]
    check_published(tmp_path / "outbox.db", "c1")
    assert (stats.publish_failures, stats.batches) == (2, 2)
    assert await inbox.backlog(0) == 0
    await inbox.close()
    await outbox.close()


async def test_a_crash_before_commit_republishes_with_the_same_sequences(tmp_path: Path) -> None:
    """Published but not committed (process died): the redelivery repeats the same events,
    a new conversation's `conversation.created` included (same id, same sequence), and
    publishes no other."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    # wamid.1 is committed; the batch of wamid.2 (c1) and wamid.3 (new conversation c2)
    # is published, then the process dies before its commit.
    await store(inbox, [inbox_item(1), inbox_item(2), inbox_item(3, conversation="c2")])
    config = shard_config(partition=0, block_ms=10, max_item_age_s=None)
    crashed = ConversationShard(config, inbox, DyingPublisher(outbox, dies_on_call=2))
    assert await crashed.run_once() == 1 + 1
    with pytest.raises(ProcessKilled):
        await crashed.run_once()
    before = [
        (r["event"]["event_id"], r["event"]["sequence"])
        for r in read_outbox(tmp_path / "outbox.db")
    ]
    assert published(tmp_path / "outbox.db") == [
        ("c1", 1, CREATED),
        ("c1", 2, "wamid.1"),
        ("c1", 3, "wamid.2"),
        ("c2", 1, CREATED),
        ("c2", 2, "wamid.3"),
    ]
    stats = ShardStats()
    restarted = ConversationShard(config, sqlite_inbox(tmp_path / "inbox.db"), outbox, stats)
    # Redelivered entries go in batches growing from one (tests/unit/test_shard_batches.py).
    assert await drain(restarted) == [1, 1 + 1]
    rows = list(read_outbox(tmp_path / "outbox.db"))
    assert [(r["event"]["event_id"], r["event"]["sequence"]) for r in rows] == [
        *before,
        *before[2:],
    ]
    assert stats.redelivered == 2
    assert await inbox.backlog(0) == 0
    await inbox.close()
    await outbox.close()


async def test_an_already_published_item_is_skipped_and_takes_no_sequence(tmp_path: Path) -> None:
    """A second delivery repeating an event_id: committed, counted, not published, and the
    conversation's next event gets the next number; an all-duplicate batch is a batch too."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    stats = ShardStats()
    config = shard_config(partition=0, block_ms=10, max_item_age_s=None)
    shard = ConversationShard(config, inbox, outbox, stats)
    await store(inbox, [inbox_item(1)])
    assert await shard.run_once() == 1 + 1  # wamid.1 and c1's `conversation.created`
    await store(inbox, [inbox_item(1)])
    assert await shard.run_once() == 0
    assert (stats.duplicates, stats.batches, stats.last_batch) == (1, 2, 0)
    await store(inbox, [inbox_item(1), inbox_item(2), inbox_item(2)])
    # Reads of two: wamid.1 (a duplicate) and wamid.2, then wamid.2 again (a duplicate).
    assert [await shard.run_once(), await shard.run_once()] == [1, 0]
    assert published(tmp_path / "outbox.db") == [
        ("c1", 1, CREATED),
        ("c1", 2, "wamid.1"),
        ("c1", 3, "wamid.2"),
    ]
    check_published(tmp_path / "outbox.db", "c1")
    assert stats.duplicates == 3
    assert await inbox.seen([item_key("acme", "wamid.1"), item_key("acme", "wamid.2")]) == {
        item_key("acme", "wamid.1"),
        item_key("acme", "wamid.2"),
    }
    assert await inbox.backlog(0) == 0
    await inbox.close()
    await outbox.close()


async def test_an_item_older_than_the_maximum_age_is_published_as_a_replay(
    tmp_path: Path,
) -> None:
    """Meta time 2025-06-15, received 2026-01-01: past a 7-day limit it is routed
    `<tenant>.replay.<type>` and counted; without a limit it keeps its category. A replay
    takes a sequence but creates no conversation (no state event escapes the quarantine):
    the first item that is not a replay creates it, numbered after the replay."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    stats = ShardStats()
    await store(inbox, [inbox_item(1)])
    await ConversationShard(shard_config(partition=0, block_ms=10), inbox, outbox, stats).run_once()
    await store(inbox, [inbox_item(2)])
    unlimited = shard_config(partition=0, block_ms=10, max_item_age_s=None)
    await ConversationShard(unlimited, inbox, outbox).run_once()
    rows = list(read_outbox(tmp_path / "outbox.db"))
    assert [(r["routing_key"], r["event"]["sequence"]) for r in rows] == [
        ("acme.replay.text", 1),
        ("acme.conversation.created", 2),
        ("acme.message.text", 3),
    ]
    assert rows[0]["event"]["context"] is None
    assert rows[2]["event"]["context"]["message_count"] == 1
    assert stats.replays == 1
    await inbox.close()
    await outbox.close()


async def test_run_stops_after_the_batch_in_hand(tmp_path: Path) -> None:
    """stop() lets run() return; everything read before is published and committed."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    await store(inbox, [inbox_item(n) for n in range(1, 51)])
    stats = ShardStats()
    config = shard_config(partition=0, batch_size=10, block_ms=10, max_item_age_s=None)
    shard = ConversationShard(config, inbox, outbox, stats)
    task = asyncio.create_task(shard.run())
    # 51 events: the 50 messages and c1's `conversation.created`.
    await asyncio.wait_for(stats.wait_until(lambda s: s.published >= 51), WAIT_S)
    shard.stop()
    await asyncio.wait_for(task, WAIT_S)
    events = published(tmp_path / "outbox.db")
    assert [what for _, _, what in events] == [CREATED, *(f"wamid.{n}" for n in range(1, 51))]
    check_published(tmp_path / "outbox.db", "c1")
    assert stats.batches == 8  # reads of 1, 2, 4, 8, then 10 (the batch size), 10, 10, 5
    assert await inbox.backlog(0) == 0
    await inbox.close()
    await outbox.close()


async def test_an_unexpected_error_is_retried_not_fatal_to_the_partition(tmp_path: Path) -> None:
    """run() survives a non-adapter exception: logged, counted, the batch published after."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    stats = ShardStats()
    config = shard_config(partition=0, block_ms=10, max_item_age_s=None)
    shard = ConversationShard(config, inbox, BrokenPublisher(outbox, failures=1), stats)
    await store(inbox, [inbox_item(1), inbox_item(2)])
    task = asyncio.create_task(shard.run())
    await asyncio.wait_for(stats.wait_until(lambda s: s.published >= 3), WAIT_S)
    shard.stop()
    await asyncio.wait_for(task, WAIT_S)
    assert published(tmp_path / "outbox.db") == [
        ("c1", 1, CREATED),
        ("c1", 2, "wamid.1"),
        ("c1", 3, "wamid.2"),
    ]
    check_published(tmp_path / "outbox.db", "c1")
    assert stats.errors == ["RuntimeError: a bug, not an outage"]
    assert stats.publish_failures == 0  # a bug is not a broker refusal
    await inbox.close()
    await outbox.close()


async def test_the_backlog_is_measured_until_stop(tmp_path: Path) -> None:
    """report_backlog() reports the uncommitted entries at once, then returns on stop()."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    await store(inbox, [inbox_item(n) for n in range(1, 4)])
    stats = ShardStats()
    shard = ConversationShard(shard_config(partition=0, block_ms=10), inbox, outbox, stats)
    task = asyncio.create_task(shard.report_backlog(every_s=60))
    await asyncio.wait_for(stats.wait_until(lambda s: s.backlog == 3), WAIT_S)
    shard.stop()
    await asyncio.wait_for(task, WAIT_S)  # well before the next 60 s measurement
    await inbox.close()
    await outbox.close()


async def test_partition_zero_reports_the_stores_marks_and_memory(tmp_path: Path) -> None:
    """Partition 0's shard measures the shared store (marks, memory); the others do not."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    await store(inbox, [inbox_item(n) for n in range(1, 4)])
    zero, one = ShardStats(), ShardStats()
    shards = [
        ConversationShard(shard_config(partition=p, block_ms=10), inbox, outbox, stats)
        for p, stats in ((0, zero), (1, one))
    ]
    tasks = [asyncio.create_task(s.report_backlog(every_s=60)) for s in shards]
    await asyncio.wait_for(zero.wait_until(lambda s: s.store is not None), WAIT_S)
    await asyncio.wait_for(one.wait_until(lambda s: s.backlog is not None), WAIT_S)
    for shard in shards:
        shard.stop()
    await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
    await inbox.close()
    await outbox.close()
    assert zero.store is not None
    assert zero.store.used_memory_bytes > 0
    assert one.store is None


async def test_partition_zero_reports_the_unowned_backlog(tmp_path: Path) -> None:
    """Partition 0's shard measures partition -1 (numbers nobody owns); the others do not."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    held = [inbox_item(n).model_copy(update={"partition": -1}) for n in range(1, 3)]
    await store(inbox, held)
    zero, one = ShardStats(), ShardStats()
    shards = [
        ConversationShard(shard_config(partition=p, block_ms=10), inbox, outbox, stats)
        for p, stats in ((0, zero), (1, one))
    ]
    tasks = [asyncio.create_task(s.report_backlog(every_s=60)) for s in shards]
    await asyncio.wait_for(zero.wait_until(lambda s: s.unowned == 2), WAIT_S)
    await asyncio.wait_for(one.wait_until(lambda s: s.store is None and s.backlog == 0), WAIT_S)
    for shard in shards:
        shard.stop()
    await asyncio.wait_for(asyncio.gather(*tasks), WAIT_S)
    await inbox.close()
    await outbox.close()
    assert one.unowned is None


async def test_the_stream_check_fails_on_a_gap_a_missing_or_a_second_created(
    tmp_path: Path,
) -> None:
    """check_streams (tests/support/events.py), which the shard tests rely on, passes the
    shard's real stream and fails each way a stream can be wrong."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    error = {"code": 131000, "title": "Something went wrong"}  # a tenant-wide item
    tenant_item = inbox_item(3, conversation="acme|~tenant", kind="error", raw=error)
    await store(inbox, [inbox_item(1), inbox_item(2), tenant_item])
    config = shard_config(partition=0, block_ms=10, max_item_age_s=None)
    await drain(ConversationShard(config, inbox, outbox))
    events = [r["event"] for r in read_outbox(tmp_path / "outbox.db")]
    kinds: dict[str, ConversationKind] = {"c1": "customer", "acme|~tenant": "tenant"}
    await inbox.close()
    await outbox.close()
    check_streams(events, kinds)  # c1: created, wamid.1, wamid.2; the tenant's: the error
    created, first, second, tenant = events
    # Each stream below is wrong in what its name says and otherwise well-formed.
    wrong: dict[str, list[dict[str, Any]]] = {
        "a gap": [created, first, {**second, "sequence": 4}, tenant],
        "no created": [{**first, "sequence": 1}, {**second, "sequence": 2}, tenant],
        "a second created": [
            created,
            first,
            {**created, "sequence": 3},
            {**second, "sequence": 4},
            tenant,
        ],
        "created after its item": [{**first, "sequence": 1}, {**created, "sequence": 2}],
        "a tenant's created": [
            {**created, "conversation_id": "acme|~tenant"},
            {**tenant, "sequence": 2},
        ],
        "an unknown conversation": [{**tenant, "conversation_id": "c9"}],
    }
    for name, stream in wrong.items():
        try:
            check_streams(stream, kinds)
        except AssertionError:
            continue
        raise AssertionError(f"check_streams passed {name}")


async def test_a_replayed_item_is_published_again_after_what_was_published(
    tmp_path: Path,
) -> None:
    """wamid.1, then wamid.2, then wamid.1 again as a replay (issue 11): the duplicate
    suppression that drops a retry of wamid.1 lets the replay through, with the same
    event_id, the conversation's next sequence and the `replayed` header; a plain retry of
    wamid.1 after it is still dropped."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    shard = ConversationShard(shard_config(block_ms=10, max_item_age_s=None), inbox, outbox)
    await store(inbox, [inbox_item(1), inbox_item(2)])
    await drain(shard)
    await store(inbox, [inbox_item(1).model_copy(update={"replayed": True})])
    await store(inbox, [inbox_item(1)])
    await drain(shard)
    rows = [r for r in read_outbox(tmp_path / "outbox.db") if not is_state_event(r["event"])]
    assert [(r["event"]["event_id"], r["event"]["sequence"]) for r in rows] == [
        ("wamid.1", 2),
        ("wamid.2", 3),
        ("wamid.1", 4),
    ]
    assert [r["headers"].get("replayed") for r in rows] == [None, None, True]
    assert [r["event"]["replayed"] for r in rows] == [False, False, True]
    assert await inbox.backlog(0) == 0
    await inbox.close()
    await outbox.close()
