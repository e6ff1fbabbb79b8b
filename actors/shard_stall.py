"""Whether a shard's partition is stalled: entries wait and nothing has been committed.

A partition stops as a whole (every conversation of every tenant on it), and a stopped
partition looks healthy from outside: the loop runs, retrying one batch. So the shard
keeps the time since its partition last advanced while entries are pending, and reports
it (ShardStatus.stalled_s, the `wa_shard_stalled_seconds` gauge) for /readyz and alerts.

Pending means a batch or read entries in hand, or a backlog measured > 0: the latter
covers entries the shard cannot even read (a read that keeps failing). The clock starts
when work appears after the partition was idle, so a long idle spell is not a stall, and
restarts at every commit.
"""

from __future__ import annotations

from collections.abc import Callable


class StallWatch:
    """The time since the partition last advanced while entries were pending."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._since: float | None = None  # None: nothing pending since the last advance

    def pending(self) -> None:
        """Entries are waiting (read, in hand, or counted in the backlog)."""
        if self._since is None:
            self._since = self._clock()

    def advanced(self, still_pending: bool) -> None:
        """A batch was committed; `still_pending` if entries are already waiting."""
        self._since = self._clock() if still_pending else None

    def idle(self) -> None:
        """Nothing waits: the backlog is empty and nothing is in hand."""
        self._since = None

    def seconds(self) -> float:
        """Seconds since the partition last advanced while entries were pending (else 0)."""
        return 0.0 if self._since is None else self._clock() - self._since
