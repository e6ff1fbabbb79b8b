"""What the published media events say about their files: outcomes, bytes, throughput.

A media message's event carries `data.file` (docs/media.md): its status, reason, the bytes
downloaded (`size`, what Meta sent) and stored (`stored_size`, after sanitizing). The
tally counts each message once (its first publication) and keeps the time the first one
was sent and the last one published, so a burst's throughput is files (and bytes) over
that span: a burst offered faster than the pool works measures the pool, since ingest
and publish take milliseconds against the files' seconds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MB = 1_000_000


def file_of(event: dict[str, Any]) -> dict[str, Any] | None:
    """The event's `data.file`, or None (not a media message, or nothing fetched)."""
    data = event.get("data")
    file = data.get("file") if isinstance(data, dict) else None
    return file if isinstance(file, dict) else None


@dataclass(slots=True)
class FileTally:
    """Files by status and reason, and their bytes, over one stream's events."""

    by_status: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    attempts: Counter[int] = field(default_factory=Counter)
    no_file: int = 0  # media events published without data.file
    bytes_downloaded: int = 0
    bytes_stored: int = 0
    first_sent: float | None = None
    last_published: float | None = None

    def sent(self, at: float) -> None:
        """A message of the stream went out (its first attempt) at `at`."""
        if self.first_sent is None or at < self.first_sent:
            self.first_sent = at

    def observe(self, event: dict[str, Any], at: float) -> None:
        """The first publication of one message of the stream, consumed at `at`."""
        self.last_published = at if self.last_published is None else max(self.last_published, at)
        file = file_of(event)
        if file is None:
            self.no_file += 1
            return
        status = str(file.get("status"))
        self.by_status[status] += 1
        if file.get("reason"):
            self.by_reason[f"{status}/{file['reason']}"] += 1
        self.attempts[int(file.get("attempts") or 0)] += 1
        self.bytes_downloaded += int(file.get("size") or 0)
        if status == "stored":
            self.bytes_stored += int(file.get("stored_size") or file.get("size") or 0)

    @property
    def files(self) -> int:
        """Messages published with a file outcome."""
        return sum(self.by_status.values())

    @property
    def span_s(self) -> float:
        """From the first message sent to the last one published (0 before any)."""
        if self.first_sent is None or self.last_published is None:
            return 0.0
        return max(0.0, self.last_published - self.first_sent)

    def report(self) -> dict[str, Any]:
        """The JSON section: counts, bytes, and files/s and MB/s over the span."""
        span = self.span_s
        return {
            "files": self.files,
            "by_status": dict(self.by_status),
            "by_reason": dict(self.by_reason),
            "attempts": {str(k): v for k, v in sorted(self.attempts.items())},
            "published_without_file": self.no_file,
            "bytes_downloaded": self.bytes_downloaded,
            "bytes_stored": self.bytes_stored,
            "span_s": round(span, 3),
            "files_per_s": round(self.files / span, 2) if span else None,
            "downloaded_mb_per_s": round(self.bytes_downloaded / MB / span, 2) if span else None,
        }
