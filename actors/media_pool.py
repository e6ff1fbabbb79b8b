"""The media task pool (issue 12 point 2): stateless Ray actors that run the media pipeline.

A pool of `WA_MEDIA_WORKERS` named actors (`<prefix>-media-<i>`), each an async actor that
runs the pipeline (actors/media_pipeline.py) for many files at once, bounded per kind of
file: video and documents (large, slow to scan and describe) share `heavy` slots, images,
audio and stickers `light` ones, so a burst of videos never delays a photo behind them;
text messages never come here at all. Workers hold no state a restart would lose (the
temporary files are theirs alone; the stores are idempotent): Ray restarts a dead one and
the shard's fetch (actors/media_fetch.py) tries the file again, counting the loss.

The shards' side is `RayMediaRunner`: it spreads jobs over the workers (by media id, so a
retry of the same file lands on the same worker while it lives) and turns the worker's
tagged answer back into the project's errors. Answers are tagged rather than raised because
an exception crossing Ray is rebuilt from its arguments, which the project's errors with
keyword-only fields do not survive.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Callable
from typing import Any, Protocol

import ray
import structlog
from ray.exceptions import ActorUnavailableError, RayActorError, RayError

from actors.media_fetch import WorkerLost
from adapters.errors import (
    GraphThrottled,
    MediaRejected,
    MediaUnavailable,
    TransientError,
)
from models.media import MediaFile, MediaJob

log = structlog.get_logger("media_pool")

HEAVY_TYPES = frozenset({"video", "document"})


class Pipeline(Protocol):
    """What a worker runs: actors/media_pipeline.py's MediaPipeline."""

    async def process(self, job: MediaJob) -> MediaFile: ...

    async def close(self) -> None: ...


PipelineFactory = Callable[[], Pipeline]

Answer = tuple[str, dict[str, Any]]
"""("file", MediaFile as JSON) or ("error", {kind, reason, detail, retryable, retry_after_s,
code})."""


def answer_of(exc: BaseException) -> Answer | None:
    """The tagged answer of one of the project's errors (None: not one of them)."""
    if isinstance(exc, MediaRejected):
        return "error", {"kind": "rejected", "reason": exc.reason, "detail": exc.detail}
    if isinstance(exc, MediaUnavailable):
        return "error", {
            "kind": "unavailable",
            "reason": exc.reason,
            "detail": exc.detail,
            "retryable": exc.retryable,
        }
    if isinstance(exc, GraphThrottled):
        return "error", {
            "kind": "throttled",
            "code": exc.code,
            "retry_after_s": exc.retry_after_s,
            "detail": str(exc),
        }
    if isinstance(exc, TransientError):
        return "error", {"kind": "transient", "detail": str(exc)}
    return None


def raise_answer(answer: Answer) -> MediaFile:
    """The file of an answer, or its error raised again on this side."""
    tag, body = answer
    if tag == "file":
        return MediaFile.model_validate(body)
    kind = body.get("kind")
    detail = str(body.get("detail", ""))
    if kind == "rejected":
        raise MediaRejected(str(body["reason"]), detail)
    if kind == "unavailable":
        raise MediaUnavailable(str(body["reason"]), detail, retryable=bool(body["retryable"]))
    if kind == "throttled":
        raise GraphThrottled(int(body["code"]), float(body["retry_after_s"]), detail)
    raise TransientError(detail)


class MediaWork:
    """A worker's logic, testable without Ray: the pipeline behind two bounded lanes."""

    def __init__(self, pipeline: Pipeline, heavy_slots: int, light_slots: int) -> None:
        self._pipeline = pipeline
        self._heavy = asyncio.Semaphore(heavy_slots)
        self._light = asyncio.Semaphore(light_slots)
        self.running = 0

    async def run(self, job: MediaJob) -> Answer:
        """The job's answer (a bug in the pipeline is a transient `internal_error`)."""
        lane = self._heavy if job.media_type in HEAVY_TYPES else self._light
        async with lane:
            self.running += 1
            try:
                file = await self._pipeline.process(job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                tagged = answer_of(exc)
                if tagged is not None:
                    return tagged
                if isinstance(exc, OSError):  # the work dir full or unreadable: retried
                    return "error", {"kind": "transient", "detail": f"worker: {exc!r}"[:500]}
                log.exception("media_pipeline_error", media_id=job.media_id)
                return "error", {
                    "kind": "unavailable",
                    "reason": "internal_error",
                    "detail": f"{type(exc).__name__}: {exc}"[:500],
                    "retryable": False,
                }
            finally:
                self.running -= 1
        return "file", file.model_dump(mode="json")


@ray.remote(  # type: ignore[call-overload]  # Ray's stubs omit actor-only options
    num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=64
)
class MediaWorker:
    """One worker process of the pool (module docstring)."""

    def __init__(self, factory: PipelineFactory, heavy_slots: int, light_slots: int) -> None:
        self._work = MediaWork(factory(), heavy_slots, light_slots)

    async def run(self, job: MediaJob) -> Answer:
        """One try of the pipeline for the job."""
        return await self._work.run(job)

    async def ping(self) -> int:
        """Files in progress (alive)."""
        return self._work.running


def media_worker_name(index: int, prefix: str = "wa") -> str:
    """The worker's stable actor name: a new pool (or a shard) finds it again."""
    return f"{prefix}-media-{index}"


def start_media_workers(
    count: int,
    factory: PipelineFactory,
    heavy_slots: int,
    light_slots: int,
    prefix: str = "wa",
    placement: dict[str, Any] | None = None,
) -> list[Any]:
    """Create (or find) the pool's workers; their handles. `placement`: Ray options
    (resources, label selector, scheduling strategy) added to each worker's."""
    return [
        MediaWorker.options(  # type: ignore[attr-defined]
            name=media_worker_name(i, prefix), get_if_exists=True, **(placement or {})
        ).remote(factory, heavy_slots, light_slots)
        for i in range(count)
    ]


class RayMediaRunner:
    """The MediaRunner of the shards: one try on a pool worker (module docstring)."""

    def __init__(self, workers: int, prefix: str = "wa") -> None:
        self._names = [media_worker_name(i, prefix) for i in range(workers)]
        self._handles: dict[str, Any] = {}

    async def _handle(self, media_id: str) -> tuple[str, Any]:
        name = self._names[zlib.crc32(media_id.encode()) % len(self._names)]
        handle = self._handles.get(name)
        if handle is None:
            try:
                # A GCS call: off the shard's event loop, which serves every conversation.
                handle = self._handles[name] = await asyncio.to_thread(ray.get_actor, name)
            except ValueError as exc:  # not created yet, or being re-created
                raise TransientError(f"media worker {name}: {exc}") from exc
        return name, handle

    async def run(self, job: MediaJob) -> MediaFile:
        """One try: the file, or the worker's error raised here; WorkerLost when the
        worker process died on it. A try given up (the fetch's budget over, the shard
        stopping) is cancelled in the worker too, so it frees its lane's slot."""
        name, handle = await self._handle(job.media_id)
        ref = handle.run.remote(job)
        try:
            answer: Answer = await ref
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):  # best effort: the worker may be gone
                ray.cancel(ref)
            raise
        except ActorUnavailableError as exc:  # unreachable for now (restarting): not a loss
            raise TransientError(f"media worker {name}: {type(exc).__name__}") from exc
        except RayActorError as exc:  # the process died with the job in it
            self._handles.pop(name, None)
            raise WorkerLost(f"{name}: {type(exc).__name__}") from exc
        except RayError as exc:  # anything else of Ray's (GCS, object store): retried
            raise TransientError(f"media worker {name}: {type(exc).__name__}: {exc}") from exc
        return raise_answer(answer)


class LocalMediaRunner:
    """The MediaRunner that runs the pipeline in this process (tests, tools)."""

    def __init__(self, pipeline: Pipeline, heavy_slots: int = 2, light_slots: int = 8) -> None:
        self._work = MediaWork(pipeline, heavy_slots, light_slots)

    async def run(self, job: MediaJob) -> MediaFile:
        """One try of the pipeline here."""
        return raise_answer(await self._work.run(job))
