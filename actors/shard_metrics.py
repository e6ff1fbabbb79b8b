"""The shard's metrics port: what a shard reports as it happens, and the in-memory twin.

The shard calls the port at each event (a committed batch, a failed publish, ...); the
actor shell's implementation exports them through Ray (actors/shard_actor.py), and
`ShardStats` keeps plain counters, which serve the shard's status and the tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from adapters.ports import InboxStats

_KEPT_ERRORS = 10


class ShardMetrics(Protocol):
    """Events of a shard's loop. Called on the loop's thread; must not block or raise."""

    def batch_committed(self, size: int, seconds: float, publish_seconds: float | None) -> None:
        """A batch of `size` published events was committed, `seconds` after it was read;
        `publish_seconds` from publish to the broker's last confirm (None: nothing to publish,
        every item was a duplicate)."""
        ...

    def entries_redelivered(self, count: int) -> None:
        """A read returned `count` entries read before and never committed (a crashed reader's)."""
        ...

    def publish_failed(self) -> None:
        """The broker did not confirm a batch (it is retried, never skipped)."""
        ...

    def duplicates_skipped(self, count: int) -> None:
        """`count` items of a batch were not published: their event_id was already published."""
        ...

    def replays_quarantined(self, count: int) -> None:
        """`count` items of a batch were older than the maximum age: published as `replay`."""
        ...

    def loop_failed(self, error: str) -> None:
        """An attempt at the batch in hand raised; the loop retries it after a backoff."""
        ...

    def backlog_measured(self, entries: int) -> None:
        """The partition holds `entries` entries not yet committed (the lag)."""
        ...

    def items_failed(self, step: str, count: int) -> None:
        """`count` attempts of items failed at `step` (normalize, stamp, publish): each is
        retried after a backoff until its attempts run out (actors/shard_retry.py)."""
        ...

    def dead_lettered(self, count: int) -> None:
        """`count` items ran out of attempts: stored in the failed store and sent to the
        dead-letter exchange, a placeholder event in their place."""
        ...

    def events_rejected(self, count: int) -> None:
        """The publisher rejected `count` events (nothing of their batch sent): each is
        its item's failed attempt."""
        ...

    def stall_measured(self, seconds: float) -> None:
        """The partition has not advanced for `seconds` while entries wait (0: not stalled)."""
        ...

    def store_measured(self, stats: InboxStats) -> None:
        """The state store's dedup marks (an upper bound: every expiring key) and memory."""
        ...

    def unowned_measured(self, entries: int) -> None:
        """Entries of the unowned partition (-1: changes of numbers nobody owns)."""
        ...

    def conversation_events(self, kind: str, count: int) -> None:
        """`count` events of `kind`: `created` / `updated` (state events published),
        `late` (messages published late), `stale` (statuses published stale), `forced`
        (entries the full reorder window released early)."""
        ...

    def reorder_held(self, entries: int) -> None:
        """The reorder window holds `entries` entries now."""
        ...

    def events_filtered(self, tenant_id: str, count: int) -> None:
        """`count` events of a committed batch were not published: their tenant's
        forward rule keeps them back (archived and counted; docs/tenants.md)."""
        ...


@dataclass(slots=True)
class ShardStats:
    """The in-memory ShardMetrics: counters since start, and the last few loop errors.

    `wait_until` lets a test await a state instead of polling it; each event wakes it.
    """

    batches: int = 0
    published: int = 0
    redelivered: int = 0
    publish_failures: int = 0
    duplicates: int = 0
    replays: int = 0
    last_batch: int = 0
    last_publish_s: float = 0.0  # publish call to the last broker confirm, last batch
    backlog: int = 0
    item_failures: int = 0
    rejected: int = 0
    dead: int = 0  # items dead-lettered
    stalled_s: float = 0.0
    store: InboxStats | None = None  # the last store measurement (partition 0's shard)
    unowned: int | None = None  # the last unowned-partition size (partition 0's shard)
    conversations: dict[str, int] = field(default_factory=dict)  # conversation_events by kind
    held: int = 0  # entries in the reorder window
    filtered: dict[str, int] = field(default_factory=dict)  # events kept back, by tenant
    errors: list[str] = field(default_factory=list)
    # Replaced on every change: a waiter holds the event of the state it saw, so a change
    # between its check and its wait still wakes it (sync callers cannot notify a Condition).
    _changed: asyncio.Event = field(
        default_factory=asyncio.Event, init=False, repr=False, compare=False
    )

    def batch_committed(self, size: int, seconds: float, publish_seconds: float | None) -> None:
        """Count the batch and its published events."""
        self.batches += 1
        self.published += size
        self.last_batch = size
        if publish_seconds is not None:
            self.last_publish_s = publish_seconds
        self._notify()

    def entries_redelivered(self, count: int) -> None:
        """Count entries read again."""
        self.redelivered += count
        self._notify()

    def publish_failed(self) -> None:
        """Count a batch the broker did not confirm."""
        self.publish_failures += 1
        self._notify()

    def duplicates_skipped(self, count: int) -> None:
        """Count items not published as duplicates."""
        self.duplicates += count
        self._notify()

    def replays_quarantined(self, count: int) -> None:
        """Count items published as replays."""
        self.replays += count
        self._notify()

    def loop_failed(self, error: str) -> None:
        """Keep the error among the last ten."""
        self.errors = [*self.errors[-(_KEPT_ERRORS - 1) :], error]
        self._notify()

    def backlog_measured(self, entries: int) -> None:
        """Keep the last backlog measured."""
        self.backlog = entries
        self._notify()

    def items_failed(self, step: str, count: int) -> None:
        """Count failed attempts of items."""
        self.item_failures += count
        self._notify()

    def dead_lettered(self, count: int) -> None:
        """Count items dead-lettered."""
        self.dead += count
        self._notify()

    def events_rejected(self, count: int) -> None:
        """Count events the publisher rejected."""
        self.rejected += count
        self._notify()

    def stall_measured(self, seconds: float) -> None:
        """Keep the last stall measured."""
        self.stalled_s = seconds
        self._notify()

    def store_measured(self, stats: InboxStats) -> None:
        """Keep the last store measurement."""
        self.store = stats
        self._notify()

    def unowned_measured(self, entries: int) -> None:
        """Keep the last unowned-partition size."""
        self.unowned = entries
        self._notify()

    def conversation_events(self, kind: str, count: int) -> None:
        """Count conversation events by kind."""
        self.conversations[kind] = self.conversations.get(kind, 0) + count
        self._notify()

    def reorder_held(self, entries: int) -> None:
        """Keep the reorder window's size."""
        self.held = entries
        self._notify()

    def events_filtered(self, tenant_id: str, count: int) -> None:
        """Count events a tenant's forward rule kept back."""
        self.filtered[tenant_id] = self.filtered.get(tenant_id, 0) + count
        self._notify()

    async def wait_until(self, done: Callable[[ShardStats], bool]) -> None:
        """Return once `done(self)` holds (at once if it does); bound it with a timeout."""
        while not done(self):
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
