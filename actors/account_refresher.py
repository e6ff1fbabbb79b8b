"""The account refresher: keeps every tenant's account snapshot at most `interval_s` old.

Hosted on the shard pool's replica like the archiver (actors/pool.py): a loop on its event
loop, not an actor of its own (it only waits on I/O). Staggered: a restart does not read
every tenant at once (a snapshot younger than the interval waits for its turn, the others
are spread over the first `spread_s`); a per-tenant backoff on errors. Tenants without an
access token are skipped and reported (`status().no_token`): nothing can read their
account. Each refresh is `AccountBook.refresh` (actors/accounts.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog
from pydantic import BaseModel, ConfigDict

from actors.accounts import AccountBook, error_text
from adapters.errors import AdapterError, GraphThrottled
from models.account import AccountSnapshot
from models.tenant import Tenant

log = structlog.get_logger("accounts")


class AccountMetrics(Protocol):
    """Where the refresher reports (Ray gauges on the pool replica, a recorder in tests)."""

    def refreshed(self, snapshot: AccountSnapshot) -> None:
        """Set the tenant's gauges from its snapshot (flags, quality per number)."""

    def refresh_failed(self, tenant_id: str) -> None:
        """Count a refresh that failed."""


@dataclass(frozen=True, slots=True)
class RefresherConfig:
    """How often and how patiently (from Settings, cluster/wiring.py)."""

    interval_s: float = 3600.0  # WA_ACCOUNT_REFRESH_S
    max_backoff_s: float = 900.0  # WA_ACCOUNT_REFRESH_MAX_BACKOFF_S
    concurrency: int = 4  # tenants refreshed at once
    spread_s: float = 60.0  # a start-up's due refreshes are spread over at most this long
    discover_every_s: float = 30.0  # how often numbers seen in webhooks are looked for


class RefresherStatus(BaseModel):
    """What the refresher reports to the pool."""

    model_config = ConfigDict(frozen=True)

    running: bool
    refreshed: int
    failures: int
    no_token: tuple[str, ...]  # tenants skipped: no access token
    failing: dict[str, str]  # tenant -> its last error, while it keeps failing
    last_error: str | None


class AccountRefresher:
    """The refresh loop's logic, testable without Ray: `run` until `stop`."""

    def __init__(
        self,
        book: AccountBook,
        config: RefresherConfig,
        metrics: AccountMetrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.book = book
        self.config = config
        self._metrics = metrics
        self._clock = clock
        self._stop = asyncio.Event()
        self._due: dict[str, float] = {}
        self._failures_in_a_row: dict[str, int] = {}
        self.refreshed = self.failures = 0
        self.failing: dict[str, str] = {}
        self.last_error: str | None = None
        self._running = False
        self._discovered_at = float("-inf")

    def _tenants(self) -> tuple[list[Tenant], list[str]]:
        tenants = list(self.book.directory.tenants)
        with_token = [t for t in tenants if self.book.has_token(t)]
        return with_token, [t.id for t in tenants if not self.book.has_token(t)]

    async def schedule(self) -> None:
        """Set each tenant's first refresh: a stored snapshot's next turn (its fetch plus
        the interval), else soon, the tenants spread over the first `spread_s`."""
        tenants, skipped = self._tenants()
        if skipped:
            log.warning("account_refresh_skipped", tenants=skipped, reason="no access token")
        now = self._clock()
        try:
            stored = await self.book.store.get_many([t.id for t in tenants])
        except AdapterError as exc:
            log.warning("account_schedule_unread", error=error_text(exc))
            stored = {}
        spread = min(self.config.spread_s, self.config.interval_s) / max(1, len(tenants))
        for i, tenant in enumerate(tenants):
            snapshot = stored.get(tenant.id)
            if snapshot is not None:
                self._metrics.refreshed(snapshot)
            fetched = snapshot.fetched_at if snapshot is not None else None
            due = now + i * spread
            if fetched is not None and snapshot is not None and snapshot.refresh_error is None:
                due = max(due, fetched.timestamp() + self.config.interval_s)
            self._due[tenant.id] = due

    async def refresh_one(self, tenant_id: str) -> bool:
        """Refresh one tenant now; reschedule it (interval, or backoff after an error)."""
        now = self._clock()
        try:
            snapshot = await self.book.refresh(tenant_id)
        except AdapterError as exc:
            # Why retry with backoff and not at the next interval: a Graph outage or a
            # throttle passes, and a cache hours stale hides a restriction. Why not at
            # once: a revoked token or a wrong id fails every time, and each try costs
            # the tenant's Graph allowance. Meta's own wait wins when it names one.
            failures = self._failures_in_a_row.get(tenant_id, 0) + 1
            self._failures_in_a_row[tenant_id] = failures
            self.failures += 1
            self.last_error = self.failing[tenant_id] = error_text(exc)
            self._metrics.refresh_failed(tenant_id)
            ceiling = min(self.config.max_backoff_s, 2.0 * 2**failures)
            wait = random.uniform(ceiling / 2, ceiling)
            if isinstance(exc, GraphThrottled):
                wait = max(wait, exc.retry_after_s)
            self._due[tenant_id] = now + wait
            log.warning(
                "account_refresh_failed", tenant_id=tenant_id, error=self.last_error, retry_s=wait
            )
            return False
        self._failures_in_a_row.pop(tenant_id, None)
        self.failing.pop(tenant_id, None)
        self.refreshed += 1
        self._metrics.refreshed(snapshot)
        # A little jitter, so tenants refreshed together at start drift apart.
        self._due[tenant_id] = now + self.config.interval_s * random.uniform(0.95, 1.0)
        if snapshot.refresh_error:
            log.warning(
                "account_refresh_partial", tenant_id=tenant_id, error=snapshot.refresh_error
            )
        return True

    async def discover(self) -> None:
        """Tenants whose webhooks came through a number or WABA their snapshot lacks are
        due now (a new number, or a default tenant's first webhooks): at most every
        `discover_every_s`, one store read or two per tenant."""
        now = self._clock()
        if now < self._discovered_at + self.config.discover_every_s:
            return
        self._discovered_at = now
        for tenant in self._tenants()[0]:
            try:
                if await self.book.unknown_ids(tenant.id):
                    self._due[tenant.id] = min(self._due.get(tenant.id, now), now)
            except AdapterError as exc:
                log.warning("account_discover_failed", tenant_id=tenant.id, error=error_text(exc))

    async def run_due(self) -> int:
        """Refresh every tenant that is due (up to `concurrency` at once); how many."""
        now = self._clock()
        due = sorted((t for t, at in self._due.items() if at <= now), key=self._due.__getitem__)
        if not due:
            return 0
        limit = asyncio.Semaphore(self.config.concurrency)

        async def one(tenant_id: str) -> bool:
            async with limit:
                return await self.refresh_one(tenant_id)

        await asyncio.gather(*(one(t) for t in due))
        return len(due)

    async def run(self) -> None:
        """Refresh tenants as they come due until stopped."""
        self._stop.clear()
        self._running = True
        try:
            await self.schedule()
            while not self._stop.is_set():
                await self.discover()
                await self.run_due()
                upcoming = min(self._due.values(), default=self._clock() + self.config.interval_s)
                wait = min(upcoming - self._clock(), self.config.discover_every_s)
                await self._wait(max(0.05, wait))
        finally:
            self._running = False

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    def stop(self) -> None:
        """Ask `run` to return after the refreshes in hand."""
        self._stop.set()

    def status(self) -> RefresherStatus:
        """The counters, for the pool's status."""
        return RefresherStatus(
            running=self._running,
            refreshed=self.refreshed,
            failures=self.failures,
            no_token=tuple(self._tenants()[1]),
            failing=dict(self.failing),
            last_error=self.last_error,
        )

    def due(self) -> dict[str, float]:
        """Each tenant's next refresh (unix seconds)."""
        return dict(self._due)

    async def close(self) -> None:
        """Release the store's connections (the Graph client is the process's, closed by
        whoever built it)."""
        await self.book.store.close()
