"""The tenant registry's wiring (issue 13, docs/tenants.md): which store holds it (the
inbox's own Redis or SQLite file) and the watcher that keeps each process's live
TenantDirectory current.

Every process that uses tenants (ingress replicas, shard actors, the shard pool's replica
with the account refresher, the media workers) holds one TenantDirectory and runs one
TenantWatcher: at start it seeds the registry with the tenants of WA_TENANTS_FILE /
WA_APP_SECRET (only ids the registry never held) and loads it; then every
WA_TENANT_RELOAD_S it reads the registry's version (one GET) and reloads on a change.
Polling, not pub/sub: one GET a second per process is nothing for the store, survives a
store restart without resubscribing, and a missed notification cannot leave a replica
stale for ever; the issue's bound (a change everywhere within 5 s) holds with the default
of 1 s.

A store outage keeps the last directory (webhooks keep being served with what was known),
logged once per outage and counted (`wa_tenant_registry_errors_total`). Secrets loaded
from the registry are added to the process's log redaction (cluster/logging.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

import structlog

from adapters.errors import TransientError
from adapters.ports import TenantRegistry
from adapters.redis_tenants import RedisTenantRegistry
from adapters.sqlite_tenants import SqliteTenantRegistry
from cluster.backends import InboxConfig, RedisInboxConfig
from cluster.logging import redact_also
from models.tenant import Tenant, TenantConflict, TenantDirectory

log = structlog.get_logger("tenants")


def build_tenant_registry(inbox: InboxConfig) -> TenantRegistry:
    """The registry beside the inbox (same Redis and prefix, same SQLite file)."""
    if isinstance(inbox, RedisInboxConfig):
        return RedisTenantRegistry(inbox.url, inbox.prefix)
    return SqliteTenantRegistry(inbox.path)


class WatcherMetrics(Protocol):
    """What the watcher counts."""

    def registry_error(self) -> None:
        """The registry did not answer a poll or a load."""


class _NoMetrics:
    def registry_error(self) -> None:
        pass


class RayWatcherMetrics:
    """WatcherMetrics through ray.util.metrics, tagged with the process kind."""

    def __init__(self, process: str) -> None:
        from ray.util import metrics

        self._errors = metrics.Counter(
            "wa_tenant_registry_errors",  # the exporter appends _total
            description="Polls and loads of the tenant registry that failed (the last "
            "directory is kept meanwhile).",
            tag_keys=("process",),
        )
        self._errors.set_default_tags({"process": process})

    def registry_error(self) -> None:
        """Count one failure."""
        self._errors.inc()


class TenantWatcher:
    """Keeps `directory` equal to the registry's latest set (see the module docstring)."""

    def __init__(
        self,
        registry: TenantRegistry,
        directory: TenantDirectory,
        seed_tenants: Sequence[Tenant],
        every_s: float,
        *,
        metrics: WatcherMetrics | None = None,
    ) -> None:
        self.registry = registry
        self.directory = directory
        self._seed = tuple(seed_tenants)
        self._every_s = every_s
        self._metrics = metrics or _NoMetrics()
        self._seeded = False
        self._failing = False
        self._stop = asyncio.Event()
        self._lock: asyncio.Lock | None = None

    @property
    def loaded(self) -> bool:
        """Whether the directory holds a registry version (not just the tenants file)."""
        return self.directory.registry_version is not None

    async def run(self) -> None:
        """Seed and load, then poll until `stop`; never raises for the store's failures."""
        await self.refresh()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._every_s)
            if not self._stop.is_set():
                await self.poll()

    def stop(self) -> None:
        """End `run` after its current step."""
        self._stop.set()

    async def poll(self) -> bool:
        """Reload when the registry's version moved; whether the directory changed."""
        try:
            version = await self.registry.version()
        except TransientError as exc:
            self._failed(exc)
            return False
        if self.loaded and version == self.directory.registry_version:
            self._recovered()
            return False
        return await self.refresh()

    async def refresh(self) -> bool:
        """Seed (until it once succeeds) and load now; whether the directory changed."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # a write's refresh and the poll's: one load at a time
            try:
                if not self._seeded:
                    added = await self.registry.seed(self._seed)
                    self._seeded = True
                    if added:
                        log.info("tenants_seeded", tenant_ids=added)
                version, tenants = await self.registry.load()
            except TransientError as exc:
                self._failed(exc)
                return False
            self._recovered()
            if self.loaded and version == self.directory.registry_version:
                return False
            return self._replace(version, tenants)

    def _replace(self, version: int, tenants: list[Tenant]) -> bool:
        try:
            self.directory.replace(tenants, version)
        except TenantConflict as exc:
            # The registry checks every write, so only a hand-edited store gets here: keep
            # serving the last good set rather than drop every tenant.
            log.error("tenants_conflict_skipped", registry_version=version, reason=str(exc))
            return False
        redact_also(v for t in tenants for v in t.secret_values())
        log.info("tenants_loaded", registry_version=version, tenants=len(tenants))
        return True

    def _failed(self, exc: Exception) -> None:
        self._metrics.registry_error()
        if not self._failing:  # once per outage: a poll a second would flood the logs
            self._failing = True
            log.warning("tenant_registry_unavailable", error=str(exc), kept=len(self.directory))

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("tenant_registry_available")


_FIRST_LOAD_WAIT_S = 15.0
"""How long a thread-watched process waits for its first load before going on with the
seed tenants (the store's own timeouts bound a load: 5 s connect, 10 s reply)."""


def watch_in_thread(make_watcher: Callable[[], TenantWatcher], name: str) -> threading.Thread:
    """Run a watcher on a daemon thread of its own (its own event loop and registry
    client), for a process whose event loop the wiring cannot reach (the shard pool's
    replica hosting the account refresher, a media worker). The other thread only reads
    the directory's tenants by id (`get`, `tenants`), each one attribute read, which the
    swap in `replace` keeps consistent. Returns once the first load is done (or tried for
    _FIRST_LOAD_WAIT_S): a media job must not find a registry tenant without its token."""
    first = threading.Event()

    def main() -> None:
        async def watch() -> None:
            watcher = make_watcher()
            try:
                await watcher.refresh()
                first.set()
                await watcher.run()
            finally:
                first.set()
                await watcher.registry.close()

        asyncio.run(watch())

    thread = threading.Thread(target=main, name=name, daemon=True)
    thread.start()
    first.wait(timeout=_FIRST_LOAD_WAIT_S)
    return thread


def tenant_watcher(
    inbox: InboxConfig, seed_tenants: Sequence[Tenant], every_s: float, process: str
) -> TenantWatcher:
    """A live directory (the seed tenants until the first load) and its watcher over the
    registry beside `inbox`; the caller runs `watcher.run()` on its event loop."""
    return TenantWatcher(
        build_tenant_registry(inbox),
        TenantDirectory(seed_tenants),
        seed_tenants,
        every_s,
        metrics=RayWatcherMetrics(process),
    )


_shared: dict[str, TenantWatcher] = {}


def live_tenants(
    inbox: InboxConfig, seed_tenants: Sequence[Tenant], every_s: float, process: str
) -> tuple[
    TenantDirectory, Callable[[], Coroutine[Any, Any, None]], Callable[[], Awaitable[object]]
]:
    """This process's one live directory over the registry beside `inbox`, the loop that
    keeps it current and its immediate load, for a shard actor (actors/shard_actor.py
    LiveTenants).
    The same one for every caller in the process (the shard and its media fetcher)."""
    key = inbox.model_dump_json()
    watcher = _shared.get(key)
    if watcher is None:
        watcher = _shared[key] = tenant_watcher(inbox, seed_tenants, every_s, process)
    return watcher.directory, watcher.run, watcher.refresh


def watched_directory(
    inbox: InboxConfig, seed_tenants: Sequence[Tenant], every_s: float, process: str
) -> TenantDirectory:
    """A live directory kept current by a watcher on a thread of its own."""
    directory = TenantDirectory(seed_tenants)

    def make() -> TenantWatcher:
        return TenantWatcher(
            build_tenant_registry(inbox),
            directory,
            seed_tenants,
            every_s,
            metrics=RayWatcherMetrics(process),
        )

    watch_in_thread(make, f"tenant-watcher-{process}")
    return directory
