"""The archive's readiness detail: raw deliveries waiting too long for the archive store.

The inbox holds every accepted body until the archive store confirmed it (the archiver,
actors/archiver.py), so a store that is down costs no delivery and blocks no
conversation: this check only says "degraded" (the replica stays ready). Taking the
ingress out of rotation for it would turn an archive outage into refused webhooks.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from adapters.ports import Inbox
from ingress.config import ReadyCheck


def archive_backlog_check(
    inbox: Inbox, stall_after_s: float, clock: Callable[[], float] = time.time
) -> ReadyCheck:
    """None while nothing waits longer than `stall_after_s`; else a detail naming how many
    raw deliveries wait and for how long. Raises (down) only when the inbox does."""

    async def archive_backlog() -> str | None:
        backlog = await inbox.archive_backlog()
        oldest = backlog.oldest_received_at
        if oldest is None:
            return None
        waited = clock() - oldest.timestamp()
        if waited < stall_after_s:
            return None
        return (
            f"{backlog.deliveries} raw deliveries waiting for the archive store, "
            f"the oldest for {round(waited)} s"
        )

    return archive_backlog
