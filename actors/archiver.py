"""The archiver: moves raw deliveries from the inbox to the archive store, and sweeps it.

The inbox is the durability point: a delivery's raw body is appended in the same atomic
step as its items (adapters/ports.py `append_deliveries`), so the webhook's 200 never
waits for the archive store. This loop, hosted by the shard pool's replica (actors/pool.py),
takes the oldest waiting bodies, writes each to the archive store and deletes them from
the inbox only once the store confirmed the write; a crash in between writes an object
again, which changes nothing (writes are idempotent).

The archive store down is never an outage of the pipeline: conversations are published
by the shards whatever this loop does; the bodies wait in the inbox (a gauge, and a
degraded /readyz detail past WA_ARCHIVE_STALL_AFTER_S) and the loop retries with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from pydantic import BaseModel, ConfigDict

from adapters.errors import AdapterError
from adapters.ports import Archive, Inbox

log = structlog.get_logger("archiver")

_BACKLOG_EVERY_S = 5.0  # how often the backlog gauge is refreshed


@dataclass(frozen=True, slots=True)
class ArchiverConfig:
    """How the archiver reads, retries and sweeps (from Settings, cluster/wiring.py)."""

    batch: int  # bodies taken per step, written concurrently
    poll_s: float  # idle wait when nothing is pending
    max_backoff_s: float
    retention_s: int
    sweep_every_s: float
    stall_after_s: float  # /readyz: degraded once a body waits longer (ingress/archive_health.py)


class ArchiverMetrics(Protocol):
    """Where the archiver reports (Ray metrics in the pool; a plain recorder in tests)."""

    def archived(self, count: int) -> None:
        """Count deliveries the store confirmed."""

    def failed(self) -> None:
        """Count a step that failed (the store or the inbox)."""

    def backlog(self, deliveries: int) -> None:
        """Set the backlog gauge."""

    def swept(self, count: int) -> None:
        """Count objects deleted by the retention sweep."""


class ArchiverStatus(BaseModel):
    """What the archiver reports to the pool."""

    model_config = ConfigDict(frozen=True)

    running: bool
    archived: int
    failures: int
    swept: int
    last_error: str | None


class Archiver:
    """The loop's logic, testable without Ray: `step` moves one batch, `run` loops."""

    def __init__(
        self,
        config: ArchiverConfig,
        inbox: Inbox,
        archive: Archive,
        metrics: ArchiverMetrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.inbox = inbox
        self.archive = archive
        self._metrics = metrics
        self._clock = clock
        self._stop = asyncio.Event()
        self._swept_at: float | None = None
        self._backlog_at = 0.0
        self.archived = self.failures = self.swept = 0
        self.last_error: str | None = None

    async def step(self) -> int:
        """Write up to `batch` waiting bodies to the store, delete those it confirmed from
        the inbox; how many moved. Raises the first failure after deleting the others."""
        pending = await self.inbox.archive_pending(self.config.batch)
        if not pending:
            return 0
        results = await asyncio.gather(
            *(self.archive.put(p.delivery) for p in pending), return_exceptions=True
        )
        confirmed = [p.entry_id for p, r in zip(pending, results, strict=True) if r is None]
        await self.inbox.archive_done(confirmed)
        self.archived += len(confirmed)
        if confirmed:
            self._metrics.archived(len(confirmed))
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return len(confirmed)

    async def sweep_if_due(self) -> int:
        """Delete what is older than the retention, at most once per `sweep_every_s` (the
        first time at start-up); how many objects."""
        now = self._clock()
        if self._swept_at is not None and now - self._swept_at < self.config.sweep_every_s:
            return 0
        self._swept_at = now
        before = datetime.fromtimestamp(now, UTC) - timedelta(seconds=self.config.retention_s)
        deleted = await self.archive.sweep(before)
        self.swept += deleted
        if deleted:
            self._metrics.swept(deleted)
            log.info("archive_swept", objects=deleted, before=before.isoformat())
        return deleted

    async def _measure_backlog(self) -> None:
        now = self._clock()
        if now - self._backlog_at >= _BACKLOG_EVERY_S:
            self._backlog_at = now
            self._metrics.backlog((await self.inbox.archive_backlog()).deliveries)

    async def run(self) -> None:
        """Move bodies until stopped; on any store failure back off and try again."""
        failures_in_a_row = 0
        self._stop.clear()
        while not self._stop.is_set():
            try:
                await self.sweep_if_due()
                moved = await self.step()
                await self._measure_backlog()
                failures_in_a_row = 0
            except AdapterError as exc:
                # Why retry forever: an archive or inbox outage is never the body's fault,
                # and the body stays safe in the inbox meanwhile. Exponential backoff with
                # full jitter, so archivers restarted together do not hit the store in step.
                failures_in_a_row += 1
                self.failures += 1
                self.last_error = str(exc)[:300]
                self._metrics.failed()
                log.warning("archive_failed", error=self.last_error, attempt=failures_in_a_row)
                ceiling = min(self.config.max_backoff_s, 0.1 * 2**failures_in_a_row)
                await self._wait(random.uniform(0, ceiling))
                continue
            if moved < self.config.batch:
                await self._wait(self.config.poll_s)

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    def stop(self) -> None:
        """Ask `run` to return after the step in hand."""
        self._stop.set()

    def status(self, running: bool) -> ArchiverStatus:
        """The counters, for the pool's status."""
        return ArchiverStatus(
            running=running,
            archived=self.archived,
            failures=self.failures,
            swept=self.swept,
            last_error=self.last_error,
        )

    async def close(self) -> None:
        """Release the inbox's and the store's connections."""
        await asyncio.gather(self.inbox.close(), self.archive.close(), return_exceptions=True)
