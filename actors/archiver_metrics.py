"""The archiver's metrics through ray.util.metrics (Ray's Prometheus endpoint, `ray_` prefix)."""

from __future__ import annotations

from ray.util import metrics


class RayArchiverMetrics:
    """ArchiverMetrics (actors/archiver.py) exported by the replica that hosts the loop."""

    def __init__(self) -> None:
        # Counters get `_total` appended by the exporter.
        self._archived = metrics.Counter(
            "wa_archive_writes",
            description="Raw deliveries the archive store confirmed, then deleted from the inbox.",
        )
        self._failed = metrics.Counter(
            "wa_archive_failures",
            description="Archiver steps that failed (archive store or inbox), retried later.",
        )
        self._backlog = metrics.Gauge(
            "wa_archive_backlog",
            description="Raw deliveries in the inbox waiting for the archive store.",
        )
        self._swept = metrics.Counter(
            "wa_archive_swept",
            description="Archive objects deleted by the retention sweep (WA_ARCHIVE_RETENTION_S).",
        )

    def archived(self, count: int) -> None:
        """Count confirmed writes."""
        self._archived.inc(count)

    def failed(self) -> None:
        """Count a failed step."""
        self._failed.inc()

    def backlog(self, deliveries: int) -> None:
        """Set the backlog gauge."""
        self._backlog.set(deliveries)

    def swept(self, count: int) -> None:
        """Count swept objects."""
        self._swept.inc(count)
