"""The shard's metrics port: the in-memory counters and the Ray exporter's edge cases."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from actors.shard import ConversationShard, GuardedMetrics
from actors.shard_actor import RayShardMetrics
from actors.shard_metrics import ShardMetrics, ShardStats
from adapters.outbox import OutboxPublisher, read_outbox
from tests.support.configs import shard_config, sqlite_inbox
from tests.support.events import check_streams, inbox_item, is_state_event, store
from tests.support.shards import drain


async def test_wait_until_wakes_on_each_change_and_returns_once_true() -> None:
    """A parked waiter re-checks after every event and returns on the one that makes it
    true; `parked` tells the test the waiter has checked (no sleep stands in for that)."""
    stats = ShardStats()
    checked: list[int] = []
    parked = asyncio.Event()

    def done(s: ShardStats) -> bool:
        checked.append(s.published)
        parked.set()
        return s.published >= 3

    waiter = asyncio.create_task(stats.wait_until(done))
    await asyncio.wait_for(parked.wait(), 1.0)
    parked.clear()
    stats.batch_committed(2, 0.01, 0.001)
    await asyncio.wait_for(parked.wait(), 1.0)
    assert not waiter.done()
    stats.batch_committed(1, 0.01, 0.001)
    await asyncio.wait_for(waiter, 1.0)
    assert checked == [0, 2, 3]
    assert (stats.batches, stats.published, stats.last_batch) == (2, 3, 1)


async def test_wait_until_times_out_when_nothing_happens() -> None:
    """The waits the shard tests rely on can fail: no event, no return."""
    stats = ShardStats()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(stats.wait_until(lambda s: s.published >= 1), 0.05)


def test_only_the_last_ten_loop_errors_are_kept() -> None:
    """The status shows the last error; the list stays bounded however long an outage."""
    stats = ShardStats()
    for n in range(12):
        stats.loop_failed(f"TransientError: {n}")
    assert stats.errors == [f"TransientError: {n}" for n in range(2, 12)]


def test_an_empty_publish_keeps_the_last_publish_duration() -> None:
    """An all-duplicate batch publishes nothing: it counts as a batch of 0, no duration."""
    stats = ShardStats()
    stats.batch_committed(3, 0.02, 0.005)
    stats.batch_committed(0, 0.01, None)
    assert (stats.batches, stats.published, stats.last_publish_s) == (2, 3, 0.005)


def test_the_ray_exporter_accepts_an_all_duplicate_batch() -> None:
    """Ray counters refuse an increment of 0; a batch of 0 events must not raise (it did,
    when the actor counted published events unconditionally), and the status counts it."""
    exporter = RayShardMetrics(partition=0)
    exporter.batch_committed(0, 0.01, None)
    exporter.duplicates_skipped(2)
    exporter.backlog_measured(0)
    assert (exporter.stats.batches, exporter.stats.duplicates) == (1, 2)


class FailingMetrics(ShardStats):
    """A metrics port whose every call raises `failures` times in all (a metrics backend
    hiccup), counting as ShardStats does once it works; `failed` names the calls that
    raised, in order."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.failed: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name in _PORT_CALLS and super().__getattribute__("failures") > 0:

            def fail(*_args: object) -> None:
                self.failures -= 1
                self.failed.append(name)
                raise RuntimeError(f"metrics backend hiccup in {name}")

            return fail
        return attr


_PORT_CALLS = {
    "batch_committed",
    "entries_redelivered",
    "publish_failed",
    "duplicates_skipped",
    "replays_quarantined",
    "loop_failed",
    "backlog_measured",
    "items_failed",
    "dead_lettered",
    "events_rejected",
    "stall_measured",
    "store_measured",
    "unowned_measured",
    "conversation_events",
    "reorder_held",
    "events_filtered",
}


def test_the_failing_metrics_fail_every_call_of_the_port() -> None:
    """FailingMetrics covers the whole ShardMetrics port (a call added to the port and not
    here would never fail in the test below)."""
    assert {name for name in vars(ShardMetrics) if not name.startswith("_")} == _PORT_CALLS


# The calls the first batch makes, in order: a read's redelivery count and the reorder
# window's size while its entries are taken, the state events counted while they are
# numbered, then the commit.
FIRST_CALLS = ["entries_redelivered", "reorder_held", "conversation_events", "batch_committed"]


async def test_a_failing_metrics_call_never_loses_or_reorders_entries(tmp_path: Path) -> None:
    """A crashed reader left wamid.1 and wamid.2 pending; the next process's metrics raise
    on their first calls (the reorder window's size, the redelivery count, the state
    events counted, the first commit): no run_once raises, and every entry is published
    once, in append order, after c1's `conversation.created`, with sequences 1, 2, 3, 4."""
    path = tmp_path / "inbox.db"
    crashed = sqlite_inbox(path)
    await store(crashed, [inbox_item(1), inbox_item(2)])
    assert len(await crashed.read(0, 10, 10)) == 2  # read, never committed
    inbox = sqlite_inbox(path)
    await store(inbox, [inbox_item(3)])
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    metrics = FailingMetrics(failures=len(FIRST_CALLS))
    config = shard_config(block_ms=10, max_item_age_s=None)
    await drain(ConversationShard(config, inbox, outbox, metrics))
    events = [r["event"] for r in read_outbox(path.parent / "outbox.db")]
    check_streams(events, {"c1": "customer"})
    rows = [
        ("conversation.created" if is_state_event(e) else e["event_id"], e["sequence"])
        for e in events
    ]
    assert rows == [("conversation.created", 1), ("wamid.1", 2), ("wamid.2", 3), ("wamid.3", 4)]
    assert metrics.failures == 0  # every failure happened, none broke the data path
    assert metrics.failed == FIRST_CALLS
    assert await inbox.backlog(0) == 0
    for closable in (crashed, inbox, outbox):
        await closable.close()


def test_the_ray_exporter_sets_the_unowned_backlog() -> None:
    """unowned_measured reaches ShardStats through the Ray exporter and GuardedMetrics."""
    exporter = RayShardMetrics(0)
    exporter.unowned_measured(3)
    assert exporter.stats.unowned == 3
    guarded = GuardedMetrics(exporter, 0)
    guarded.unowned_measured(5)
    assert exporter.stats.unowned == 5
