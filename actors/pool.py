"""The shard pool: a Serve deployment that owns the shard actors and keeps them running.

It is part of the Serve application so that `serve deploy` of ray-config/ brings up the
whole pipeline; it takes no traffic. Serve's health check restarts a dead shard's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import ray
import structlog
from ray import serve

from actors.account_hook import AccountHook
from actors.account_refresher import AccountRefresher, RefresherStatus
from actors.archiver import Archiver, ArchiverStatus
from actors.media_fetch import MediaFetcher
from actors.media_pool import PipelineFactory, start_media_workers
from actors.shard import ShardConfig
from actors.shard_actor import (
    BudgetFactory,
    LiveTenants,
    ShardActor,
    ShardDepsFactory,
    ShardStatus,
    shard_actor_options,
)
from actors.tenant_limiter import end_limiters

_HEALTH_WAIT_S = 10.0
log = structlog.get_logger("pool")


@dataclass(frozen=True, slots=True)
class MediaPoolSpec:
    """The media task pool the shard pool starts (actors/media_pool.py) and the fetcher
    each shard builds in its own process (actors/media_fetch.py)."""

    workers: int
    heavy_slots: int
    light_slots: int
    pipeline: PipelineFactory  # called in each worker
    fetcher: Callable[[], MediaFetcher | None]  # called in each shard actor


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
        archiver_factory: Callable[[], Archiver] | None = None,
        media: MediaPoolSpec | None = None,
        refresher_factory: Callable[[], AccountRefresher] | None = None,
        hook_factory: Callable[[], AccountHook] | None = None,
        tenants_factory: Callable[[], LiveTenants] | None = None,
        budget_factory: BudgetFactory | None = None,
        shard_options: dict[str, Any] | None = None,
        media_options: dict[str, Any] | None = None,
    ) -> None:
        # `shard_options` / `media_options`: Ray placement options (custom resources,
        # label selector, SPREAD) added to every shard's / media worker's (cluster/
        # placement.py); a restarted actor is placed by the same options.
        self._prefix = name_prefix
        # The archiver (actors/archiver.py) is a loop on this replica's event loop, not an
        # actor of its own: it only waits on I/O, and a process more costs ~100 MB.
        self._archiver = archiver_factory() if archiver_factory is not None else None
        self._archiving: asyncio.Task[None] | None = None
        # The account refresher (actors/account_refresher.py): a loop here too, as cheap.
        self._refresher = refresher_factory() if refresher_factory is not None else None
        self._refreshing: asyncio.Task[None] | None = None
        # The media task pool first: the shards' fetches look its workers up by name.
        self._media_workers = (
            start_media_workers(
                media.workers,
                media.pipeline,
                media.heavy_slots,
                media.light_slots,
                name_prefix,
                media_options,
            )
            if media is not None and media.workers > 0
            else []
        )
        fetcher = media.fetcher if media is not None else None

        def make(p: int) -> Any:
            return ShardActor.options(  # type: ignore[attr-defined]
                **shard_actor_options(p, name_prefix), **(shard_options or {})
            ).remote(
                config_for(p), deps_factory, fetcher, hook_factory, tenants_factory, budget_factory
            )

        self._make_shard = make
        self._shards = [make(p) for p in range(partitions)]
        ray.get([shard.ensure_running.remote() for shard in self._shards])

    async def check_health(self) -> None:
        """Called by Serve every 2 s: (re)start every shard's loop, all shards at once.

        Never raises for a shard that is slow to answer: Ray restarts a crashed shard
        actor by itself (max_restarts=-1), and failing this check would make Serve replace
        the pool, whose shutdown drains and ends every healthy shard too.
        """
        self._ensure_archiving()
        self._ensure_refreshing()
        pending = [shard.ensure_running.remote() for shard in self._shards]
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*pending, return_exceptions=True), timeout=_HEALTH_WAIT_S
            )
        except TimeoutError:
            log.warning("shard_restarting", waited_s=_HEALTH_WAIT_S)
            return
        for partition, result in enumerate(results):
            if isinstance(result, ray.exceptions.RayActorError):
                # Dead for good (killed without restart: a pool this one replaced ended
                # the actor it had handed over by name). Made again; the fence keeps any
                # overlap harmless, and the new one re-reads the partition.
                log.warning("shard_recreated", partition=partition, error=str(result))
                self._shards[partition] = self._make_shard(partition)

    def _ensure_archiving(self) -> None:
        """(Re)start the archiver's loop; a loop that died is logged with its error."""
        if self._archiver is not None:
            self._archiving = _running(self._archiving, self._archiver.run, "archiver_died")

    def _ensure_refreshing(self) -> None:
        """(Re)start the account refresher's loop; a loop that died is logged."""
        if self._refresher is not None:
            self._refreshing = _running(
                self._refreshing, self._refresher.run, "account_refresher_died"
            )

    async def account_status(self) -> RefresherStatus | None:
        """The account refresher's counters (None: this pool hosts none)."""
        return self._refresher.status() if self._refresher is not None else None

    async def archive_status(self) -> ArchiverStatus | None:
        """The archiver's counters (None: this pool hosts none)."""
        if self._archiver is None:
            return None
        running = self._archiving is not None and not self._archiving.done()
        return self._archiver.status(running)

    async def status(self) -> list[ShardStatus]:
        """Every shard's status, by partition."""
        return [await shard.status.remote() for shard in self._shards]

    async def drain(self) -> list[ShardStatus]:
        """Finish in-flight batches on every shard (all at once) and stop them, and the
        archiver after the write in hand (at the same time)."""
        archiver, self._archiver = self._archiver, None  # not restarted by a health check
        stopping = self._stop_archiver(archiver) if archiver is not None else asyncio.sleep(0)
        refresher, self._refresher = self._refresher, None
        refreshed = self._stop_refresher(refresher) if refresher is not None else asyncio.sleep(0)
        statuses: list[ShardStatus]
        statuses, _, _ = await asyncio.gather(
            asyncio.gather(*(shard.drain.remote() for shard in self._shards)), stopping, refreshed
        )
        return statuses

    async def _stop_refresher(self, refresher: AccountRefresher) -> None:
        refresher.stop()
        if self._refreshing is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._refreshing, timeout=_HEALTH_WAIT_S)
        with contextlib.suppress(Exception):
            await refresher.close()

    async def _stop_archiver(self, archiver: Archiver) -> None:
        archiver.stop()
        if self._archiving is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._archiving, timeout=_HEALTH_WAIT_S)
        await archiver.close()

    async def __del__(self) -> None:
        """Serve's graceful shutdown: drain, then end the actors this pool owns."""
        try:
            await self.drain()
        finally:
            for actor in [*self._shards, *self._media_workers]:
                ray.kill(actor, no_restart=True)
            # The tenant limiters die with the shards that made them; by name all the same.
            end_limiters(self._prefix)


def _running(
    task: asyncio.Task[None] | None, run: Callable[[], Coroutine[Any, Any, None]], died: str
) -> asyncio.Task[None]:
    """The loop's task, started again if it ended (its error logged as `died`)."""
    if task is not None and not task.done():
        return task
    if task is not None and not task.cancelled() and task.exception() is not None:
        log.error(died, error=repr(task.exception()))
    return asyncio.create_task(run())
