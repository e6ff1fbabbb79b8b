"""The attempt budget of items that fail, and the dead letters they end as.

A step that fails on one item (normalize or stamp raising, the publisher refusing its
event) is not retried at once and not skipped: the shard parks the item's conversation
(`Park`: its entries uncommitted, in order, while the batch's other conversations go on),
waits an exponential backoff with jitter, and tries it again; once an item has failed
`max_attempts` times it is dead-lettered (models/dead_letter.py): stored in the
failed store, published to the dead-letter exchange, and its place in the conversation
taken by a placeholder event (actors/unsupported.py `dead_letter_event`), so the partition
moves on. Outages (store or broker down) are not an item's failure and never count.

Attempts are counted per entry in the shard's process: a restart counts again from zero
(the entry is redelivered), so an item is tried at most `max_attempts` times per process.
A dead letter once stored is found again by a restarted shard (`find_dead_letters`), so
the batch it belonged to is republished exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from actors.event_draft import EventDraft, routing_token
from actors.unsupported import UNSUPPORTED_CATEGORY, error_issue
from models.dead_letter import Attempt, DeadLetter, DeadStep, dead_letter_id
from models.inbox import InboxItem, StoredItem

T = TypeVar("T")


@dataclass(slots=True)
class RetryPolicy:
    """`max_attempts` tries per item; the wait before try n+1 is base * 2^(n-1), at most
    `max_delay_s`, scaled by a random factor in [0.5, 1) (equal jitter)."""

    max_attempts: int
    base_s: float
    max_delay_s: float
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, failed: int) -> float:
        """Seconds to wait after an item's `failed`-th failed attempt."""
        if self.base_s <= 0:
            return 0.0
        exponent = min(failed - 1, 60)  # 2**60 s is past any cap; keeps the float finite
        full = min(self.max_delay_s, self.base_s * 2.0**exponent)
        return full * (0.5 + self.rng.random() / 2)

    def budget_s(self) -> float:
        """The longest an item can hold its partition before it is dead-lettered."""
        return sum(
            min(self.max_delay_s, self.base_s * 2.0**n) for n in range(self.max_attempts - 1)
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """One item's failed attempt in a batch: its index there, the step, the error."""

    index: int
    step: DeadStep
    error: str


def attempt(step: DeadStep, error: str, at: datetime) -> Attempt:
    """An attempt record with the error bounded like an event's issue."""
    return Attempt(at=at, step=step, error=error_issue(step, error).msg)


def kind_of(draft: EventDraft) -> tuple[str, str]:
    """The category and type a dead letter is routed by: the draft's when it normalized,
    else what the raw item says it is (a message's `type`, a status's `status`, a field)."""
    parts = draft.parts
    if parts.category != UNSUPPORTED_CATEGORY:
        return parts.category, parts.type
    item: InboxItem = draft.item
    raw = item.item if isinstance(item.item, dict) else {}
    if item.kind == "message":
        label = raw.get("type")
        return "message", routing_token(label) if isinstance(label, str) and label else "unknown"
    if item.kind == "status":
        label = raw.get("status")
        return "status", routing_token(label) if isinstance(label, str) and label else "unknown"
    if item.kind == "error":
        return "error", "error"
    return "field", routing_token(item.field)


def dead_letter(
    partition: int, stored: StoredItem, draft: EventDraft, attempts: list[Attempt]
) -> DeadLetter:
    """The dead letter of an entry whose attempts are spent (the last one says why)."""
    last = attempts[-1]
    category, type_ = kind_of(draft)
    return DeadLetter(
        dead_letter_id=dead_letter_id(partition, stored.entry_id),
        partition=partition,
        entry_id=stored.entry_id,
        tenant_id=draft.tenant_id,
        conversation_id=draft.item.conversation_id,
        event_id=draft.event_id,
        category=category,
        type=type_,
        step=last.step,
        reason=last.error,
        attempts=tuple(attempts),
        dead_at=datetime.now(UTC),
        item=stored.item,
    )


@dataclass(slots=True)
class _Parked(Generic[T]):
    due: float
    entries: list[T]


class Park(Generic[T]):
    """Conversations whose item failed and waits for its next try, with their entries.

    A conversation is parked whole: the failed entry and every later entry of it the shard
    takes meanwhile, uncommitted, in their order, so none of its successors goes first; the
    partition's other conversations carry on. When the backoff is over the conversation's
    entries are handed back, earliest first, to be batched again. `ids` are the entry ids
    parked (a store re-reading pending entries hands them out again: the shard skips them).
    """

    def __init__(self, entry_id: Callable[[T], str]) -> None:
        self._entry_id = entry_id
        self._parked: dict[str, _Parked[T]] = {}
        self.ids: set[str] = set()

    def __len__(self) -> int:
        return len(self.ids)

    def holds(self, conversation_id: str) -> bool:
        """Whether the conversation is parked (its new entries must be parked behind)."""
        return conversation_id in self._parked

    def park(self, conversation_id: str, entries: list[T], due: float) -> None:
        """Park entries of a conversation until `due` (a later due of the same
        conversation wins), after those it has parked already."""
        parked = self._parked.get(conversation_id)
        if parked is None:
            parked = self._parked[conversation_id] = _Parked(due, [])
        parked.due = max(parked.due, due)
        # In the order given (the batch's, then what was held behind it): the publish
        # order the reorder window chose, which arrival order is not.
        parked.entries = [*parked.entries, *entries]
        self.ids.update(self._entry_id(entry) for entry in entries)

    def behind(self, conversation_id: str, entry: T) -> None:
        """A later entry of a parked conversation: parked behind the others, same due."""
        self._parked[conversation_id].entries.append(entry)
        self.ids.add(self._entry_id(entry))

    def next_due(self) -> float | None:
        """When the earliest parked conversation is due; None when none is parked."""
        return min((p.due for p in self._parked.values()), default=None)

    def release(self, now: float) -> list[T]:
        """The entries of every conversation due at `now`, each conversation's in its
        order; unparked."""
        due = [cid for cid, parked in self._parked.items() if parked.due <= now]
        released = [entry for cid in due for entry in self._parked.pop(cid).entries]
        self.ids.difference_update(self._entry_id(entry) for entry in released)
        return released
