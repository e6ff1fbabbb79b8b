"""The reorder window: a conversation's inbound messages that arrive within the window of
each other are published in Meta-timestamp order.

Each inbound customer message (not late, not redelivered: see actors/shard.py) is held
until `window` after it reached the ingress (its stored `received_at`, or the shard's
clock if that is earlier: an ingress clock ahead cannot stretch the wait). When a
held message is due, it is released together with every held message of its conversation
that sorts before it — (Meta time, arrival) order, so ties keep arrival order — and those
go first. So no message waits longer than the window, and messages of one conversation
that arrive within the window of each other come out in timestamp order. Conversations
are independent: one conversation's held messages never hold up another's items, and the
conversation's other items (statuses, field events) are not held at all.

A message older (by Meta time) than one already published for its conversation is `late`:
the shard passes it at once and marks its event, never holds or drops it.

Held entries stay uncommitted in the inbox, so a crash loses nothing: the restarted shard
re-reads them and publishes them in entry order (docs/conversations.md: a batch published
in another order was recorded first and is republished exactly). At most `max_held`
entries are held; beyond it the earliest-due conversations are released early (counted).
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field

from actors.conversation import believed_time
from actors.event_draft import EventDraft
from models.inbox import StoredItem


@dataclass(slots=True)
class Held:
    """An entry held back, with its draft and where it sorts."""

    stored: StoredItem
    draft: EventDraft
    order: tuple[float, int]  # (believed Meta time, arrival counter)
    due: float  # epoch seconds


@dataclass(slots=True)
class ReorderBuffer:
    """Held messages per conversation, each conversation's list kept in sort order."""

    window_s: float
    max_held: int
    _by_conversation: dict[str, list[Held]] = field(default_factory=dict)
    _due: list[tuple[float, int, str, str]] = field(default_factory=list)  # heap
    _ids: set[str] = field(default_factory=set)
    forced: int = 0  # entries released early because the buffer was full

    def __len__(self) -> int:
        return len(self._ids)

    def holds(self, entry_id: str) -> bool:
        """Whether the entry is held (a store may hand out a pending entry again)."""
        return entry_id in self._ids

    def add(
        self,
        stored: StoredItem,
        draft: EventDraft,
        arrival: int,
        now: float,
        window_s: float | None = None,
    ) -> None:
        """Hold an entry until it is due (an entry already held is not held twice).

        `arrival` is the entry's place in the partition as this process read it; `now`
        the wall clock, so that an ingress clock ahead of the shard's cannot hold an entry
        longer than the window; `window_s` the entry's own window (its tenant's rule),
        else the buffer's. Every entry of a conversation has its tenant's window, so a
        conversation's entries are due in arrival order whatever the other tenants'."""
        if stored.entry_id in self._ids:
            return
        held = Held(
            stored=stored,
            draft=draft,
            order=(believed_time(draft).timestamp(), arrival),
            due=min(draft.item.received_at.timestamp(), now)
            + (self.window_s if window_s is None else window_s),
        )
        cid = draft.item.conversation_id
        bisect.insort(self._by_conversation.setdefault(cid, []), held, key=lambda h: h.order)
        self._ids.add(stored.entry_id)
        heapq.heappush(self._due, (held.due, arrival, cid, stored.entry_id))

    def earliest(self, conversation_id: str) -> int | None:
        """The lowest arrival held for a conversation (None: none held)."""
        queue = self._by_conversation.get(conversation_id)
        return min(h.order[1] for h in queue) if queue else None

    def next_due(self) -> float | None:
        """When the earliest held entry is due (epoch seconds); None when nothing is held."""
        self._drop_released()
        return self._due[0][0] if self._due else None

    def release(self, now: float, everything: bool = False) -> list[Held]:
        """The entries to publish now, each conversation's in sort order: every due entry
        and the held entries of its conversation sorting before it; all of them when
        `everything` (a shard stopping), the earliest-due too while over `max_held`."""
        released: list[Held] = []
        while True:
            self._drop_released()
            if not self._due:
                break
            due, _, cid, entry_id = self._due[0]
            over = len(self._ids) > self.max_held
            if not (everything or over or due <= now):
                break
            queue = self._by_conversation[cid]
            cut = next(i for i, h in enumerate(queue) if h.stored.entry_id == entry_id) + 1
            if over and not everything and due > now:
                self.forced += cut
            released.extend(queue[:cut])
            for h in queue[:cut]:
                self._ids.discard(h.stored.entry_id)
            del queue[:cut]
            if not queue:
                del self._by_conversation[cid]
        return released

    def _drop_released(self) -> None:
        while self._due and self._due[0][3] not in self._ids:
            heapq.heappop(self._due)
