"""The Ray shell around ConversationShard: one async actor per inbox partition."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import ray
from pydantic import BaseModel, ConfigDict
from ray.util import metrics

from actors.shard import ConversationShard, ShardConfig
from adapters.ports import Inbox, Publisher

ShardDepsFactory = Callable[[], tuple[Inbox, Publisher]]


class ShardStatus(BaseModel):
    """What a shard reports to the pool and to /readyz."""

    model_config = ConfigDict(frozen=True)

    partition: int
    running: bool
    batches: int
    published: int
    redelivered: int
    publish_failures: int
    backlog: int | None
    last_error: str | None


class _ShardMetrics:
    """The shard's Ray metrics (exported by Ray's metrics agent, prefixed `ray_`)."""

    def __init__(self, partition: int) -> None:
        keys = ("partition",)
        self.batch_size = metrics.Histogram(
            "wa_shard_batch_size",
            description="Events per published batch.",
            boundaries=[1, 2, 5, 10, 20, 50, 100, 200, 500],
            tag_keys=keys,
        )
        self.batch_seconds = metrics.Histogram(
            "wa_shard_batch_duration_seconds",
            description="Read-to-commit time of a batch: normalize, publish with confirms, commit.",
            boundaries=[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
            tag_keys=keys,
        )
        self.publish_seconds = metrics.Histogram(
            "wa_shard_publish_duration_seconds",
            description="From publishing a batch to the broker's last confirm.",
            boundaries=[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
            tag_keys=keys,
        )
        # Counters get `_total` appended by the exporter.
        self.published = metrics.Counter(
            "wa_shard_events_published",
            description="Events published and confirmed by the broker.",
            tag_keys=keys,
        )
        self.redelivered = metrics.Counter(
            "wa_shard_redeliveries",
            description="Inbox entries read again after a restart (published at least once).",
            tag_keys=keys,
        )
        self.publish_failures = metrics.Counter(
            "wa_shard_publish_failures",
            description="Batches the broker did not confirm (retried, never skipped).",
            tag_keys=keys,
        )
        self.duplicates = metrics.Counter(
            "wa_shard_duplicates",
            description="Items not published because their event_id was already published.",
            tag_keys=keys,
        )
        self.replays = metrics.Counter(
            "wa_shard_replays",
            description="Items older than the maximum age, published as category replay.",
            tag_keys=keys,
        )
        self.backlog = metrics.Gauge(
            "wa_inbox_backlog",
            description="Inbox entries of the partition not yet published and committed.",
            tag_keys=keys,
        )
        tags = {"partition": str(partition)}
        for metric in (
            self.batch_size,
            self.batch_seconds,
            self.publish_seconds,
            self.published,
            self.redelivered,
            self.publish_failures,
            self.duplicates,
            self.replays,
            self.backlog,
        ):
            metric.set_default_tags(tags)

    def batch(self, size: int, seconds: float) -> None:
        """One committed batch."""
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.published.inc(size)

    def counts(self, deltas: dict[str, int]) -> None:
        """Increments since the last batch, by counter name."""
        for name, delta in deltas.items():
            if delta:
                counter: metrics.Counter = getattr(self, name)
                counter.inc(delta)


@ray.remote(  # type: ignore[call-overload]  # Ray's stubs omit actor-only options
    num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=8
)
class ShardActor:
    """Owns one partition. Zero CPUs: a long-lived actor must never sit pending."""

    def __init__(self, config: ShardConfig, deps_factory: ShardDepsFactory) -> None:
        inbox, publisher = deps_factory()
        self._inbox = inbox
        self._publisher = publisher
        self._metrics = _ShardMetrics(config.partition)
        self._shard = ConversationShard(config, inbox, publisher, on_batch=self._record)
        self._task: asyncio.Task[None] | None = None
        self._gauge_task: asyncio.Task[None] | None = None
        self._counted: dict[str, int] = {}  # ShardStats counters already exported

    def _record(self, size: int, seconds: float) -> None:
        stats = self._shard.stats
        now = {
            "redelivered": stats.redelivered,
            "publish_failures": stats.publish_failures,
            "duplicates": stats.duplicates,
            "replays": stats.replays,
        }
        self._metrics.batch(size, seconds)
        if size:
            self._metrics.publish_seconds.observe(stats.last_publish_s)
        self._metrics.counts({k: v - self._counted.get(k, 0) for k, v in now.items()})
        self._counted = now

    async def _export_backlog(self) -> None:
        """Every 5 s: the partition's backlog as a gauge (the lag a dashboard alerts on)."""
        while True:
            with contextlib.suppress(Exception):  # a store outage shows as a stale gauge
                self._metrics.backlog.set(await self._inbox.backlog(self._shard.config.partition))
            await asyncio.sleep(5)

    async def ensure_running(self) -> ShardStatus:
        """Start the pull loop if it is not running (also after an actor restart)."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._shard.resume()
            self._task = loop.create_task(self._shard.run())
        if self._gauge_task is None or self._gauge_task.done():
            self._gauge_task = loop.create_task(self._export_backlog())
        return await self.status()

    async def status(self) -> ShardStatus:
        """Counters and the partition's backlog."""
        stats = self._shard.stats
        try:
            backlog: int | None = await self._inbox.backlog(self._shard.config.partition)
        except Exception:  # noqa: BLE001 -- status must answer even when the store is down
            backlog = None
        return ShardStatus(
            partition=self._shard.config.partition,
            running=self._task is not None and not self._task.done(),
            batches=stats.batches,
            published=stats.published,
            redelivered=stats.redelivered,
            publish_failures=stats.publish_failures,
            backlog=backlog,
            last_error=stats.errors[-1] if stats.errors else None,
        )

    async def drain(self, timeout_s: float = 30.0) -> ShardStatus:
        """Finish the batch in hand (publish and commit), stop, close connections."""
        self._shard.stop()
        if self._gauge_task is not None:
            self._gauge_task.cancel()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=timeout_s)
            except TimeoutError:
                self._task.cancel()
        status = await self.status()
        await asyncio.gather(self._inbox.close(), self._publisher.close(), return_exceptions=True)
        return status


def shard_actor_options(partition: int, namespace_prefix: str = "wa") -> dict[str, Any]:
    """Ray options of shard `partition`: a stable name so a new pool finds the old actor."""
    return {"name": f"{namespace_prefix}-shard-{partition}", "get_if_exists": True}
