"""Readiness over the shard pool: a stopped shard is down, a stalled one is a detail."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from actors.shard_actor import ShardStatus
from ingress.health import shard_pool_check
from tests.support.app import ingress_client


def _status(partition: int, running: bool = True, stalled_s: float | None = None) -> ShardStatus:
    return ShardStatus(
        partition=partition,
        running=running,
        batches=0,
        published=0,
        redelivered=0,
        publish_failures=0,
        backlog=3,
        last_error=None,
        stalled_s=stalled_s,
    )


@dataclass
class _Remote:
    """Stands in for a Serve handle's method: `.remote()` answers the statuses."""

    statuses: list[ShardStatus]

    async def remote(self) -> list[ShardStatus]:
        return self.statuses


@dataclass
class _Pool:
    status: _Remote


async def test_a_stalled_partition_is_named_in_the_details_and_the_replica_stays_ready(
    tmp_path: Path,
) -> None:
    """Entries waiting and no progress: /readyz 200, `shards` says which and how long."""
    pool = _Pool(_Remote([_status(0), _status(1, stalled_s=75.4)]))
    async with ingress_client(tmp_path, ready_checks={"shards": shard_pool_check(pool)}) as (
        client,
        _inbox,
    ):
        ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["shards"] == "degraded: partitions stalled (seconds): {1: 75}"


async def test_a_stopped_shard_makes_the_replica_unready(tmp_path: Path) -> None:
    """A shard whose loop is not running: /readyz 503 with the shards check down."""
    pool = _Pool(_Remote([_status(0, running=False), _status(1)]))
    async with ingress_client(tmp_path, ready_checks={"shards": shard_pool_check(pool)}) as (
        client,
        _inbox,
    ):
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["shards"] == "down: RuntimeError"


async def test_healthy_shards_answer_ok(tmp_path: Path) -> None:
    """Every shard running, none stalled: ok."""
    pool = _Pool(_Remote([_status(0), _status(1)]))
    check = shard_pool_check(pool)
    assert await check() is None
