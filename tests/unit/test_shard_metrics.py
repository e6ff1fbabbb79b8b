"""The shard's metrics port: the in-memory counters and the Ray exporter's edge cases."""

from __future__ import annotations

import asyncio

import pytest

from actors.shard_actor import RayShardMetrics
from actors.shard_metrics import ShardStats


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
