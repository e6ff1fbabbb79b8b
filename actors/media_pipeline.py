"""One media file from Meta's media id to a stored, sanitized object: the pipeline.

resolve → download (to a temp file) → verify Meta's size and sha256 → detect the real
type → built-in checks → scanner → sanitize and describe → store object and thumbnail.
One try, no loop: `process` answers `stored` or `rejected`, or raises what the caller
(actors/media_fetch.py) retries within its budget. Its errors, by what happens next:

- MediaUnavailable, retryable: `lookup_failed` / `download_failed` (the Graph API or the
  download failed: 5xx, network, an expired URL twice in a row), `scanner_unavailable`,
  `store_unavailable`; not retryable: `not_found`, `unauthorized`, `no_token` (from the
  MediaSource as it raised them). Outages become MediaUnavailable here, where it is known
  which step failed, so the event's reason names it.
- GraphThrottled, untouched: it carries Meta's retry-after.

Idempotent: the object is put last (after its thumbnail) with Meta's sha256 in its metadata,
so an object found under the key by `head` is a finished earlier run of this very file; a
retry or a replay after a crash answers from it without downloading. Rejected files are
never found that way (`head` does not see the quarantine) and are simply checked again.

The CPU work (hashing, inflating archives, Pillow, PyAV, pypdf) runs in worker threads, so
one process overlaps many downloads; decoding is bounded by MediaLimits.decode_timeout_s.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

import structlog

from actors.media_checks import Inspection, inspect_file, normalize_sha256, sha256_file
from actors.media_limits import MediaLimits
from actors.media_sanitize import Sanitized, sanitize
from adapters.errors import (
    MediaRejected,
    MediaUnavailable,
    TransientError,
    UrlExpired,
)
from adapters.ports import MediaInfo, MediaSource, MediaStore, Scanner, StoredObject
from models.media import MediaFile, MediaJob, MediaMetadata, media_key, thumbnail_key

log = structlog.get_logger("media")


class MediaPipeline:
    """The pipeline over a MediaSource, a MediaStore and an optional Scanner."""

    def __init__(
        self,
        source: MediaSource,
        store: MediaStore,
        *,
        work_dir: Path,
        scanner: Scanner | None = None,
        limits: MediaLimits | None = None,
        url_ttl_s: float = 3600.0,
    ) -> None:
        """`work_dir`: where downloads are written (one temp folder per file, removed after
        it whatever happens); it must have room for the largest cap times the concurrency."""
        self.source = source
        self.store = store
        self.scanner = scanner
        self.limits = limits or MediaLimits()
        self.work_dir = work_dir
        self.url_ttl_s = url_ttl_s
        work_dir.mkdir(parents=True, exist_ok=True)

    async def process(self, job: MediaJob) -> MediaFile:
        """One try at the job's file: `stored` or `rejected` (see the module for errors)."""
        key = media_key(job.tenant_id, job.sent_at, job.media_id)
        done = await self._stored(key, job)
        if done is not None:
            return done
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="media-", dir=self.work_dir))
        try:
            return await self._fetch(job, key, folder)
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)

    async def close(self) -> None:
        """Release the source's, the store's and the scanner's connections."""
        await self.source.close()
        await self.store.close()
        if self.scanner is not None:
            await self.scanner.close()

    def _limits(self, job: MediaJob) -> MediaLimits:
        """The limits for this job: the service's, its type's cap lowered by the tenant's."""
        return self.limits.capped(job.media_type, job.max_bytes)

    def _ttl(self, job: MediaJob) -> float:
        """How long the job's file URLs live: the tenant's, else the service's."""
        return self.url_ttl_s if job.url_ttl_s is None else job.url_ttl_s

    async def _fetch(self, job: MediaJob, key: str, folder: Path) -> MediaFile:
        download = folder / "download"
        info = await self._resolve(job)
        try:
            info = await self._download(job, info, download)
        except MediaRejected as exc:  # refused by the download itself: nothing to keep
            return _rejected(exc, None)
        try:
            inspection = await asyncio.to_thread(
                inspect_file,
                download,
                media_type=job.media_type,
                declared_mime=job.declared_mime or info.mime_type,
                expected_sha256=(job.declared_sha256, info.sha256),
                expected_size=info.file_size,
                animated=job.animated,
                limits=self._limits(job),
            )
            await self._scan(download)
            clean = await self._sanitize(download, inspection, folder)
        except MediaRejected as exc:
            size, sha256 = await self._quarantine(job, key, download, exc)
            return _rejected(exc, key, size, sha256)
        return await self._store(job, key, inspection, clean)

    async def _resolve(self, job: MediaJob) -> MediaInfo:
        try:
            return await self.source.media_info(job.tenant_id, job.media_id)
        except (MediaUnavailable, MediaRejected):
            raise
        except TransientError as exc:
            if type(exc) is not TransientError:  # GraphThrottled: its retry-after goes up
                raise
            raise MediaUnavailable("lookup_failed", str(exc)) from exc

    async def _download(self, job: MediaJob, info: MediaInfo, dest: Path) -> MediaInfo:
        """The file at `dest`; the MediaInfo it came from (a second one when the first URL
        had expired: Meta's URLs live about 5 minutes, and a slow queue outlives one)."""
        cap = self._limits(job).max_bytes(job.media_type, animated=True)
        for attempt in (1, 2):
            try:
                await self.source.download(job.tenant_id, info, dest, cap)
                return info
            except UrlExpired:
                if attempt == 2:
                    raise
                log.info("media_url_expired", tenant_id=job.tenant_id, media_id=job.media_id)
                info = await self._resolve(job)
            except (MediaUnavailable, MediaRejected):
                raise
            except TransientError as exc:
                raise MediaUnavailable("download_failed", str(exc)) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _scan(self, path: Path) -> None:
        if self.scanner is None:
            return
        try:
            signature = await self.scanner.scan(path)
        except TransientError as exc:
            raise MediaUnavailable("scanner_unavailable", str(exc)) from exc
        if signature is not None:
            raise MediaRejected("malware", signature)

    async def _sanitize(self, path: Path, inspection: Inspection, folder: Path) -> Sanitized:
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(sanitize, path, inspection, folder, self.limits),
                self.limits.decode_timeout_s,
            )
        except TimeoutError as exc:
            # The thread runs on to its end (a thread cannot be stopped); the file is
            # refused now, and its temp folder removed under it.
            raise MediaRejected(
                "corrupt", f"describing took over {self.limits.decode_timeout_s}s"
            ) from exc

    async def _put(
        self,
        key: str,
        path: Path,
        content_type: str,
        metadata: dict[str, str],
        *,
        quarantine: bool = False,
    ) -> None:
        try:
            await self.store.put(key, path, content_type, metadata, quarantine=quarantine)
        except TransientError as exc:
            raise MediaUnavailable("store_unavailable", str(exc)) from exc

    async def _quarantine(
        self, job: MediaJob, key: str, path: Path, exc: MediaRejected
    ) -> tuple[int, str]:
        """Put the refused file in quarantine (never served); its size and sha256."""
        metadata = _source_metadata(job) | {"reason": exc.reason, "detail": exc.detail[:512]}
        sha256 = await asyncio.to_thread(sha256_file, path)
        metadata["sha256"] = sha256
        await self._put(key, path, "application/octet-stream", metadata, quarantine=True)
        log.info(
            "media_rejected",
            tenant_id=job.tenant_id,
            event_id=job.event_id,
            media_id=job.media_id,
            reason=exc.reason,
            detail=exc.detail,
        )
        return await asyncio.to_thread(lambda: path.stat().st_size), sha256

    async def _store(
        self, job: MediaJob, key: str, inspection: Inspection, clean: Sanitized
    ) -> MediaFile:
        stored_sha256 = await asyncio.to_thread(sha256_file, clean.path)
        stored_size = clean.path.stat().st_size
        thumb = thumbnail_key(key) if clean.thumbnail is not None else None
        metadata = _source_metadata(job) | {
            "sha256": inspection.sha256,
            "stored-sha256": stored_sha256,
            "size": str(inspection.size),
            "detected-mime": inspection.mime_type,
            "media-metadata": clean.metadata.model_dump_json(exclude_defaults=True),
        }
        if clean.thumbnail is not None and thumb is not None:
            await self._put(thumb, clean.thumbnail, "image/jpeg", {"source-key": key})
            metadata["thumbnail-key"] = thumb
        await self._put(key, clean.path, clean.content_type, metadata)  # last: the "done" mark
        log.info(
            "media_stored",
            tenant_id=job.tenant_id,
            event_id=job.event_id,
            media_id=job.media_id,
            mime_type=inspection.mime_type,
            size=inspection.size,
            stored_size=stored_size,
        )
        return self._file(
            job,
            key,
            inspection.sha256,
            inspection.size,
            stored_sha256,
            stored_size,
            clean.content_type,
            clean.metadata,
            thumb,
        )

    async def _stored(self, key: str, job: MediaJob) -> MediaFile | None:
        """The MediaFile of an earlier run that stored this very file, else None."""
        try:
            found: StoredObject | None = await self.store.head(key)
        except TransientError as exc:
            raise MediaUnavailable("store_unavailable", str(exc)) from exc
        if found is None or "sha256" not in found.metadata:
            return None
        sha256 = found.metadata["sha256"]
        if job.declared_sha256 is not None and normalize_sha256(job.declared_sha256) != sha256:
            return None  # another file under the same id (never seen): fetch it again
        try:
            metadata = MediaMetadata.model_validate(
                json.loads(found.metadata.get("media-metadata", "{}"))
            )
            size = int(found.metadata.get("size", found.size))
        except ValueError:
            return None  # written by something else: fetch anew, the put replaces it
        return self._file(
            job,
            key,
            sha256,
            size,
            found.metadata.get("stored-sha256"),
            found.size,
            found.content_type,
            metadata,
            found.metadata.get("thumbnail-key"),
        )

    def _file(
        self,
        job: MediaJob,
        key: str,
        sha256: str,
        size: int,
        stored_sha256: str | None,
        stored_size: int,
        mime_type: str,
        metadata: MediaMetadata,
        thumb: str | None,
    ) -> MediaFile:
        url, expires = self.store.url(key, self._ttl(job))
        thumb_url = self.store.url(thumb, self._ttl(job))[0] if thumb is not None else None
        return MediaFile(
            status="stored",
            object_key=key,
            url=url,
            url_expires_at=expires,
            size=size,
            sha256=sha256,
            stored_sha256=stored_sha256,
            stored_size=stored_size,
            mime_type=mime_type,
            metadata=metadata,
            thumbnail_key=thumb,
            thumbnail_url=thumb_url,
            attempts=1,
        )


def _source_metadata(job: MediaJob) -> dict[str, str]:
    return {
        "source": "whatsapp",
        "source-media-id": job.media_id,
        "tenant-id": job.tenant_id,
        "event-id": job.event_id,
    }


def _rejected(
    exc: MediaRejected, key: str | None, size: int | None = None, sha256: str | None = None
) -> MediaFile:
    """A refused file: the quarantine's key (None when nothing was kept), never a URL;
    `sha256` is of the bytes received (not verified: it may be the very mismatch)."""
    return MediaFile(
        status="rejected",
        reason=exc.reason,
        detail=exc.detail,
        object_key=key,
        size=size,
        sha256=sha256,
        attempts=1,
    )
