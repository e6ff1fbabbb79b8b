"""The shard pool: a Serve deployment that owns the shard actors and keeps them running.

It is part of the Serve application so that `serve deploy` of ray-config/ brings up the
whole pipeline; it takes no traffic. Serve's health check restarts a dead shard's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import ray
import structlog
from ray import serve

from actors.shard import ShardConfig
from actors.shard_actor import ShardActor, ShardDepsFactory, ShardStatus, shard_actor_options

_HEALTH_WAIT_S = 10.0
log = structlog.get_logger("pool")


@serve.deployment(
    num_replicas=1,
    ray_actor_options={"num_cpus": 0},
    health_check_period_s=2,
    graceful_shutdown_timeout_s=60,
)
class ShardPool:
    """Creates one ShardActor per partition and restarts their loops when needed."""

    def __init__(
        self,
        partitions: int,
        config_for: Callable[[int], ShardConfig],
        deps_factory: ShardDepsFactory,
        name_prefix: str = "wa",
    ) -> None:
        self._shards = [
            ShardActor.options(**shard_actor_options(p, name_prefix)).remote(  # type: ignore[attr-defined]
                config_for(p), deps_factory
            )
            for p in range(partitions)
        ]
        ray.get([shard.ensure_running.remote() for shard in self._shards])

    async def check_health(self) -> None:
        """Called by Serve every 2 s: (re)start every shard's loop, all shards at once.

        Never raises for a shard that is slow to answer: Ray restarts a crashed shard
        actor by itself (max_restarts=-1), and failing this check would make Serve replace
        the pool, whose shutdown drains and ends every healthy shard too.
        """
        pending = [shard.ensure_running.remote() for shard in self._shards]
        try:
            await asyncio.wait_for(asyncio.gather(*pending), timeout=_HEALTH_WAIT_S)
        except TimeoutError:
            log.warning("shard_restarting", waited_s=_HEALTH_WAIT_S)

    async def status(self) -> list[ShardStatus]:
        """Every shard's status, by partition."""
        return [await shard.status.remote() for shard in self._shards]

    async def drain(self) -> list[ShardStatus]:
        """Finish in-flight batches on every shard (all at once) and stop them."""
        statuses: list[ShardStatus] = await asyncio.gather(
            *(shard.drain.remote() for shard in self._shards)
        )
        return statuses

    async def __del__(self) -> None:
        """Serve's graceful shutdown: drain, then end the actors this pool owns."""
        try:
            await self.drain()
        finally:
            for shard in self._shards:
                ray.kill(shard, no_restart=True)
