"""A conversation shard: pulls one inbox partition in order and publishes its events.

Many logical conversations share one shard (one Ray actor process); each conversation's
items arrive in append order because one partition has exactly one reader, and a batch is
published as a unit before it is committed. Sequence numbers are assigned from the stored
last sequence, so a batch redelivered after a crash gets the numbers it was published with.

Duplicates and replays. Each event's idempotency key (tenant + event_id: the wamid, the
wamid and status, or a content hash) is checked against the marks of events committed in
the dedup window (keys: models/dedup.py); an event already marked, or repeated inside the
batch, is not published (its entry is still committed) and takes no sequence number. The
marks of the published events are written by the same atomic commit as the sequences. A
crash between publish and commit republishes the batch with the same sequences:
at-least-once.
An item whose Meta timestamp is older than `max_item_age_s` when it reached the ingress
is published with category `replay` instead of its own (routing key
`<tenant>.replay.<type>`): quarantined away from normal consumers, counted, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog

from actors.normalize import EventDraft, normalize
from actors.shard_metrics import ShardMetrics, ShardStats
from adapters.errors import AdapterError
from adapters.ports import Inbox, Publisher
from models.dedup import item_key
from models.event import NormalizedEvent
from models.inbox import StoredItem

log = structlog.get_logger("shard")

REPLAY_CATEGORY = "replay"


@dataclass(frozen=True, slots=True)
class ShardConfig:
    """How a shard reads its partition (built from Settings by cluster/wiring.py)."""

    partition: int
    batch_size: int
    block_ms: int
    linger_ms: float  # wait after a partial batch so the next is larger (see Settings)
    max_backoff_s: float
    sequence_cache: int
    max_item_age_s: float | None


@dataclass(slots=True)
class _Batch:
    """The batch in hand and how far it got."""

    stored: list[StoredItem]
    started: float
    events: list[NormalizedEvent] | None = None
    updates: dict[str, int] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    published: bool = False
    publish_s: float | None = None  # publish call to the last broker confirm


class ConversationShard:
    """The shard's logic, testable without Ray: read, normalize, publish, commit.

    Reports what happens to `metrics` as it happens (in-memory counters by default).
    """

    def __init__(
        self,
        config: ShardConfig,
        inbox: Inbox,
        publisher: Publisher,
        metrics: ShardMetrics | None = None,
    ) -> None:
        self.config = config
        self._inbox = inbox
        self._publisher = publisher
        self._metrics: ShardMetrics = ShardStats() if metrics is None else metrics
        self._sequences: dict[str, int] = {}
        self._stopping = asyncio.Event()
        self._batch: _Batch | None = None

    def stop(self) -> None:
        """Finish the batch in hand, then return from run() and report_backlog()."""
        self._stopping.set()

    def resume(self) -> None:
        """Allow run() again after a stop() (an actor drained and then asked to run)."""
        self._stopping.clear()

    async def run(self) -> None:
        """Process batches until stop(); store/broker failures are retried, never skipped."""
        backoff = 0.05
        linger = self.config.linger_ms / 1000
        while not self._stopping.is_set():
            try:
                done = await self.run_once()
                backoff = 0.05
                if 0 < done < self.config.batch_size and linger > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=linger)
            except Exception as exc:  # the loop's one catch-all, explained below
                # Why retry forever: the entries stay in the inbox uncommitted, so nothing is
                # lost while the store or broker is down; skipping ahead would break order.
                # An unexpected error (a bug) must not end the loop silently either: it is
                # logged with its traceback, counted, and the batch retried with backoff.
                self._metrics.loop_failed(f"{type(exc).__name__}: {exc}")
                if isinstance(exc, AdapterError):
                    log.warning("shard_retry", partition=self.config.partition, error=str(exc))
                else:
                    log.exception("shard_error", partition=self.config.partition)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
                backoff = min(backoff * 2, self.config.max_backoff_s)

    async def report_backlog(self, every_s: float = 5.0) -> None:
        """Until stop(): measure the partition's backlog every `every_s` (the lag to alert on)."""
        while not self._stopping.is_set():
            with contextlib.suppress(Exception):  # a store outage shows as a stale gauge
                self._metrics.backlog_measured(await self._inbox.backlog(self.config.partition))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=every_s)

    async def run_once(self) -> int:
        """One batch: read, sequence, normalize, publish (confirmed), commit. Returns its size.

        A failure at any step keeps the batch in hand and the next call resumes it at the
        failed step: a batch that was published but not committed is not published twice
        by this process, and one that was read is never skipped.
        """
        clock = asyncio.get_running_loop().time
        if self._batch is None:
            stored = await self._inbox.read(
                self.config.partition, self.config.batch_size, self.config.block_ms
            )
            if not stored:
                return 0
            self._batch = _Batch(stored=stored, started=clock())
            redelivered = sum(1 for s in stored if s.deliveries > 1)
            if redelivered:
                self._metrics.entries_redelivered(redelivered)
        batch = self._batch
        if batch.events is None:
            batch.events, batch.updates, batch.seen = await self._sequence(batch.stored)
        if not batch.published:
            if batch.events:
                publish_started = clock()
                try:
                    await self._publisher.publish(batch.events)
                except AdapterError:
                    self._metrics.publish_failed()
                    raise
                batch.publish_s = clock() - publish_started
            batch.published = True
        await self._inbox.commit(
            self.config.partition, [s.entry_id for s in batch.stored], batch.updates, batch.seen
        )
        self._batch = None
        if len(self._sequences) > self.config.sequence_cache:
            self._sequences.clear()  # reloaded from the store on demand
        self._sequences.update(batch.updates)
        self._metrics.batch_committed(len(batch.events), clock() - batch.started, batch.publish_s)
        return len(batch.events)

    async def _sequence(
        self, stored: list[StoredItem]
    ) -> tuple[list[NormalizedEvent], dict[str, int], list[str]]:
        drafts = [normalize(entry.item) for entry in stored]
        keys = [item_key(draft.tenant_id, draft.event_id) for draft in drafts]
        seen = await self._inbox.seen(keys)
        conversation_ids = {s.item.conversation_id for s in stored}
        missing = conversation_ids - self._sequences.keys()
        if missing:
            known = await self._inbox.sequences(missing)
            self._sequences.update({cid: known.get(cid, 0) for cid in missing})
        updates: dict[str, int] = {}
        events: list[NormalizedEvent] = []
        marks: list[str] = []
        duplicates = replays = 0
        for draft, key in zip(drafts, keys, strict=True):
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            marks.append(key)
            cid = draft.item.conversation_id
            seq = updates.get(cid, self._sequences[cid]) + 1
            updates[cid] = seq
            if self._too_old(draft):
                replays += 1
                log.info("item_replay", event_id=draft.event_id, tenant_id=draft.tenant_id)
                events.append(draft.stamp(seq, REPLAY_CATEGORY))
            else:
                events.append(draft.stamp(seq))
        if duplicates:
            self._metrics.duplicates_skipped(duplicates)
        if replays:
            self._metrics.replays_quarantined(replays)
        return events, updates, marks

    def _too_old(self, draft: EventDraft) -> bool:
        limit = self.config.max_item_age_s
        if limit is None or draft.occurred_at is None:
            return False
        return (draft.item.received_at - draft.occurred_at).total_seconds() > limit
