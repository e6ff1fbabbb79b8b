"""The shard's side of media (issue 12): one fetch per media message, never raising, done
by its deadline.

The shard starts a fetch for a media message as soon as it reads the entry (while the
reorder window may still hold it) and holds that conversation only until the fetch ends
(actors/shard_media.py); every other conversation goes on. A fetch runs the pipeline
(actors/media_pipeline.py) through a MediaRunner — the Ray media pool in the service
(actors/media_pool.py), the pipeline in-process in tests and tools — and retries what is
worth retrying (a Graph API 5xx or throttling, an expired URL, the store or scanner down, a
media worker that died) with backoff until `wait_s` from its start. It always returns a
MediaFile: `stored` or `rejected` from the pipeline, `failed` with the reason once the
budget is spent or when retrying cannot help (the media id unknown, the token refused),
`skipped` when media is off. The message is then published with it; a replay of the
delivery or the item fetches again (the pipeline keeps no marks that could block it).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog

from adapters.errors import GraphThrottled, MediaRejected, MediaUnavailable, TransientError
from models.event_message import MEDIA_TYPES, MediaData
from models.inbox import InboxItem
from models.media import MediaFile, MediaJob

log = structlog.get_logger("media")


class WorkerLost(Exception):
    """The process running the pipeline died on this file (a decoder crash, OOM)."""


class MediaMetrics(Protocol):
    """Where the fetch outcomes go (actors/media_metrics.py in the service)."""

    def fetched(self, tenant_id: str, file: MediaFile, seconds: float) -> None: ...


class MediaRunner(Protocol):
    """One try of the pipeline for a job, wherever it runs."""

    async def run(self, job: MediaJob) -> MediaFile:
        """The file stored or rejected. Raises MediaUnavailable (retryable or not),
        GraphThrottled, TransientError, WorkerLost."""
        ...


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    """When the shard fetches media and how long a conversation may wait for it."""

    enabled: bool = True
    types: Collection[str] = MEDIA_TYPES  # message types fetched (others: skipped)
    wait_s: float = 30.0  # WA_MEDIA_WAIT_S: from the fetch's start to `failed/timeout`
    retry_base_s: float = 0.5
    retry_max_delay_s: float = 5.0
    max_worker_losses: int = 2  # a file that kills its worker twice is `failed/worker_lost`


def media_job(item: InboxItem, data: MediaData, occurred_at: datetime | None) -> MediaJob:
    """The job of a media message's item: the object is keyed by the message's own time
    (Meta's timestamp, parsed by the normalizer), else the receipt time."""
    raw = item.item if isinstance(item.item, dict) else {}
    sent_at = occurred_at or item.received_at
    return MediaJob(
        tenant_id=item.tenant_id,
        event_id=str(raw.get("id") or ""),
        media_id=data.media_id,
        media_type=data.media_type,
        declared_mime=data.mime_type,
        declared_sha256=data.sha256,
        filename=data.filename,
        animated=data.animated,
        voice=data.voice,
        sent_at=sent_at,
    )


@dataclass(slots=True)
class FetchStats:
    """Counts of fetch outcomes, for metrics and tests."""

    outcomes: dict[str, int] = field(default_factory=dict)  # "<status>/<reason>"
    retries: int = 0

    def count(self, file: MediaFile) -> None:
        key = f"{file.status}/{file.reason or '-'}"
        self.outcomes[key] = self.outcomes.get(key, 0) + 1


class MediaFetcher:
    """Fetches jobs through a runner within the policy's budget (module docstring)."""

    def __init__(
        self,
        runner: MediaRunner,
        policy: MediaPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        metrics: MediaMetrics | None = None,
        has_token: Callable[[str], bool] | None = None,
    ) -> None:
        """`has_token(tenant_id)`: whether the tenant has a Graph API token; a tenant
        without one gets `failed/no_token` at once, without a try (and a service whose
        tenants have none runs no media worker: cluster/wiring.py)."""
        self._runner = runner
        self._metrics = metrics
        self._has_token = has_token
        self.policy = policy
        self._clock = clock
        self._rng = rng or random.Random()
        self.stats = FetchStats()

    def wanted(self, data: MediaData) -> bool:
        """Whether this media message's file is fetched at all (else `skipped`)."""
        return self.policy.enabled and data.media_type in self.policy.types

    def skipped(self, data: MediaData) -> MediaFile:
        """The file of a media message not fetched on purpose."""
        reason = "disabled" if not self.policy.enabled else "type_disabled"
        return MediaFile(status="skipped", reason=reason, sha256=None)

    async def fetch(self, job: MediaJob) -> MediaFile:
        """The job's file, by `wait_s` at the latest; never raises (but CancelledError).
        Out of time, the reason is the last try's failure, else `timeout` (a try that
        was still running)."""
        tries = _Tries()
        started = self._clock()
        try:
            async with asyncio.timeout(self.policy.wait_s):
                if self._has_token is not None and not self._has_token(job.tenant_id):
                    file = MediaFile(
                        status="failed",
                        reason="no_token",
                        detail="the tenant has no Graph API access token (WA_ACCESS_TOKEN)",
                    )
                else:
                    file = await self._tries(job, tries)
        except TimeoutError:
            reason, detail = tries.last or ("timeout", "")
            file = MediaFile(
                status="failed",
                reason=reason,
                detail=f"{detail[:300]} (gave up after {self.policy.wait_s:g}s)".lstrip(),
                attempts=tries.count,
            )
        self.stats.count(file)
        if self._metrics is not None:
            try:
                self._metrics.fetched(job.tenant_id, file, self._clock() - started)
            except Exception:  # a metrics failure must not hold the conversation
                log.exception("media_metrics_failed")
        if file.status != "stored":
            log.warning(
                "media_not_stored",
                tenant_id=job.tenant_id,
                media_id=job.media_id,
                status=file.status,
                reason=file.reason,
                detail=file.detail,
            )
        return file

    async def _tries(self, job: MediaJob, state: _Tries) -> MediaFile:
        while True:
            state.count += 1
            outcome = await self._try(job, state)
            if isinstance(outcome, MediaFile):
                return outcome
            reason, detail, delay = outcome
            state.last = (reason, detail)
            if delay is None:
                exponent = min(state.count - 1, 30)
                full = min(self.policy.retry_max_delay_s, self.policy.retry_base_s * 2.0**exponent)
                delay = full * (0.5 + self._rng.random() / 2)
            log.info(
                "media_retry",
                tenant_id=job.tenant_id,
                media_id=job.media_id,
                reason=reason,
                detail=detail[:200],
                delay_s=round(delay, 3),
            )
            await asyncio.sleep(delay)

    async def _try(self, job: MediaJob, state: _Tries) -> MediaFile | tuple[str, str, float | None]:
        """One run: the final file, or (reason, detail, wait or None) to try again."""
        tries = state.count
        try:
            file = await self._runner.run(job)
            return file.model_copy(update={"attempts": tries})
        except MediaRejected as exc:  # a runner that raises instead of answering rejected
            return MediaFile(
                status="rejected", reason=exc.reason, detail=exc.detail, attempts=tries
            )
        except MediaUnavailable as exc:
            if not exc.retryable:
                return MediaFile(
                    status="failed", reason=exc.reason, detail=exc.detail, attempts=tries
                )
            return exc.reason, exc.detail, None
        except GraphThrottled as exc:
            return "lookup_failed", str(exc), exc.retry_after_s
        except WorkerLost as exc:
            state.losses += 1
            if state.losses >= self.policy.max_worker_losses:
                return MediaFile(
                    status="failed", reason="worker_lost", detail=str(exc), attempts=tries
                )
            return "worker_lost", str(exc), None
        except TransientError as exc:
            return _transient_reason(exc), str(exc), None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("media_fetch_error", tenant_id=job.tenant_id, media_id=job.media_id)
            return MediaFile(
                status="failed",
                reason="internal_error",
                detail=f"{type(exc).__name__}: {exc}",
                attempts=tries,
            )


@dataclass(slots=True)
class _Tries:
    """One fetch's tries so far and the last one's failure (reason, detail)."""

    count: int = 0
    losses: int = 0  # tries whose worker died
    last: tuple[str, str] | None = None


def _transient_reason(exc: TransientError) -> str:
    """A FAIL_REASONS code for an outage, from where it came (the adapters' messages)."""
    text = str(exc).lower()
    if "media worker" in text:
        return "worker_lost"
    if "clamd" in text or "scanner" in text:
        return "scanner_unavailable"
    if "s3" in text or "store" in text:
        return "store_unavailable"
    if "download" in text:
        return "download_failed"
    return "lookup_failed"
