"""The shard's log line for an item's failed attempt (actors/shard_retry.py has the rest:
the attempt budget, the backoff and the dead letter)."""

from __future__ import annotations

import structlog

from models.event_keys import short_string
from models.inbox import InboxItem

log = structlog.get_logger("shard")

_ERROR_CHARS = 300


class FailureLog:
    """One log line per failed attempt of an item, with its ids (never its content)."""

    def __init__(self, partition: int) -> None:
        self._partition = partition

    def __call__(self, item: InboxItem, event_id: str, step: str, error: object) -> None:
        """Log that `step` failed on `item` (it is retried, or dead-lettered once out of
        attempts)."""
        log.warning(
            "item_failed",
            step=step,
            partition=self._partition,
            tenant_id=short_string(item.tenant_id),
            delivery_id=short_string(item.delivery_id),
            conversation_id=item.conversation_id,
            event_id=short_string(event_id),
            error=str(error)[:_ERROR_CHARS],
        )
