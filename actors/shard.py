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

Conversations (issue 10, docs/conversations.md). Each item is applied to its
conversation's record (actors/conversation.py), which the commit stores with the
acknowledgement; inbound messages pass the reorder window (actors/reorder.py) first. A
batch whose order is not entry order per conversation is recorded in the store before it
is published (`record_order`), so a restart republishes exactly it (`_load_replay`);
redelivered entries are otherwise taken in entry order, not held.

Poison items (actors/shard_retry.py). A step that fails on one item (normalize or stamp
raising, an event the publisher rejects) is that item's failed attempt: the batch waits a
backoff and is tried again, and an item out of attempts is dead-lettered (stored in the
failed store before the batch is published, sent to the dead-letter exchange before the
commit) with a placeholder event in its place, so the partition moves on. A store or
broker outage, or a MemoryError (memory pressure is no item's fault), is no item's
failure: the batch stays in hand and is retried without limit. Metrics calls cannot fail
the loop (GuardedMetrics). A partition that has not advanced for `stall_after_s` while
entries wait is reported (actors/shard_stall.py). Reads and batches are bounded by count
and bytes, and start small in a new process and after a crash (actors/shard_batches.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from actors.conversation import (
    Applied,
    apply,
    believed_time,
    is_inbound_message,
    message_keys,
    state_event,
)
from actors.conversation_cache import ConversationCache
from actors.media_fetch import MediaFetcher
from actors.normalize import EventDraft, normalize
from actors.reorder import ReorderBuffer
from actors.shard_batches import BatchCutter, entry_bytes
from actors.shard_media import MediaWaits
from actors.shard_metrics import ShardMetrics, ShardStats
from actors.shard_publish import FailureLog
from actors.shard_retry import Failure, Park, RetryPolicy, attempt, dead_letter
from actors.shard_stall import StallWatch
from actors.shard_throttle import PublishBudget, ShardThrottle
from actors.unsupported import REPLAY_CATEGORY, dead_letter_event, failed_event, minimal_event
from adapters.errors import AdapterError, Fenced, RouteUnavailable
from adapters.ports import Inbox, InboxStats, Publisher, StateWrite
from models.conversation import ConversationRecord, MessageRecord
from models.dead_letter import Attempt, DeadLetter, dead_letter_id
from models.dedup import item_key
from models.event import NormalizedEvent
from models.event_keys import short_string
from models.inbox import InboxItem, StoredItem
from models.routing import UNOWNED_PARTITION
from models.tenant import TenantDirectory
from models.tenant_pii import mask_event

log = structlog.get_logger("shard")

_FLUSH_TIMEOUT_S = 5.0  # a stopping shard's attempt at publishing what its window holds
_ROUTE_DOWN_S = 1.0  # a tenant's broken route is tried again this often (its entries wait)
_RELOAD_TIMEOUT_S = 10.0  # a reload of the tenants a newer entry waits for (then goes on)


@dataclass(frozen=True, slots=True)
class ShardConfig:
    """How a shard reads its partition (built from Settings by cluster/wiring.py)."""

    partition: int
    batch_size: int
    block_ms: int
    linger_ms: float  # wait after a partial batch so the next is larger (see Settings)
    max_backoff_s: float
    max_item_age_s: float | None
    # Defaults until Settings carries them: a batch's bytes as stored, about (a larger
    # entry goes alone); pending this long with no commit is a stall (ShardStatus).
    max_batch_bytes: int
    stall_after_s: float
    # Conversations (actors/conversation.py): records cached per shard, evicted past
    # `conversation_cache` or after `conversation_idle_s` unused; the reorder window
    # (actors/reorder.py, 0 turns it off) and how many entries it may hold at most.
    conversation_cache: int
    conversation_idle_s: float
    reorder_window_ms: float
    reorder_max_held: int
    # Items that fail (actors/shard_retry.py): tries per item before it is dead-lettered,
    # and the backoff between tries (base, doubled per try, capped; jittered).
    max_attempts: int
    retry_base_s: float
    retry_max_delay_s: float


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

    def dead_lettered(self, count: int) -> None:
        """See ShardMetrics."""
        self._call("dead_lettered", count)

    def stall_measured(self, seconds: float) -> None:
        """See ShardMetrics."""
        self._call("stall_measured", seconds)

    def store_measured(self, stats: InboxStats) -> None:
        """See ShardMetrics."""
        self._call("store_measured", stats)

    def unowned_measured(self, entries: int) -> None:
        """See ShardMetrics."""
        self._call("unowned_measured", entries)

    def conversation_events(self, kind: str, count: int) -> None:
        """See ShardMetrics."""
        self._call("conversation_events", kind, count)

    def reorder_held(self, entries: int) -> None:
        """See ShardMetrics."""
        self._call("reorder_held", entries)

    def events_filtered(self, tenant_id: str, count: int) -> None:
        """See ShardMetrics."""
        self._call("events_filtered", tenant_id, count)


@dataclass(slots=True)
class _Batch:
    """The batch in hand and how far it got."""

    stored: list[StoredItem]
    drafts: list[EventDraft]
    started: float
    events: list[NormalizedEvent] | None = None
    # The events as published: under their tenants' PII rule (models/tenant_pii.py), one
    # per `events` member; the clear ones stay the shard's (state, the commit hook).
    out: list[NormalizedEvent] = field(default_factory=list)
    items: list[InboxItem] = field(default_factory=list)  # each event's item
    state: StateWrite = field(default_factory=StateWrite)
    seen: list[str] = field(default_factory=list)
    published: bool = False
    publish_s: float | None = None  # publish call to the last broker confirm
    # The batch's order differs from what a restarted shard would take (entry order per
    # conversation): recorded in the store before publishing (_Ready, below).
    record_order: bool = False
    origins: list[int] = field(default_factory=list)  # each event's draft index
    numbered: _Numbered | None = None
    # Dead-lettered entries (by draft index), stored in the failed store before anything
    # of the batch is published and sent to the dead-letter exchange before the commit.
    dead: dict[int, DeadLetter] = field(default_factory=dict)
    dead_stored: bool = True
    dead_published: bool = True
    arrivals: list[int] = field(default_factory=list)  # each entry's _Ready.arrival
    recorded: bool = False  # its order is recorded in the store (record_order done)
    looked_up: bool = False  # its redelivered entries were looked up in the failed store


@dataclass(slots=True)
class _Ready:
    """An entry released to be batched, with its draft and its place in the partition as
    this process read it (`arrival`)."""

    stored: StoredItem
    draft: EventDraft
    arrival: int
    size: int | None = None  # entry_bytes, measured when a batch is cut
    charged: bool = False  # took its tenant's publish token (actors/shard_throttle.py)
    held_since: float | None = None  # held for its tenant's tokens from (the throttle's clock)
    # Kept by an earlier pass of the media check: earlier than any media hold of its
    # conversation made since (a cut bounded by count, or the throttle, left it behind).
    media_passed: bool = False


@dataclass(slots=True)
class _Numbered:
    """What sequencing a batch produced: its events, their items, sequences and marks."""

    events: list[NormalizedEvent] = field(default_factory=list)
    items: list[InboxItem] = field(default_factory=list)
    records: dict[str, ConversationRecord] = field(default_factory=dict)
    messages: dict[str, MessageRecord] = field(default_factory=dict)
    marks: list[str] = field(default_factory=list)
    origins: list[int] = field(default_factory=list)  # each event's draft index
    failures: list[Failure] = field(default_factory=list)
    duplicates: int = 0
    replays: int = 0
    conversation_events: dict[str, int] = field(default_factory=dict)  # by kind
    # Events their tenant's forward rule does not publish (unnumbered; counted).
    filtered: list[NormalizedEvent] = field(default_factory=list)


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
        wall_clock: Callable[[], float] = time.time,
        media: MediaFetcher | None = None,
        on_commit: Callable[[Sequence[NormalizedEvent], Sequence[NormalizedEvent]], None]
        | None = None,
        tenants: TenantDirectory | None = None,
        budget: PublishBudget | None = None,
        reload_tenants: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """`media`: fetches media messages' files before they are published
        (actors/shard_media.py); None publishes them without (`data.file` null).
        `on_commit`: told each committed batch's published events (in clear) and those
        their tenant's forward rule kept back (the account hook: webhook-driven account
        changes, per-tenant counts); it must not raise.
        `tenants`: the live tenant directory (kept current by the actor's registry
        watcher, cluster/tenant_wiring.py) whose rules the shard applies; None: every
        tenant has the default rules. `reload_tenants`: loads the registry now (the
        watcher's refresh; it must not raise), awaited when an entry was split against a
        newer registry version than the directory holds."""
        self.config = config
        self._tenants = tenants if tenants is not None else TenantDirectory(())
        self._reload_tenants = reload_tenants
        self._reloaded_for = 0  # the highest entry version a reload was awaited for
        self._on_commit = on_commit
        self._inbox = inbox
        self._publisher = publisher
        self._metrics: ShardMetrics = GuardedMetrics(
            ShardStats() if metrics is None else metrics, config.partition
        )
        self._records = ConversationCache(
            config.conversation_cache, config.conversation_idle_s, clock
        )
        self._reorder = ReorderBuffer(config.reorder_window_ms / 1000, config.reorder_max_held)
        self._wall = wall_clock
        self._taken: list[StoredItem] = []  # taken from the cutter, not yet held or batched
        self._ready: list[_Ready] = []  # released or passing, in publish order, not batched
        self._arrivals = itertools.count()
        self._replay_loaded = False  # the crashed batch's recorded order was looked up
        # This incarnation's claim of the partition (Inbox.claim), made before anything is
        # read; `_fenced` once a later incarnation claimed it: this one stops for good.
        self._epoch: int | None = None
        self._fenced = False
        self._replayed: set[str] = set()  # entries taken from that order: skipped by reads
        self._replay_cut = 0  # how many of the ready entries are that batch (one batch)
        self._ready_bounded = False  # the ready entries are one take of the cutter
        self._flushing = False  # stopping: release every held entry
        self._stopping = asyncio.Event()
        self._batch: _Batch | None = None
        self._cutter = BatchCutter(config.batch_size, config.max_batch_bytes)
        self._stall = StallWatch(clock)
        self._log = FailureLog(config.partition)
        self._retry = RetryPolicy(
            config.max_attempts, config.retry_base_s, config.retry_max_delay_s
        )
        self._attempts: dict[str, list[Attempt]] = {}  # failed attempts by entry id
        # Conversations whose item failed, with their entries, until their next try.
        self._park: Park[_Ready] = Park(lambda r: r.stored.entry_id)
        # Media fetches, and the conversations held until their file is ready.
        self._media: MediaWaits[_Ready] = MediaWaits(
            media, lambda r: r.stored.entry_id, lambda t: self._tenants.rules(t).media
        )
        # Tenants' publish budgets, and the conversations held while theirs is spent.
        self._throttle: ShardThrottle[_Ready] | None = (
            ShardThrottle(
                budget.leases,
                lambda r: r.stored.entry_id,
                lambda r: (r.draft.tenant_id, r.draft.item.conversation_id),
                budget.lease_s,
                budget.max_held,
                budget.metrics,
            )
            if budget is not None
            else None
        )

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
        elif (
            self._batch is None
            and not self._cutter.holding
            and not self._in_hand()
            and not len(self._park)
            and not len(self._media)
            and not self._throttled()
        ):
            self._stall.idle()

    def _in_hand(self) -> bool:
        """Entries held by the window or released and not yet batched."""
        return bool(self._ready) or bool(len(self._reorder))

    @property
    def fenced(self) -> bool:
        """A later incarnation claimed the partition: this shard no longer works on it."""
        return self._fenced

    async def run(self) -> None:
        """Process batches until stop(); store/broker failures are retried, never skipped.

        Except one: `Fenced` (a later incarnation of this partition's shard has claimed
        it, as when Ray started the replacement of a shard whose owner died before this
        process was gone). Then the loop ends at once, without the stop's flush: the
        store refuses this incarnation's reads and commits, and the entries in hand are
        the new one's to publish (it re-reads them all)."""
        if self._fenced:
            return
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
            except Fenced as exc:
                self._fenced = True
                self._metrics.loop_failed(f"Fenced: {exc}")
                log.error("shard_fenced", partition=self.config.partition, error=str(exc))
                if self._throttle is not None:
                    self._throttle.close()
                return
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
        await self._flush()
        if self._throttle is not None:
            self._throttle.close()  # leases in flight; a resumed loop starts them again

    async def _flush(self) -> None:
        """Stopping: publish what the reorder window holds (in order) rather than leave it
        to the next start. One attempt: on a failure the entries stay uncommitted in the
        inbox and the next start publishes them, nothing is lost."""
        self._flushing = True
        try:
            async with asyncio.timeout(_FLUSH_TIMEOUT_S):  # a broker down must not hold a stop
                # Parked conversations are not waited for: the next start tries them.
                while self._batch is not None or self._in_hand():
                    done = await self.run_once()
                    if done == 0 and self._batch is None and not self._in_hand():
                        break
        except Exception:
            log.warning("shard_flush_failed", partition=self.config.partition, exc_info=True)
        finally:
            self._flushing = False

    async def report_backlog(self, every_s: float = 5.0) -> None:
        """Until stop(): measure the partition's backlog (the lag to alert on) and its
        stall every `every_s`; partition 0's shard also the shared store and the unowned
        partition's size. And start the limiters of tenants new to the directory (a
        tenant's first entries must not wait for its limiter's process to start)."""
        while not self._stopping.is_set() and not self._fenced:  # fenced: the new one's
            if self._throttle is not None:
                self._throttle.warm(self._tenants.ids)
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
        if self._epoch is None:  # before the recorded batch or any entry is read
            self._epoch = await self._inbox.claim(self.config.partition)
        while True:
            batch = self._batch or await self._take_batch(clock)
            if batch is None:
                return 0
            if await self._published(batch, clock):
                break
            # Every entry of the batch was parked (its items failed): the next batch, now
            # if a parked conversation is already due (no backoff), else on the next call.
            self._batch = None
            due = self._park.next_due()
            if due is None or due > clock():
                return 0
        if not batch.dead_published:
            await self._publish_dead(batch)
        # Dropped from the cache before the commit and put back after it: if anything
        # fails in between (or the put itself), the records are read from the store again,
        # never used as they were before this batch.
        self._records.drop(batch.state.conversations)
        await self._inbox.commit(
            self.config.partition, [s.entry_id for s in batch.stored], batch.state, batch.seen
        )
        self._batch = None
        for stored in batch.stored:
            self._attempts.pop(stored.entry_id, None)
        self._cutter.committed(batch.stored)
        waiting = (
            self._cutter.holding
            or self._in_hand()
            or bool(len(self._park))
            or bool(len(self._media))
            or self._throttled()
        )
        self._stall.advanced(still_pending=waiting)
        self._records.put(batch.state.conversations)
        events = batch.events or []
        self._settle(batch, events)
        filtered = batch.numbered.filtered if batch.numbered is not None else []
        if self._on_commit is not None and (events or filtered):
            self._on_commit(events, filtered)
        if batch.numbered is not None:
            self._report(batch.numbered)
        self._metrics.batch_committed(len(events), clock() - batch.started, batch.publish_s)
        return len(events)

    async def _take_batch(self, clock: Callable[[], float]) -> _Batch | None:
        """The next batch from the ready entries (made ready first), now in hand."""
        await self._fill_ready()
        cut, record_order = self._cut()
        if not cut:
            if self._replay_cut:
                # The recorded batch waits whole for its files and nothing may go before
                # it: wait for a fetch to end (no read would block this loop instead).
                await self._media.wait(self.config.block_ms / 1000)
            elif self._throttle is not None and self._throttle.full:
                # Read no more (the known limit, docs/tenants.md): wait for a lease.
                await self._throttle.wait(self.config.block_ms / 1000)
            return None
        self._batch = _Batch(
            stored=[r.stored for r in cut],
            drafts=[r.draft for r in cut],
            started=clock(),
            record_order=record_order,
            arrivals=[r.arrival for r in cut],
        )
        del self._ready[: len(cut)]  # only once the batch holds them
        return self._batch

    async def _published(self, batch: _Batch, clock: Callable[[], float]) -> bool:
        """Record the order (when needed), sequence and publish the batch (unless done),
        its dead letters stored first. An item that fails parks its conversation's
        entries (out of the batch) and the rest is sequenced again; one out of attempts
        is dead and its placeholder published in its place. Each round parks or kills at
        least one item, so this ends: True once published, False when every entry was
        parked."""
        while not batch.published:
            if not batch.stored:
                return False
            if batch.record_order:
                # Before anything is published: a restart replays exactly this batch first.
                await self._inbox.record_order(
                    self.config.partition, [s.entry_id for s in batch.stored]
                )
                batch.record_order = False
                batch.recorded = True
            await self._prepare(batch, clock)
            if batch.events is None:
                continue  # an item failed while sequencing: parked or dead, go again
            if not batch.dead_stored:
                await self._inbox.store_dead_letters(list(batch.dead.values()))
                batch.dead_stored = True
            await self._publish(batch, clock)
        return True

    async def _prepare(self, batch: _Batch, clock: Callable[[], float]) -> None:
        """Sequence the batch unless it is: its events, state and marks. An item that
        fails counts an attempt (`_failed`) and leaves `batch.events` None. The first
        time, the batch's redelivered entries are looked up in the failed store: a crashed
        process may have dead-lettered some (and published their placeholders)."""
        if batch.events is not None:
            return
        if not batch.looked_up:
            redelivered = {
                dead_letter_id(self.config.partition, s.entry_id): i
                for i, s in enumerate(batch.stored)
                if s.deliveries > 1
            }
            if redelivered:
                known = await self._inbox.find_dead_letters(list(redelivered))
                batch.dead = {redelivered[i]: letter for i, letter in known.items()}
            batch.looked_up = True
        numbered = await self._sequence(batch.drafts, batch.dead)
        if numbered.failures:
            self._failed(batch, numbered.failures, clock)
            return
        out, failures = self._masked(numbered, batch.dead)
        if failures:
            self._failed(batch, failures, clock)
            return
        batch.numbered = numbered
        batch.events, batch.items, batch.seen = numbered.events, numbered.items, numbered.marks
        batch.out = out
        batch.origins = numbered.origins
        batch.state = StateWrite(conversations=numbered.records, messages=numbered.messages)

    def _failed(self, batch: _Batch, failures: list[Failure], clock: Callable[[], float]) -> None:
        """Count each failure against its entry's attempts and log it. An entry out of
        attempts is dead-lettered in the batch (stored before publishing, a placeholder in
        its place); the conversation of any other is parked with all its entries in the
        batch, for the backoff of its most-tried entry. The batch is to be sequenced
        again."""
        at = datetime.fromtimestamp(self._wall(), UTC)
        park: dict[str, int] = {}  # conversation -> attempts of its most-tried failure
        for failure in failures:
            stored, draft = batch.stored[failure.index], batch.drafts[failure.index]
            tried = self._attempts.setdefault(stored.entry_id, [])
            tried.append(attempt(failure.step, failure.error, at))
            self._log(draft.item, draft.event_id, failure.step, failure.error)
            self._metrics.items_failed(failure.step, 1)
            if len(tried) < self.config.max_attempts:
                cid = draft.item.conversation_id
                park[cid] = max(park.get(cid, 0), len(tried))
                continue
            letter = dead_letter(self.config.partition, stored, draft, tried)
            batch.dead[failure.index] = letter
            batch.dead_stored = batch.dead_published = False
            log.error(
                "item_dead_lettered",
                partition=self.config.partition,
                dead_letter_id=letter.dead_letter_id,
                tenant_id=short_string(letter.tenant_id),
                step=letter.step,
                attempts=len(tried),
            )
        batch.events = None
        if park:
            self._park_conversations(batch, park, clock())

    def _park_conversations(
        self, batch: _Batch, park: dict[str, int], now: float, wait_s: float | None = None
    ) -> None:
        """Move the entries of these conversations out of the batch into the park (for
        the backoff of their attempts, or `wait_s`)."""
        keep = [i for i, d in enumerate(batch.drafts) if d.item.conversation_id not in park]
        for cid, tried in park.items():
            entries = [
                _Ready(batch.stored[i], batch.drafts[i], batch.arrivals[i])
                for i, d in enumerate(batch.drafts)
                if d.item.conversation_id == cid
            ]
            # Its later entries held for its tenant's tokens, then those held for their
            # media (the throttled ones are the earlier: _unpark), go into the park
            # behind it (one place per conversation: actors/shard_media.py).
            if self._throttle is not None:
                entries += self._throttle.take(cid)
            entries += self._media.take(cid)
            delay = self._retry.delay(tried) if wait_s is None else wait_s
            self._park.park(cid, entries, now + delay)
        renumber = {old: new for new, old in enumerate(keep)}
        batch.dead = {renumber[i]: letter for i, letter in batch.dead.items() if i in renumber}
        batch.stored = [batch.stored[i] for i in keep]
        batch.drafts = [batch.drafts[i] for i in keep]
        batch.arrivals = [batch.arrivals[i] for i in keep]
        # The remainder's order is recorded again: a restart must replay what is published.
        batch.record_order = batch.record_order or batch.recorded

    async def _publish_dead(self, batch: _Batch) -> None:
        """Send the batch's dead letters to the dead-letter exchange; those it refuses are
        stored again marked unpublished (they are in the failed store only)."""
        letters = list(batch.dead.values())
        refused = set(await self._publisher.publish_dead(letters))
        if refused:
            unpublished = {
                index: letter.model_copy(update={"published": False})
                for index, letter in batch.dead.items()
                if letter.dead_letter_id in refused
            }
            await self._inbox.store_dead_letters(list(unpublished.values()))
            batch.dead.update(unpublished)
        batch.dead_published = True
        self._metrics.dead_lettered(len(letters))

    def _report(self, numbered: _Numbered) -> None:
        """The committed batch's counts (once per batch, however often it was tried)."""
        if numbered.duplicates:
            self._metrics.duplicates_skipped(numbered.duplicates)
        for kind, count in numbered.conversation_events.items():
            self._metrics.conversation_events(kind, count)
        if numbered.replays:
            self._metrics.replays_quarantined(numbered.replays)
        if numbered.filtered:
            known = self._tenants.ids  # the bounded label set: ids from the registry
            by_tenant: dict[str, int] = {}
            for event in numbered.filtered:
                label = event.tenant_id if event.tenant_id in known else "_other"
                by_tenant[label] = by_tenant.get(label, 0) + 1
            for tenant_id, count in by_tenant.items():
                self._metrics.events_filtered(tenant_id, count)

    async def _fill_ready(self) -> None:
        """Make entries ready to batch, unless some are: first (once per process) the
        batch a crashed process recorded and may have published, in its recorded order;
        then what the cutter gives, held back or passed by the reorder window."""
        if not self._replay_loaded:
            await self._load_replay()
        self._unpark()
        if self._ready:
            return
        if not self._taken:
            self._taken = await self._next_entries()
        fresh = self._taken
        drafts = [self._media.start(e.entry_id, normalize(e.item)) for e in fresh]
        arrivals = [next(self._arrivals) for _ in fresh]
        passing: list[_Ready] = []
        # Each entry's window: its tenant's rule, else the service's (0: passes at once).
        windows = [self._window_s(d.tenant_id) for d in drafts]
        if any(w > 0 for w in windows):
            inbound = {d.item.conversation_id for d in drafts if is_inbound_message(d.item)}
            records = await self._load_records(inbound)
            now = self._wall()
            for entry, draft, arrival, window in zip(fresh, drafts, arrivals, windows, strict=True):
                # Redelivered entries (a crashed process's) are not held: a restart takes
                # them in entry order, which is what makes its events those of the first
                # attempt (a batch published in another order was recorded: _load_replay).
                held = window > 0 and entry.deliveries == 1 and is_inbound_message(draft.item)
                if held and not _late(records, draft):
                    self._reorder.add(entry, draft, arrival, now, window)
                else:
                    passing.append(_Ready(entry, draft, arrival))
        else:
            passing = [_Ready(*args) for args in zip(fresh, drafts, arrivals, strict=True)]
        forced = self._reorder.forced
        released = self._reorder.release(self._wall(), everything=self._flushing)
        self._ready = [_Ready(h.stored, h.draft, h.order[1]) for h in released] + passing
        # Nothing released: the ready entries are one take of the cutter, within bounds.
        self._ready_bounded = not released
        self._taken = []  # only now: every entry is held or ready
        if self._reorder.forced > forced:
            self._metrics.conversation_events("forced", self._reorder.forced - forced)
        self._metrics.reorder_held(len(self._reorder))

    def _unpark(self) -> None:
        """Parked conversations whose backoff is over go first to be batched, failed
        drafts normalized again (their entries are the conversation's earliest: they were
        cut from the front and every later one was parked behind them). Held ones whose
        file is ready go back after their conversation's entries still ready (those were
        before the hold: a cut bounded by count or bytes can leave some)."""
        if len(self._park):
            released = self._park.release(asyncio.get_running_loop().time())
            for ready in released:
                if ready.draft.parts.failure is not None:
                    ready.draft = self._media.start(
                        ready.stored.entry_id, normalize(ready.stored.item)
                    )
            if released:
                self._ready = released + self._ready
                self._ready_bounded = False
        # The throttle's before the media hold's: a conversation both hold has its
        # throttled entries earlier (they passed the media check; every later entry went
        # behind the media hold), so released in one pass they must come first.
        if self._throttle is not None and len(self._throttle):
            waited = self._throttle.release()
            for ready, since in waited:
                ready.held_since = since
            if waited:
                self._ready = _after_their_own(self._ready, [r for r, _ in waited])
                self._ready_bounded = False
        if len(self._media):
            held = self._media.release()
            if held:
                self._ready = _after_their_own(self._ready, held)
                self._ready_bounded = False

    async def _load_replay(self) -> None:
        """The batch a crashed process recorded before publishing it (its order differed
        from entry order), as one batch in that order: the restart republishes exactly
        the events it may have published (same ids, same sequences)."""
        recorded = await self._inbox.recorded_order(self.config.partition)
        entries = await self._inbox.entries(self.config.partition, recorded) if recorded else []
        self._replay_loaded = True
        if not entries:
            return
        self._replayed = {e.entry_id for e in entries}
        self._ready = [
            _Ready(
                entry,
                self._media.start(entry.entry_id, normalize(entry.item)),
                next(self._arrivals),
            )
            for entry in entries
        ]
        self._replay_cut = len(self._ready)
        log.info(
            "shard_replaying_recorded_batch", partition=self.config.partition, entries=len(entries)
        )

    def _cut(self) -> tuple[list[_Ready], bool]:
        """The next batch from the ready entries, within the batch's count and bytes (a
        recorded batch being replayed goes whole), and whether its order must be recorded:
        when, for some conversation, it is not that conversation's earliest entries in
        entry order (the window reordered them, or let them pass one it holds)."""
        if not self._ready:
            return [], False
        if self._replay_cut:
            whole = self._ready[: self._replay_cut]
            if any(self._media.pending(r.stored.entry_id) for r in whole):
                return [], False  # goes whole, in its recorded order: waits for its files
            self._replay_cut = 0
            for ready in whole:
                ready.draft = self._media.attach(ready.stored.entry_id, ready.draft)
            return whole, False  # still recorded: only its commit clears the record
        if not self._park_behind() or not self._hold_for_media() or not self._hold_for_budget():
            return [], False
        if self._ready_bounded:
            return list(self._ready), self._reordered(self._ready)
        cut: list[_Ready] = []
        total = 0
        for ready in self._ready[: self.config.batch_size]:
            if ready.size is None:
                ready.size = entry_bytes(ready.stored)
            if cut and total + ready.size > self.config.max_batch_bytes:
                break
            cut.append(ready)
            total += ready.size
        return cut, self._reordered(cut)

    def _park_behind(self) -> bool:
        """Park (or hold) the ready entries of parked (or held) conversations behind their
        earlier ones; whether any ready entry is left."""
        throttle = self._throttle
        if len(self._park) or len(self._media) or (throttle is not None and len(throttle)):
            kept: list[_Ready] = []
            for ready in self._ready:
                cid = ready.draft.item.conversation_id
                if self._park.holds(cid):
                    self._park.behind(cid, ready)
                elif self._media.holds(cid) and not ready.media_passed:
                    # (An entry that passed the media check before is earlier than the
                    # held ones: it goes first, never behind them.)
                    self._media.behind(cid, ready)
                elif throttle is not None and throttle.holds(cid) and not ready.charged:
                    # (A charged entry was let in before its conversation was held: it is
                    # earlier than the held ones, left over by a cut, and goes first.)
                    throttle.behind(cid, ready, ready.held_since)
                else:
                    kept.append(ready)
            self._ready = kept
        return bool(self._ready)

    def _hold_for_budget(self) -> bool:
        """Let ready entries take their tenant's publish token; hold each conversation
        from its first entry that finds none, with every later entry of it, so it stays
        in order while other tenants' are batched; whether any ready entry is left."""
        throttle = self._throttle
        if throttle is None:
            return bool(self._ready)
        kept: list[_Ready] = []
        for ready in self._ready:
            cid = ready.draft.item.conversation_id
            if throttle.holds(cid) and not ready.charged:
                throttle.behind(cid, ready, ready.held_since)
            elif ready.charged or throttle.admit(ready, ready.held_since):
                if not ready.charged and ready.held_since is not None:
                    throttle.admitted_after_hold(ready, ready.held_since)
                ready.charged = True
                kept.append(ready)
        self._ready = kept
        return bool(kept)

    def _throttled(self) -> bool:
        """Entries are held for their tenants' tokens."""
        return self._throttle is not None and bool(len(self._throttle))

    def _settle(self, batch: _Batch, events: Sequence[NormalizedEvent]) -> None:
        """Charge each tenant the committed batch's events beyond the one token each of
        its entries took (state events), or give back what it took for none (duplicates)."""
        if self._throttle is None:
            return
        difference: dict[str, int] = {}
        for draft in batch.drafts:
            difference[draft.tenant_id] = difference.get(draft.tenant_id, 0) - 1
        for event in events:
            difference[event.tenant_id] = difference.get(event.tenant_id, 0) + 1
        for tenant_id, tokens in difference.items():
            self._throttle.settle(tenant_id, tokens)

    def _hold_for_media(self) -> bool:
        """Give ready media messages their fetched files; hold each conversation from its
        first entry whose file is still being fetched, with every later entry of it, so
        it stays in order while the others are batched; whether any ready entry is left."""
        if not self._media.active:
            return bool(self._ready)
        kept: list[_Ready] = []
        held: dict[str, list[_Ready]] = {}
        for ready in self._ready:
            cid = ready.draft.item.conversation_id
            if cid in held:
                held[cid].append(ready)
            elif self._media.pending(ready.stored.entry_id):
                held[cid] = [ready]
            else:
                ready.draft = self._media.attach(ready.stored.entry_id, ready.draft)
                ready.media_passed = True
                kept.append(ready)
        for cid, entries in held.items():
            self._media.hold(cid, entries)
        self._ready = kept
        return bool(kept)

    def _reordered(self, cut: list[_Ready]) -> bool:
        latest: dict[str, int] = {}
        for ready in cut:
            cid = ready.draft.item.conversation_id
            if ready.arrival < latest.get(cid, -1):
                return True
            latest[cid] = ready.arrival
        earlier = dict(latest)
        for ready in self._ready[len(cut) :]:
            cid = ready.draft.item.conversation_id
            if cid in earlier and ready.arrival < earlier[cid]:
                return True
        return any(
            (held := self._reorder.earliest(cid)) is not None and held < arrival
            for cid, arrival in latest.items()
        )

    def _read_block_ms(self) -> int | None:
        """How long the next read may wait: the configured block, shortened to when the
        next held entry is due; None when one is due now (no read: release it first).
        Never 0: a Redis XREADGROUP with BLOCK 0 waits for ever."""
        if self._flushing or self._media.due():
            return None
        waits = []
        check = self._throttle.next_check_ms() if self._throttle is not None else None
        if check == 0:
            return None  # a held tenant has tokens: release its conversations first
        if check is not None:
            waits.append(float(check))
        due = self._reorder.next_due()
        if due is not None:
            waits.append((due - self._wall()) * 1000)
        parked = self._park.next_due()
        if parked is not None:
            waits.append((parked - asyncio.get_running_loop().time()) * 1000)
        if not waits:
            return self.config.block_ms
        wait_ms = min(waits)
        if wait_ms <= 0:
            return None
        return max(1, min(self.config.block_ms, math.ceil(wait_ms)))

    async def _next_entries(self) -> list[StoredItem]:
        """The next entries to classify: from those the cutter holds, else from a read
        (unless a held entry is due now). Entries the reorder window holds are skipped:
        a store re-reading its pending entries after a failed read hands them out again."""
        if not self._cutter.holding:
            block_ms = self._read_block_ms()
            if block_ms is None or (self._throttle is not None and self._throttle.full):
                return []  # a held entry is due now; or the holds are full: read no more
            stored = await self._inbox.read(
                self.config.partition, self._cutter.read_count(), block_ms
            )
            stored = [
                s
                for s in stored
                if not self._reorder.holds(s.entry_id)
                and s.entry_id not in self._replayed
                and s.entry_id not in self._park.ids
                and s.entry_id not in self._media.ids
                and (self._throttle is None or s.entry_id not in self._throttle.ids)
            ]
            # Held before anything else: an entry read and not held would be lost to this
            # process (each is handed over once per process) and later ones go first.
            self._cutter.hold(stored)
            if not stored:
                return []
            await self._tenants_as_of(stored)
            self._stall.pending()
            redelivered = sum(1 for s in stored if s.deliveries > 1)
            if redelivered:
                self._metrics.entries_redelivered(redelivered)
        return self._cutter.take()

    async def _tenants_as_of(self, stored: Sequence[StoredItem]) -> None:
        """Reload the tenant directory when an entry was split against a newer registry
        version than it holds: a tenant added or changed a moment ago has its rules (its
        forward rule, its PII key) from its first webhook, not a poll later. At most one
        reload per newer version: a registry that went back (a store emptied by hand)
        costs one load, not one per batch; a reload that fails keeps the last directory
        (the watcher logs it) and the entries go on under it."""
        if self._reload_tenants is None:
            return
        newest = max((s.item.registry_version or 0 for s in stored), default=0)
        have = self._tenants.registry_version
        if newest <= self._reloaded_for or (have is not None and newest <= have):
            return
        self._reloaded_for = newest
        try:
            await asyncio.wait_for(self._reload_tenants(), timeout=_RELOAD_TIMEOUT_S)
        except Exception:  # noqa: BLE001 -- go on under the last directory
            log.warning("shard_tenants_reload_failed", partition=self.config.partition)

    async def _publish(self, batch: _Batch, clock: Callable[[], float]) -> None:
        """Publish the batch's events (confirmed). Events the publisher rejects (nothing
        of the batch is sent then) are their items' failures: the batch is tried again
        after a backoff, or, for items out of attempts, sequenced again with their
        placeholders (`batch.published` stays False)."""
        assert batch.events is not None
        if batch.events:
            publish_started = clock()
            try:
                rejected = await self._publisher.publish(batch.out)
            except RouteUnavailable as exc:
                self._metrics.publish_failed()
                if not self._route_down(batch, exc.tenants, clock):
                    raise
                return  # the other conversations are sequenced again, then published
            except AdapterError:
                self._metrics.publish_failed()
                raise
            if rejected:
                self._metrics.events_rejected(len(rejected))
                failures = [Failure(batch.origins[r.index], "publish", r.reason) for r in rejected]
                if any(f.index in batch.dead for f in failures):
                    # A placeholder is bounded values only: its refusal is a bug, not data.
                    raise RuntimeError(
                        f"the publisher rejected a dead letter's placeholder: {rejected[:3]}"
                    )
                self._failed(batch, failures, clock)
                return  # sequenced again (parked or dead), then published
            batch.publish_s = clock() - publish_started
        batch.published = True

    def _route_down(
        self, batch: _Batch, tenants: frozenset[str], clock: Callable[[], float]
    ) -> bool:
        """Some tenants' route (their vhost or exchange) is down and nothing was sent:
        park their conversations of the batch for a backoff, no attempt counted (no
        item's fault: never dead-lettered), so the other tenants' go on, this batch's
        rest and the next ones (a batch only theirs is parked whole). False when no
        conversation of the batch is theirs."""
        down = {d.item.conversation_id for d in batch.drafts if d.tenant_id in tenants}
        if not down:
            return False
        log.warning(
            "shard_route_down",
            partition=self.config.partition,
            tenants=sorted(short_string(t) for t in tenants)[:10],
            conversations=len(down),
        )
        self._park_conversations(batch, dict.fromkeys(down, 1), clock(), _ROUTE_DOWN_S)
        batch.events = None
        return True

    async def _sequence(
        self, drafts: list[EventDraft], dead: Mapping[int, DeadLetter] | None = None
    ) -> _Numbered:
        """Dedupe, apply each item to its conversation and number the events: a new
        conversation's `conversation.created`, a changed one's `conversation.updated`,
        then the item's own event, each taking the conversation's next sequence.

        A dead-lettered item (`dead`, by index) is applied to its conversation as any item
        is (its state events too), its own event replaced by its placeholder, so the
        numbering is the same whether it died now or a crashed process dead-lettered it.
        Items whose normalize or stamp failed are `failures` (their
        events stand in unsupported: the caller retries or dead-letters them). A replayed
        item is published even when its event was (its mark is written again)."""
        dead = dead or {}
        keys = [item_key(draft.tenant_id, draft.event_id) for draft in drafts]
        wanted = list(dict.fromkeys(k for draft in drafts for k in message_keys(draft)))
        seen, known = await asyncio.gather(self._inbox.seen(keys), self._inbox.messages(wanted))
        stored = await self._load_records({d.item.conversation_id for d in drafts})
        numbered = _Numbered()
        messages = dict(known)
        for index, (draft, key) in enumerate(zip(drafts, keys, strict=True)):
            if key in seen and not draft.item.replayed:
                numbered.duplicates += 1
                continue
            seen.add(key)
            numbered.marks.append(key)
            cid = draft.item.conversation_id
            record = numbered.records.get(cid) or stored[cid]
            letter = dead.get(index)
            if letter is None and draft.parts.failure is not None:
                numbered.failures.append(Failure(index, "normalize", draft.parts.failure))
            applied = self._apply(record, draft, messages)
            messages.update(applied.messages)
            numbered.messages.update(applied.messages)
            seq = self._events(index, draft, applied, numbered, letter)
            numbered.records[cid] = applied.record.model_copy(update={"last_sequence": seq})
        return numbered

    def _events(
        self,
        index: int,
        draft: EventDraft,
        applied: Applied,
        numbered: _Numbered,
        letter: DeadLetter | None,
    ) -> int:
        """Append the item's state events and its own event (its placeholder when it is
        dead: `letter`), numbered from the record's last sequence; returns the last
        sequence taken."""
        seq = applied.record.last_sequence
        kinds = ("created",) if applied.created else ()
        for kind in (*kinds, *(("updated",) if applied.changes else ())):
            try:
                event = state_event(kind, applied, draft, seq + 1)
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 -- a poison item must not stop its partition
                # Not published, and takes no sequence: the item's own event still goes out
                # (a redelivery fails the same way, so the numbering repeats exactly).
                self._log(draft.item, draft.event_id, "state_event", exc)
                self._metrics.items_failed("state_event", 1)
                continue
            if not self._forwards(event):
                numbered.filtered.append(event)  # the record changed all the same
                continue
            seq += 1
            numbered.events.append(event)
            numbered.items.append(draft.item)
            numbered.origins.append(index)
        if letter is not None:
            own = dead_letter_event(draft.item, seq + 1, self._too_old(draft), letter)
        else:
            own = self._number(index, draft, seq + 1, numbered, applied)
        if letter is None and not self._forwards(own):
            # Not published and unnumbered: consumers see contiguous sequences; the raw
            # delivery is in the archive, the count in the tenant's stats.
            numbered.filtered.append(own)
        else:
            seq += 1
            numbered.events.append(own)
            numbered.items.append(draft.item)
            numbered.origins.append(index)
        counts = numbered.conversation_events
        for kind, happened in (
            ("created", applied.created),
            ("updated", bool(applied.changes)),
            ("late", applied.late),
            ("stale", applied.status is not None and applied.status.stale),
        ):
            if happened:
                counts[kind] = counts.get(kind, 0) + 1
        return seq

    def _apply(
        self,
        record: ConversationRecord | None,
        draft: EventDraft,
        messages: dict[str, MessageRecord],
    ) -> Applied:
        """The item applied to its conversation; if that raises (a bug: `apply` is total
        for any draft), the event goes out without context and the record keeps only
        its numbering, so the partition moves on.

        A replay (older than `max_item_age_s`) is quarantined: it takes the conversation's
        next sequence but changes no record and publishes no state event (consumers of
        `<tenant>.conversation.*` must not see what normal consumers are kept from), and
        carries no context."""
        if self._too_old(draft):
            return Applied(
                record=record or ConversationRecord.legacy(draft.item.conversation_id, 0)
            )
        try:
            return apply(record, draft, messages)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 -- a poison item must not stop its partition
            self._log(draft.item, draft.event_id, "conversation", exc)
            self._metrics.items_failed("conversation", 1)
            if record is None:
                record = ConversationRecord.legacy(draft.item.conversation_id, 0)
            return Applied(record=record)

    async def _load_records(
        self, conversation_ids: set[str]
    ) -> dict[str, ConversationRecord | None]:
        """The records of these conversations (None: never seen), from the cache or the
        store; what was read is cached. Returned, not only cached: a cache smaller than
        a batch's conversations may evict some before they are used."""
        missing = self._records.missing(conversation_ids)
        known = await self._inbox.conversations(missing) if missing else {}
        found = {cid: self._records.get(cid) for cid in conversation_ids - missing}
        found.update({cid: known.get(cid) for cid in missing})
        if missing:
            self._records.put({cid: found[cid] for cid in missing})
        return found

    def _number(
        self, index: int, draft: EventDraft, sequence: int, numbered: _Numbered, applied: Applied
    ) -> NormalizedEvent:
        """The draft's event numbered `sequence`; if that raises, a failure (its event
        stands in `unsupported`)."""
        replay = False
        try:
            replay = self._too_old(draft)
            event = draft.stamp(
                sequence,
                REPLAY_CATEGORY if replay else None,
                context=applied.context,
                late=applied.late,
                reply_to=applied.reply_to,
                data=applied.status,
            )
        except MemoryError:
            raise  # memory pressure, not a poison item: the batch is retried
        except Exception as exc:  # noqa: BLE001 -- a poison item must not stop its partition
            numbered.failures.append(Failure(index, "stamp", f"{type(exc).__name__}: {exc}"))
            event = failed_event(draft.item, draft.event_id, sequence, replay, "stamp", exc)
        if replay:
            numbered.replays += 1
            log.info(
                "item_replay",
                event_id=short_string(draft.event_id),
                tenant_id=short_string(draft.tenant_id),
            )
        return event

    def _masked(
        self, numbered: _Numbered, dead: Mapping[int, DeadLetter]
    ) -> tuple[list[NormalizedEvent], list[Failure]]:
        """The events under their tenants' PII rule, as published (models/tenant_pii.py),
        and the items whose event could not be masked (step `pii`: retried, then
        dead-lettered like any failed item, so one odd event cannot stop its partition and
        nothing goes out in clear). Should even a dead item's events fail (its placeholder,
        its conversation's state events), each goes out as a bare stand-in
        (`_unmasked_stand_in`) rather than loop. The store keeps the clear values."""
        tenants = self._tenants
        out: list[NormalizedEvent] = []
        failures: dict[int, Failure] = {}
        for event, item, origin in zip(
            numbered.events, numbered.items, numbered.origins, strict=True
        ):
            tenant = tenants.get(event.tenant_id)
            try:
                out.append(mask_event(event, tenant))
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 -- a poison item must not stop its partition
                if origin in dead:
                    self._log(item, event.event_id, "pii", exc)
                    out.append(_unmasked_stand_in(event, item, exc))
                else:
                    failures.setdefault(
                        origin, Failure(origin, "pii", f"{type(exc).__name__}: {exc}")
                    )
        return out, list(failures.values())

    def _window_s(self, tenant_id: str) -> float:
        """The tenant's reorder window in seconds (its rule, else the service's)."""
        own = self._tenants.rules(tenant_id).reorder_window_ms
        return (self.config.reorder_window_ms if own is None else own) / 1000

    def _forwards(self, event: NormalizedEvent) -> bool:
        """Whether the event's tenant publishes it (its forward rule; docs/tenants.md).
        The service's quarantines (`replay`; dead letters' placeholders never get here)
        are always published: they are the service's, not the tenant's, events."""
        rule = self._tenants.rules(event.tenant_id).forward
        if rule is None or event.category == REPLAY_CATEGORY:
            return True
        return rule.forwards(event.category, event.type)

    def _too_old(self, draft: EventDraft) -> bool:
        limit = self.config.max_item_age_s
        if limit is None or draft.occurred_at is None:
            return False
        return (draft.item.received_at - draft.occurred_at).total_seconds() > limit


def _after_their_own(ready: list[_Ready], released: list[_Ready]) -> list[_Ready]:
    """The ready entries with the released ones put back: each conversation's right after
    its last ready entry, or first when it has none (their order kept)."""
    by_conversation: dict[str, list[_Ready]] = {}
    for entry in released:
        by_conversation.setdefault(entry.draft.item.conversation_id, []).append(entry)
    last = {r.draft.item.conversation_id: i for i, r in enumerate(ready)}
    merged = [e for e in released if e.draft.item.conversation_id not in last]
    for i, entry in enumerate(ready):
        merged.append(entry)
        cid = entry.draft.item.conversation_id
        if last[cid] == i and cid in by_conversation:
            merged.extend(by_conversation[cid])
    return merged


def _late(records: dict[str, ConversationRecord | None], draft: EventDraft) -> bool:
    """An inbound message older than one its conversation already published."""
    record = records.get(draft.item.conversation_id)
    last = record.last_inbound_at if record is not None else None
    return last is not None and believed_time(draft) < last


def _unmasked_stand_in(
    event: NormalizedEvent, item: InboxItem, error: Exception
) -> NormalizedEvent:
    """What goes out for a dead item's event its tenant's PII rule cannot mask: the bare
    `unsupported` event (no customer, no body data, no business ids) with the event's id,
    sequence and dead letter id, so the conversation's numbering is kept and nothing
    leaves in clear."""
    stand_in = minimal_event(
        item, event.event_id, event.sequence, event.category == REPLAY_CATEGORY, "pii", error
    )
    letter_id = getattr(event.data, "dead_letter_id", None)
    if letter_id is None:
        return stand_in
    data = stand_in.data.model_copy(update={"dead_letter_id": letter_id})
    return stand_in.model_copy(update={"data": data})
