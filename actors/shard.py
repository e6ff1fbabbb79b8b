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

Poison items. A step that fails on one item (normalize, number, an event the publisher
rejects) yields an `unsupported` event in its place (actors/unsupported.py) and the batch
commits; only a store or broker outage, or a MemoryError (memory pressure is no item's
fault), keeps the batch in hand. Metrics calls cannot fail the loop (GuardedMetrics). A
partition that has not advanced for `stall_after_s` while entries wait is reported
(actors/shard_stall.py). Reads and batches are bounded by count and bytes, and start
small in a new process and after a crash (actors/shard_batches.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from actors.normalize import EventDraft, normalize
from actors.shard_batches import BatchCutter
from actors.shard_metrics import ShardMetrics, ShardStats
from actors.shard_publish import FailureLog, publish_replacing
from actors.shard_stall import StallWatch
from actors.unsupported import REPLAY_CATEGORY, failed_event
from adapters.errors import AdapterError
from adapters.ports import Inbox, InboxStats, Publisher
from models.dedup import item_key
from models.event import NormalizedEvent
from models.event_keys import short_string
from models.inbox import InboxItem, StoredItem
from models.routing import UNOWNED_PARTITION

log = structlog.get_logger("shard")


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
    # Defaults until Settings carries them: a batch's bytes as stored, about (a larger
    # entry goes alone); pending this long with no commit is a stall (ShardStatus).
    max_batch_bytes: int
    stall_after_s: float


class GuardedMetrics:
    """The ShardMetrics port, unable to raise: a call that fails is logged (the first, the
    second, the fourth, ... failure of each call, with its traceback) and returns.

    The port's calls sit between the loop's data steps (after a read, before a commit);
    one raising there would drop the entries just read from this process or fail a batch
    that succeeded. A metric is worth less than the data it describes.
    """

    def __init__(self, inner: ShardMetrics, partition: int) -> None:
        self._inner = inner
        self._partition = partition
        self._failures: dict[str, int] = {}

    def _call(self, name: str, *args: object) -> None:
        try:
            getattr(self._inner, name)(*args)
        except Exception:  # logged just below: a metrics failure must not reach the data path
            failures = self._failures[name] = self._failures.get(name, 0) + 1
            if failures & (failures - 1) == 0:  # a power of two: bounded logging
                log.exception(
                    "shard_metrics_failed", partition=self._partition, call=name, times=failures
                )

    def batch_committed(self, size: int, seconds: float, publish_seconds: float | None) -> None:
        """See ShardMetrics."""
        self._call("batch_committed", size, seconds, publish_seconds)

    def entries_redelivered(self, count: int) -> None:
        """See ShardMetrics."""
        self._call("entries_redelivered", count)

    def publish_failed(self) -> None:
        """See ShardMetrics."""
        self._call("publish_failed")

    def duplicates_skipped(self, count: int) -> None:
        """See ShardMetrics."""
        self._call("duplicates_skipped", count)

    def replays_quarantined(self, count: int) -> None:
        """See ShardMetrics."""
        self._call("replays_quarantined", count)

    def loop_failed(self, error: str) -> None:
        """See ShardMetrics."""
        self._call("loop_failed", error)

    def backlog_measured(self, entries: int) -> None:
        """See ShardMetrics."""
        self._call("backlog_measured", entries)

    def items_failed(self, step: str, count: int) -> None:
        """See ShardMetrics."""
        self._call("items_failed", step, count)

    def events_rejected(self, count: int) -> None:
        """See ShardMetrics."""
        self._call("events_rejected", count)

    def stall_measured(self, seconds: float) -> None:
        """See ShardMetrics."""
        self._call("stall_measured", seconds)

    def store_measured(self, stats: InboxStats) -> None:
        """See ShardMetrics."""
        self._call("store_measured", stats)

    def unowned_measured(self, entries: int) -> None:
        """See ShardMetrics."""
        self._call("unowned_measured", entries)


@dataclass(slots=True)
class _Batch:
    """The batch in hand and how far it got."""

    stored: list[StoredItem]
    started: float
    events: list[NormalizedEvent] | None = None
    items: list[InboxItem] = field(default_factory=list)  # each event's item
    updates: dict[str, int] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    published: bool = False
    publish_s: float | None = None  # publish call to the last broker confirm


@dataclass(slots=True)
class _Numbered:
    """What sequencing a batch produced: its events, their items, sequences and marks."""

    events: list[NormalizedEvent] = field(default_factory=list)
    items: list[InboxItem] = field(default_factory=list)
    updates: dict[str, int] = field(default_factory=dict)
    marks: list[str] = field(default_factory=list)
    duplicates: int = 0
    replays: int = 0


class ConversationShard:
    """The shard's logic, testable without Ray: read, normalize, publish, commit.

    Reports what happens to `metrics` as it happens (in-memory counters by default),
    through GuardedMetrics: a metrics call that raises is logged, never raised into the
    loop's data handling. `clock` (monotonic seconds) times the stall.
    """

    def __init__(
        self,
        config: ShardConfig,
        inbox: Inbox,
        publisher: Publisher,
        metrics: ShardMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._inbox = inbox
        self._publisher = publisher
        self._metrics: ShardMetrics = GuardedMetrics(
            ShardStats() if metrics is None else metrics, config.partition
        )
        self._sequences: dict[str, int] = {}
        self._stopping = asyncio.Event()
        self._batch: _Batch | None = None
        self._cutter = BatchCutter(config.batch_size, config.max_batch_bytes)
        self._stall = StallWatch(clock)
        self._log = FailureLog(config.partition)

    def stop(self) -> None:
        """Finish the batch in hand, then return from run() and report_backlog()."""
        self._stopping.set()

    def resume(self) -> None:
        """Allow run() again after a stop() (an actor drained and then asked to run)."""
        self._stopping.clear()

    def stalled_s(self) -> float | None:
        """Seconds since the partition last advanced while entries wait, once that is
        longer than `stall_after_s`; None while the partition is not stalled."""
        seconds = self._stall.seconds()
        return seconds if seconds > self.config.stall_after_s else None

    def backlog_seen(self, entries: int) -> None:
        """A backlog measurement: waiting entries start the stall clock, none stop it."""
        if entries > 0:
            self._stall.pending()
        elif self._batch is None and not self._cutter.holding:
            self._stall.idle()

    async def run(self) -> None:
        """Process batches until stop(); store/broker failures are retried, never skipped."""
        backoff = 0.05
        linger = self.config.linger_ms / 1000
        while not self._stopping.is_set():
            try:
                done = await self.run_once()
                backoff = 0.05
                # Linger only when the read came back short (not when a slow-start read
                # came back full): entries still held go next.
                partial = done > 0 and self._cutter.read_short and not self._cutter.holding
                if partial and linger > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=linger)
            except Exception as exc:  # the loop's one catch-all, explained below
                # Why retry forever: the entries stay in the inbox uncommitted, so nothing is
                # lost while the store or broker is down; skipping ahead would break order.
                # An unexpected error (a bug) must not end the loop silently either: it is
                # logged with its traceback, counted, and the batch retried with backoff.
                # Per-item failures never get here (see "Poison items" above).
                self._metrics.loop_failed(f"{type(exc).__name__}: {exc}")
                if isinstance(exc, AdapterError):
                    log.warning("shard_retry", partition=self.config.partition, error=str(exc))
                else:
                    log.exception("shard_error", partition=self.config.partition)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
                backoff = min(backoff * 2, self.config.max_backoff_s)

    async def report_backlog(self, every_s: float = 5.0) -> None:
        """Until stop(): measure the partition's backlog (the lag to alert on) and its
        stall every `every_s`; partition 0's shard also the shared store and the unowned
        partition's size."""
        while not self._stopping.is_set():
            with contextlib.suppress(Exception):  # a store outage shows as a stale gauge
                entries = await self._inbox.backlog(self.config.partition)
                self._metrics.backlog_measured(entries)
                self.backlog_seen(entries)
            self._metrics.stall_measured(self._stall.seconds())
            if self.config.partition == 0:  # the store is shared: one shard reports it
                with contextlib.suppress(Exception):
                    self._metrics.store_measured(await self._inbox.stats())
                with contextlib.suppress(Exception):  # numbers nobody owns: no shard reads it
                    self._metrics.unowned_measured(await self._inbox.backlog(UNOWNED_PARTITION))
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
            stored = await self._next_entries()
            if not stored:
                return 0
            self._batch = _Batch(stored=stored, started=clock())
        batch = self._batch
        if batch.events is None:
            numbered = await self._sequence(batch.stored)
            batch.events, batch.items = numbered.events, numbered.items
            batch.updates, batch.seen = numbered.updates, numbered.marks
        if not batch.published:
            await self._publish(batch, clock)
        await self._inbox.commit(
            self.config.partition, [s.entry_id for s in batch.stored], batch.updates, batch.seen
        )
        self._batch = None
        self._cutter.committed(batch.stored)
        self._stall.advanced(still_pending=self._cutter.holding)
        if len(self._sequences) > self.config.sequence_cache:
            self._sequences.clear()  # reloaded from the store on demand
        self._sequences.update(batch.updates)
        self._metrics.batch_committed(len(batch.events), clock() - batch.started, batch.publish_s)
        return len(batch.events)

    async def _next_entries(self) -> list[StoredItem]:
        """The next batch's entries: from those held, else from a read."""
        if not self._cutter.holding:
            stored = await self._inbox.read(
                self.config.partition, self._cutter.read_count(), self.config.block_ms
            )
            # Held before anything else: an entry read and not held would be lost to this
            # process (each is handed over once per process) and later ones go first.
            self._cutter.hold(stored)
            if not stored:
                return []
            self._stall.pending()
            redelivered = sum(1 for s in stored if s.deliveries > 1)
            if redelivered:
                self._metrics.entries_redelivered(redelivered)
        return self._cutter.take()

    async def _publish(self, batch: _Batch, clock: Callable[[], float]) -> None:
        """Publish the batch's events (confirmed), replacing the rejected ones."""
        if batch.events:
            publish_started = clock()
            try:
                await publish_replacing(
                    self._publisher, batch.events, batch.items, self._metrics, self._log
                )
            except AdapterError:
                self._metrics.publish_failed()
                raise
            batch.publish_s = clock() - publish_started
        batch.published = True

    async def _sequence(self, stored: list[StoredItem]) -> _Numbered:
        drafts = [normalize(entry.item) for entry in stored]
        failed = [d for d in drafts if d.parts.failure is not None]
        for draft in failed:
            self._log(draft.item, draft.event_id, "normalize", draft.parts.failure)
        if failed:
            self._metrics.items_failed("normalize", len(failed))
        keys = [item_key(draft.tenant_id, draft.event_id) for draft in drafts]
        seen = await self._inbox.seen(keys)
        await self._load_sequences({s.item.conversation_id for s in stored})
        numbered = _Numbered()
        for draft, key in zip(drafts, keys, strict=True):
            if key in seen:
                numbered.duplicates += 1
                continue
            seen.add(key)
            numbered.marks.append(key)
            cid = draft.item.conversation_id
            seq = numbered.updates.get(cid, self._sequences[cid]) + 1
            numbered.updates[cid] = seq
            numbered.events.append(self._number(draft, seq, numbered))
            numbered.items.append(draft.item)
        if numbered.duplicates:
            self._metrics.duplicates_skipped(numbered.duplicates)
        if numbered.replays:
            self._metrics.replays_quarantined(numbered.replays)
        return numbered

    async def _load_sequences(self, conversation_ids: set[str]) -> None:
        missing = conversation_ids - self._sequences.keys()
        if missing:
            known = await self._inbox.sequences(missing)
            self._sequences.update({cid: known.get(cid, 0) for cid in missing})

    def _number(self, draft: EventDraft, sequence: int, numbered: _Numbered) -> NormalizedEvent:
        """The draft's event numbered `sequence`, or if that raises, `unsupported`."""
        replay = False
        try:
            replay = self._too_old(draft)
            event = draft.stamp(sequence, REPLAY_CATEGORY if replay else None)
        except MemoryError:
            raise  # memory pressure, not a poison item: the batch is retried
        except Exception as exc:  # noqa: BLE001 -- a poison item must not stop its partition
            self._log(draft.item, draft.event_id, "stamp", exc)
            self._metrics.items_failed("stamp", 1)
            event = failed_event(draft.item, draft.event_id, sequence, replay, "stamp", exc)
        if replay:
            numbered.replays += 1
            log.info(
                "item_replay",
                event_id=short_string(draft.event_id),
                tenant_id=short_string(draft.tenant_id),
            )
        return event

    def _too_old(self, draft: EventDraft) -> bool:
        limit = self.config.max_item_age_s
        if limit is None or draft.occurred_at is None:
            return False
        return (draft.item.received_at - draft.occurred_at).total_seconds() > limit
