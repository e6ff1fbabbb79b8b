"""Media metrics through ray.util.metrics (Ray's Prometheus endpoint, `ray_` prefix), from
the shards' fetches (actors/media_fetch.py): one count per media message, however many
tries it took, by tenant (ids from the tenant directory, a bounded set), status and
reason."""

from __future__ import annotations

from ray.util import metrics

from models.media import MediaFile

_SECONDS = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]


class RayMediaMetrics:
    """MediaMetrics (actors/media_fetch.py) exported by each shard actor."""

    def __init__(self) -> None:
        # Counters get `_total` appended by the exporter.
        self._files = metrics.Counter(
            "wa_media_files",
            description="Media messages' files by outcome (status, reason), once per message.",
            tag_keys=("tenant", "status", "reason"),
        )
        self._bytes = metrics.Counter(
            "wa_media_bytes",
            description="Bytes downloaded from Meta for media files, by outcome status.",
            tag_keys=("tenant", "status"),
        )
        self._tries = metrics.Counter(
            "wa_media_retries",
            description="Media pipeline tries after the first (outages, expired URLs, ...).",
            tag_keys=("tenant",),
        )
        self._seconds = metrics.Histogram(
            "wa_media_fetch_seconds",
            description="From the fetch's start to its file (its conversation's wait).",
            boundaries=_SECONDS,
            tag_keys=("status",),
        )

    def fetched(self, tenant_id: str, file: MediaFile, seconds: float) -> None:
        """One media message's file is decided."""
        self._files.inc(
            1, tags={"tenant": tenant_id, "status": file.status, "reason": file.reason or ""}
        )
        if file.size:
            self._bytes.inc(file.size, tags={"tenant": tenant_id, "status": file.status})
        if file.attempts > 1:
            self._tries.inc(file.attempts - 1, tags={"tenant": tenant_id})
        self._seconds.observe(seconds, tags={"status": file.status})
