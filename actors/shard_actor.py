"""The Ray shell around ConversationShard: one async actor per inbox partition."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import ray
from pydantic import BaseModel, ConfigDict
from ray.util import metrics

from actors.account_hook import AccountHook
from actors.media_fetch import MediaFetcher
from actors.shard import ConversationShard, ShardConfig
from actors.shard_metrics import ShardStats
from actors.shard_throttle import PublishBudget
from adapters.ports import Inbox, InboxStats, Publisher, Routes
from models.tenant import TenantDirectory


class ShardDepsFactory(Protocol):
    """The actor's inbox and publisher; `routes`: the tenants' routing rules (read from
    the actor's live directory) the publisher applies."""

    def __call__(self, routes: Routes | None = None) -> tuple[Inbox, Publisher]: ...


LiveTenants = tuple[
    TenantDirectory, Callable[[], Coroutine[Any, Any, None]], Callable[[], Awaitable[object]]
]
"""A live tenant directory, the loop that keeps it current (run by the actor), and its
immediate load (awaited before the pull loop starts)."""
BudgetFactory = Callable[[Callable[[], frozenset[str]]], PublishBudget | None]
"""The tenants' publish budget (actors/shard_throttle.py), given the ids metrics may carry."""


def _routes(live: LiveTenants | None) -> Routes | None:
    """The live directory's routing rules (None without one: the service's route)."""
    if live is None:
        return None
    directory = live[0]
    return lambda tenant_id: directory.rules(tenant_id).routing


def _known_ids(live: LiveTenants | None) -> Callable[[], frozenset[str]]:
    """The live directory's tenant ids (none without one: every label is `other`)."""
    if live is None:
        return frozenset
    directory = live[0]
    return lambda: directory.ids


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
    # Seconds since the partition last advanced while entries wait, once past the shard's
    # `stall_after_s`; None while it is not stalled. /readyz reports a stalled shard.
    stalled_s: float | None = None
    item_failures: int = 0  # failed attempts of items (normalize, stamp, publish)
    rejected: int = 0  # events the publisher rejected (each an item's failed attempt)
    dead_lettered: int = 0  # items out of attempts, in the failed store


class RayShardMetrics:
    """ShardMetrics exported through ray.util.metrics (Ray's metrics agent, prefixed `ray_`).

    Ray's metrics cannot be read back, so the counters the status reports are kept beside
    them in `stats`.
    """

    def __init__(self, partition: int) -> None:
        self.stats = ShardStats()
        keys = ("partition",)
        self._batch_size = metrics.Histogram(
            "wa_shard_batch_size",
            description="Events per published batch.",
            boundaries=[1, 2, 5, 10, 20, 50, 100, 200, 500],
            tag_keys=keys,
        )
        self._batch_seconds = metrics.Histogram(
            "wa_shard_batch_duration_seconds",
            description="Read-to-commit time of a batch: normalize, publish with confirms, commit.",
            boundaries=[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
            tag_keys=keys,
        )
        self._publish_seconds = metrics.Histogram(
            "wa_shard_publish_duration_seconds",
            description="From publishing a batch to the broker's last confirm.",
            boundaries=[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
            tag_keys=keys,
        )
        # Counters get `_total` appended by the exporter.
        self._published = metrics.Counter(
            "wa_shard_events_published",
            description="Events published and confirmed by the broker.",
            tag_keys=keys,
        )
        self._redelivered = metrics.Counter(
            "wa_shard_redeliveries",
            description="Inbox entries read again after a restart (published at least once).",
            tag_keys=keys,
        )
        self._publish_failures = metrics.Counter(
            "wa_shard_publish_failures",
            description="Batches the broker did not confirm (retried, never skipped).",
            tag_keys=keys,
        )
        self._duplicates = metrics.Counter(
            "wa_shard_duplicates",
            description="Items not published because their event_id was already published.",
            tag_keys=keys,
        )
        self._replays = metrics.Counter(
            "wa_shard_replays",
            description="Items older than the maximum age, published as category replay.",
            tag_keys=keys,
        )
        self._backlog = metrics.Gauge(
            "wa_inbox_backlog",
            description="Inbox entries of the partition not yet published and committed.",
            tag_keys=keys,
        )
        self._stalled = metrics.Gauge(
            "wa_shard_stalled_seconds",
            description="Seconds the partition has not advanced while entries wait (0: moving).",
            tag_keys=keys,
        )
        self._item_failures = metrics.Counter(
            "wa_shard_item_failures",
            description="Failed attempts of items by step (retried with backoff, then "
            "dead-lettered).",
            tag_keys=("partition", "step"),
        )
        self._dead = metrics.Counter(
            "wa_shard_dead_lettered",
            description="Items out of attempts: in the failed store and on the dead-letter "
            "exchange, a placeholder event in their place.",
            tag_keys=keys,
        )
        self._conversation_events = metrics.Counter(
            "wa_shard_conversation_events",
            description="Conversation events by kind: created / updated (state events), late "
            "(messages), stale (statuses), forced (released early by a full reorder window).",
            tag_keys=("partition", "kind"),
        )
        self._held = metrics.Gauge(
            "wa_shard_reorder_held",
            description="Entries the reorder window holds (uncommitted, due within the window).",
            tag_keys=keys,
        )
        self._filtered = metrics.Counter(
            "wa_shard_events_filtered",
            description="Events not published by their tenant's forward rule (archived, counted).",
            tag_keys=("partition", "tenant"),
        )
        self._rejected = metrics.Counter(
            "wa_shard_events_rejected",
            description="Events the publisher rejected before sending (their items' failed "
            "attempts).",
            tag_keys=keys,
        )
        # The store is shared by every partition: reported by partition 0's shard alone.
        self._store_keys = metrics.Gauge(
            "wa_inbox_expiring_keys",
            description="Keys with a TTL in the state store: the dedup marks plus sequence "
            "and rate-limit keys, an upper bound on the marks (docs/redis.md sizes them).",
        )
        self._store_memory = metrics.Gauge(
            "wa_inbox_store_memory_bytes",
            description="Memory the state store uses (Redis used_memory; the SQLite file).",
        )
        self._store_max_memory = metrics.Gauge(
            "wa_inbox_store_max_memory_bytes",
            description="The state store's memory limit (Redis maxmemory; 0: none).",
        )
        self._unowned = metrics.Gauge(
            "wa_inbox_unowned_backlog",
            description="Entries kept aside in the unowned partition (-1): changes of "
            "numbers nobody owns, never trimmed, waiting for replay (docs/security.md).",
        )
        tags = {"partition": str(partition)}
        for metric in (
            self._batch_size,
            self._batch_seconds,
            self._publish_seconds,
            self._published,
            self._redelivered,
            self._publish_failures,
            self._duplicates,
            self._replays,
            self._backlog,
            self._stalled,
            self._item_failures,
            self._rejected,
            self._conversation_events,
            self._held,
            self._filtered,
        ):
            metric.set_default_tags(tags)

    def batch_committed(self, size: int, seconds: float, publish_seconds: float | None) -> None:
        """Observe the batch's size and durations; count its events."""
        self.stats.batch_committed(size, seconds, publish_seconds)
        self._batch_size.observe(size)
        self._batch_seconds.observe(seconds)
        if size:  # a Ray counter refuses 0 (ValueError): an all-duplicate batch is empty
            self._published.inc(size)
        if publish_seconds is not None:
            self._publish_seconds.observe(publish_seconds)

    def entries_redelivered(self, count: int) -> None:
        """Count entries read again."""
        self.stats.entries_redelivered(count)
        self._redelivered.inc(count)

    def publish_failed(self) -> None:
        """Count a batch the broker did not confirm."""
        self.stats.publish_failed()
        self._publish_failures.inc()

    def duplicates_skipped(self, count: int) -> None:
        """Count items not published as duplicates."""
        self.stats.duplicates_skipped(count)
        self._duplicates.inc(count)

    def replays_quarantined(self, count: int) -> None:
        """Count items published as replays."""
        self.stats.replays_quarantined(count)
        self._replays.inc(count)

    def loop_failed(self, error: str) -> None:
        """Kept for the status only (last_error); the log line carries the traceback."""
        self.stats.loop_failed(error)

    def backlog_measured(self, entries: int) -> None:
        """Set the backlog gauge."""
        self.stats.backlog_measured(entries)
        self._backlog.set(entries)

    def items_failed(self, step: str, count: int) -> None:
        """Count failed attempts by step (normalize, stamp, publish)."""
        self.stats.items_failed(step, count)
        self._item_failures.inc(count, tags={"step": step})

    def dead_lettered(self, count: int) -> None:
        """Count items dead-lettered."""
        self.stats.dead_lettered(count)
        self._dead.inc(count)

    def events_rejected(self, count: int) -> None:
        """Count events the publisher rejected."""
        self.stats.events_rejected(count)
        self._rejected.inc(count)

    def conversation_events(self, kind: str, count: int) -> None:
        """Count conversation events by kind."""
        self.stats.conversation_events(kind, count)
        self._conversation_events.inc(count, tags={"kind": kind})

    def reorder_held(self, entries: int) -> None:
        """Set the reorder window gauge."""
        self.stats.reorder_held(entries)
        self._held.set(entries)

    def events_filtered(self, tenant_id: str, count: int) -> None:
        """Count events kept back by their tenant's forward rule (tenant: a registry id)."""
        self.stats.events_filtered(tenant_id, count)
        self._filtered.inc(count, tags={"tenant": tenant_id})

    def stall_measured(self, seconds: float) -> None:
        """Set the stall gauge."""
        self.stats.stall_measured(seconds)
        self._stalled.set(seconds)

    def store_measured(self, stats: InboxStats) -> None:
        """Set the store gauges."""
        self.stats.store_measured(stats)
        self._store_keys.set(stats.expiring_keys)
        self._store_memory.set(stats.used_memory_bytes)
        self._store_max_memory.set(stats.max_memory_bytes or 0)

    def unowned_measured(self, entries: int) -> None:
        """Set the unowned-partition gauge."""
        self.stats.unowned_measured(entries)
        self._unowned.set(entries)


@ray.remote(  # type: ignore[call-overload]  # Ray's stubs omit actor-only options
    num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=8
)
class ShardActor:
    """Owns one partition. Zero CPUs: a long-lived actor must never sit pending."""

    def __init__(
        self,
        config: ShardConfig,
        deps_factory: ShardDepsFactory,
        media_factory: Callable[[], MediaFetcher | None] | None = None,
        hook_factory: Callable[[], AccountHook] | None = None,
        tenants_factory: Callable[[], LiveTenants] | None = None,
        budget_factory: BudgetFactory | None = None,
    ) -> None:
        # The live tenant directory and the loop that keeps it current (the registry's
        # watcher, cluster/tenant_wiring.py), run like the hook's loop.
        live = tenants_factory() if tenants_factory is not None else None
        self._inbox, self._publisher = deps_factory(routes=_routes(live))
        self._tenants_loop = live[1] if live is not None else None
        self._live = live
        self._watching: asyncio.Task[None] | None = None
        self._metrics = RayShardMetrics(config.partition)
        media = media_factory() if media_factory is not None else None
        # Account changes from webhooks and per-tenant counts, after each commit.
        self._hook = hook_factory() if hook_factory is not None else None
        self._shard = ConversationShard(
            config,
            self._inbox,
            self._publisher,
            self._metrics,
            media=media,
            on_commit=self._hook.committed if self._hook is not None else None,
            tenants=live[0] if live is not None else None,
            reload_tenants=live[2] if live is not None else None,
            budget=budget_factory(_known_ids(live)) if budget_factory is not None else None,
        )
        self._hooking: asyncio.Task[None] | None = None
        self._loop: asyncio.Task[None] | None = None
        self._backlog: asyncio.Task[None] | None = None

    async def ensure_running(self) -> ShardStatus:
        """Start the pull loop if it is not running (also after an actor restart)."""
        # The load first, the check after it: calls overlap (the pool's start and its
        # health checks), and a check made before an await could let two of them each
        # start a pull loop on the one partition. Once loaded, nothing here suspends.
        loaded = await self._tenants_loaded()
        if loaded and (self._loop is None or self._loop.done()):
            self._shard.resume()
            self._loop = asyncio.create_task(self._shard.run())
        if self._backlog is None or self._backlog.done():
            self._backlog = asyncio.create_task(self._shard.report_backlog())
        if self._hook is not None and (self._hooking is None or self._hooking.done()):
            self._hooking = asyncio.create_task(self._hook.run())
        if self._tenants_loop is not None and (self._watching is None or self._watching.done()):
            self._watching = asyncio.create_task(self._tenants_loop())
        return await self.status()

    async def _tenants_loaded(self) -> bool:
        """Whether the registry's tenants are loaded (loading them now if not). The pull
        loop waits for them: until then the directory holds the tenants file's, without
        the registry's rules and pii_key, and an event published then could carry a clear
        or differently hashed number. Not loaded (the store down, as the inbox then is):
        the pool's next health check tries again."""
        if self._live is None or self._live[0].registry_version is not None:
            return True
        await self._live[2]()
        return self._live[0].registry_version is not None

    async def status(self) -> ShardStatus:
        """Counters and the partition's backlog."""
        stats = self._metrics.stats
        try:
            backlog: int | None = await self._inbox.backlog(self._shard.config.partition)
        except Exception:  # noqa: BLE001 -- status must answer even when the store is down
            backlog = None
        return ShardStatus(
            partition=self._shard.config.partition,
            running=self._loop is not None and not self._loop.done(),
            batches=stats.batches,
            published=stats.published,
            redelivered=stats.redelivered,
            publish_failures=stats.publish_failures,
            backlog=backlog,
            last_error=stats.errors[-1] if stats.errors else None,
            stalled_s=self._shard.stalled_s(),
            item_failures=stats.item_failures,
            rejected=stats.rejected,
            dead_lettered=stats.dead,
        )

    async def drain(self, timeout_s: float = 30.0) -> ShardStatus:
        """Finish the batch in hand (publish and commit), stop, close connections."""
        self._shard.stop()
        if self._backlog is not None:
            self._backlog.cancel()
        if self._watching is not None:
            self._watching.cancel()
        if self._loop is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._loop), timeout=timeout_s)
            except TimeoutError:
                self._loop.cancel()
        status = await self.status()
        if self._hook is not None:
            self._hook.stop()  # its last flush: the counts and changes of the last batches
            if self._hooking is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._hooking, timeout=5.0)
            await asyncio.gather(self._hook.store.close(), return_exceptions=True)
        await asyncio.gather(self._inbox.close(), self._publisher.close(), return_exceptions=True)
        return status


def shard_actor_options(partition: int, namespace_prefix: str = "wa") -> dict[str, Any]:
    """Ray options of shard `partition`: a stable name so a new pool finds the old actor."""
    return {"name": f"{namespace_prefix}-shard-{partition}", "get_if_exists": True}
