"""The Ray shell around ConversationShard: one async actor per inbox partition."""

from __future__ import annotations

import asyncio
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


@ray.remote(  # type: ignore[call-overload]  # Ray's stubs omit actor-only options
    num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=8
)
class ShardActor:
    """Owns one partition. Zero CPUs: a long-lived actor must never sit pending."""

    def __init__(self, config: ShardConfig, deps_factory: ShardDepsFactory) -> None:
        inbox, publisher = deps_factory()
        self._inbox = inbox
        self._publisher = publisher
        tags = {"partition": str(config.partition)}
        self._batch_size = metrics.Histogram(
            "wa_shard_batch_size",
            description="Events per published batch.",
            boundaries=[1, 2, 5, 10, 20, 50, 100, 200, 500],
            tag_keys=("partition",),
        )
        self._batch_seconds = metrics.Histogram(
            "wa_shard_batch_duration_seconds",
            description="Read-to-commit time of a batch: normalize, publish with confirms, commit.",
            boundaries=[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
            tag_keys=("partition",),
        )
        self._published = metrics.Counter(
            "wa_shard_events_published_total",
            description="Events published and confirmed by the broker.",
            tag_keys=("partition",),
        )
        self._batch_size.set_default_tags(tags)
        self._batch_seconds.set_default_tags(tags)
        self._published.set_default_tags(tags)
        self._shard = ConversationShard(config, inbox, publisher, on_batch=self._record)
        self._task: asyncio.Task[None] | None = None

    def _record(self, size: int, seconds: float) -> None:
        self._batch_size.observe(size)
        self._batch_seconds.observe(seconds)
        self._published.inc(size)

    async def ensure_running(self) -> ShardStatus:
        """Start the pull loop if it is not running (also after an actor restart)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._shard.run())
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
