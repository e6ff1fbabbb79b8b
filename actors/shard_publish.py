"""Publishing a shard's batch so that an event the publisher rejects is that event's
failure: it is replaced in its place and the batch published again.

The Publisher port reports events that can never be published (adapters/ports.py), and
sends nothing of a batch holding one, so publishing the whole batch again keeps every
event in its place. The first replacement is the item's `unsupported` event with its raw
item; if that is rejected too (the raw item is the trouble), the minimal event without
body data. A third rejection would be a bug: it raises, the loop retries with backoff,
and the partition shows as stalled.
"""

from __future__ import annotations

import structlog

from actors.shard_metrics import ShardMetrics
from actors.unsupported import REPLAY_CATEGORY, failed_event, minimal_event
from adapters.ports import Publisher, Rejection
from models.event import NormalizedEvent
from models.event_keys import short_string
from models.inbox import InboxItem

log = structlog.get_logger("shard")

_ATTEMPTS = 3  # as it is, with unsupported replacements, with minimal ones
_ERROR_CHARS = 300


class FailureLog:
    """One log line per poison item of a partition, with its ids (never its content)."""

    def __init__(self, partition: int) -> None:
        self._partition = partition

    def __call__(self, item: InboxItem, event_id: str, step: str, error: object) -> None:
        """Log that `step` failed on `item` (whose event is published as unsupported)."""
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


async def publish_replacing(
    publisher: Publisher,
    events: list[NormalizedEvent],
    items: list[InboxItem],
    metrics: ShardMetrics,
    failure_log: FailureLog,
) -> None:
    """Publish `events` (items[i] is the item of events[i]) until none is rejected.

    Replacements are written into `events` itself, so a batch retried after an outage
    publishes them, not the events already rejected.
    """
    for attempt in range(_ATTEMPTS):
        rejected = await publisher.publish(events)
        if not rejected:
            return
        metrics.events_rejected(len(rejected))
        if attempt + 1 == _ATTEMPTS:
            raise RuntimeError(f"the publisher rejected minimal events: {rejected[:3]}")
        _replace(events, items, rejected, minimal=attempt > 0, failure_log=failure_log)


def _replace(
    events: list[NormalizedEvent],
    items: list[InboxItem],
    rejected: list[Rejection],
    minimal: bool,
    failure_log: FailureLog,
) -> None:
    build = minimal_event if minimal else failed_event
    for rejection in rejected:
        index, reason = rejection.index, rejection.reason
        event, item = events[index], items[index]
        failure_log(item, event.event_id, "publish", reason)
        replay = event.category == REPLAY_CATEGORY
        events[index] = build(item, event.event_id, event.sequence, replay, "publish", reason)
