"""The shard's hook after each commit: per-tenant analytics and webhook-driven account
changes, written to the AccountStore off the shard's data path.

The shard calls `committed(events)` with the events of every batch it committed (after
the inbox commit returned). The call is synchronous, O(events) and never raises: it
counts (models/tenant_stats.py `tally`) and picks the account changes
(actors/account_changes.py) into memory. `run` writes them every `flush_every_s`
(one `apply` and one `add_counts` round trip), so a Redis slower than usual never slows a
shard, and the store down loses no commit: pending writes wait and are tried again.

What this costs in guarantees, and why it is acceptable: counts and changes held in
memory are lost if the shard's process dies before the next flush (analytics count at most
once; the next account refresh reads the truth). Counted after the commit, a batch is
never counted twice. Changes are applied in commit order: every account and template
item of a tenant shares one conversation key, hence one partition and one shard
(ARCHITECTURE.md "Customer key"), so one hook sees them in Meta's order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

import structlog

from actors.account_changes import change_of
from adapters.errors import AdapterError
from adapters.ports import AccountStore
from models.account_change import AccountChange
from models.event import NormalizedEvent
from models.tenant_stats import tally

log = structlog.get_logger("accounts")


class TenantMetrics(Protocol):
    """Per-tenant analytics in metrics (Ray counters in the shard actor)."""

    def counted(self, tenant_id: str, counters: Counter[str]) -> None:
        """Add a committed batch's counters of one tenant."""


class AccountHook:
    """`committed` after each commit; `run` (a task of the shard actor) writes."""

    def __init__(
        self,
        store: AccountStore,
        *,
        flush_every_s: float = 1.0,
        max_pending_changes: int = 10_000,
        metrics: TenantMetrics | None = None,
    ) -> None:
        self.store = store
        self._flush_every_s = flush_every_s
        self._max_pending = max_pending_changes
        self._metrics = metrics
        self._changes: list[AccountChange] = []
        self._counts: dict[str, Counter[str]] = {}
        self._stop = asyncio.Event()
        self.dropped_changes = 0
        self.failures = 0
        self.last_error: str | None = None

    def committed(
        self, events: Sequence[NormalizedEvent], filtered: Sequence[NormalizedEvent] = ()
    ) -> None:
        """Count a committed batch and pick its account changes (never raises: the
        batch is committed whatever happens here). `filtered`: its events the tenant's
        forward rule kept back, counted as such (`filtered:<category>:<type>`); their
        account changes apply all the same (the account state is the service's)."""
        try:
            for tenant_id, counters in tally(events, filtered).items():
                self._counts.setdefault(tenant_id, Counter()).update(counters)
                if self._metrics is not None:
                    self._metrics.counted(tenant_id, counters)
            for event in (*events, *filtered):
                change = change_of(event)
                if change is not None:
                    self._changes.append(change)
            overflow = len(self._changes) - self._max_pending
            if overflow > 0:
                # The store has been down long: the oldest changes go (the next refresh
                # reads the truth), memory stays bounded.
                del self._changes[:overflow]
                self.dropped_changes += overflow
        except Exception as exc:  # noqa: BLE001 -- the process boundary of the hook
            log.error("account_hook_failed", error=repr(exc)[:300])

    @property
    def pending(self) -> int:
        """Changes not yet written."""
        return len(self._changes)

    async def flush(self) -> None:
        """Write the pending changes (in order), then the counts; what fails stays pending
        (TransientError raised after keeping it)."""
        changes, self._changes = self._changes, []
        try:
            if changes:
                await self.store.apply(changes)
        except BaseException:
            self._changes[:0] = changes
            raise
        counts, self._counts = self._counts, {}
        try:
            if counts:
                await self.store.add_counts(counts)
        except BaseException:
            for tenant_id, counters in counts.items():
                self._counts.setdefault(tenant_id, Counter()).update(counters)
            raise

    async def run(self) -> None:
        """Flush every `flush_every_s` until stopped, and once more then."""
        self._stop.clear()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._flush_every_s)
            await self._flush_logged()

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except AdapterError as exc:
            # Why retry at the next tick and not now: the store is down for everyone,
            # and the pending writes are bounded (changes) or merged (counts).
            self.failures += 1
            self.last_error = str(exc)[:300]
            log.warning("account_hook_flush_failed", error=self.last_error, pending=self.pending)

    def stop(self) -> None:
        """Ask `run` to flush once more and return."""
        self._stop.set()
