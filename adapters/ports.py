"""The ports: one small interface per kind of infrastructure, each with two adapters."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from models.event import NormalizedEvent
from models.inbox import InboxItem, StoredItem

Delivery = tuple[str, Sequence[InboxItem]]
"""(dedup key of the delivery, its items)."""


class Inbox(Protocol):
    """The durable, partitioned inbox plus the shards' per-conversation state.

    `append` returns only once the items are durable; the ingress answers 200 after it.
    Each partition has one reader; `read` first returns entries that were read before but
    never committed (a crashed reader's batch), then new ones, in append order.
    `commit` acknowledges entries and stores the conversations' new sequence numbers in
    one atomic step, so a redelivered entry gets the same sequence it was published with.

    Deduplication lives here, not in a port of its own, because each mark must be written
    in the same atomic step as the data it guards: a delivery's mark with its items
    (`append_deliveries`), an item's mark with the commit that published it (`commit(seen=)`).
    Marks expire after the adapter's window (Meta's 7-day retry horizon by default).
    """

    async def append_deliveries(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """Per delivery, atomically: unless its key is marked, append its items and mark it.

        Returns, per delivery, True when stored now, False when it was a duplicate (nothing
        appended). Nothing is marked unless its items are durable, so a failed append is
        retried by Meta, never swallowed as a duplicate.
        """
        ...

    async def read(self, partition: int, count: int, block_ms: int) -> list[StoredItem]:
        """Up to `count` uncommitted entries of a partition, oldest first; waits up to block_ms."""
        ...

    async def commit(
        self,
        partition: int,
        entry_ids: Sequence[str],
        sequences: Mapping[str, int],
        seen: Collection[str] = (),
    ) -> None:
        """Acknowledge entries, persist sequence numbers and mark item keys seen, atomically."""
        ...

    async def seen(self, keys: Collection[str]) -> set[str]:
        """The item keys marked by a commit within the window."""
        ...

    async def sequences(self, conversation_ids: Collection[str]) -> dict[str, int]:
        """The last published sequence of each conversation (absent: none yet)."""
        ...

    async def backlog(self, partition: int) -> int:
        """How many entries of the partition are not yet committed."""
        ...

    async def ping(self) -> None:
        """Raise TransientError unless the store is reachable."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class RateLimiter(Protocol):
    """Fixed-window request counters shared by every ingress replica that uses the store."""

    async def hit(self, limits: Sequence[tuple[str, int]]) -> float:
        """Count one request against each (key, limit per window), in one round trip.

        Returns 0.0 when every key is within its limit, else the seconds until the window
        of the exceeded key ends (the Retry-After). Raise TransientError if the store fails.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class Publisher(Protocol):
    """Publishes normalized events; returns only when the broker has confirmed all of them."""

    async def publish(self, events: Sequence[NormalizedEvent]) -> None:
        """Publish in order; raise TransientError if any event is not confirmed."""
        ...

    async def ping(self) -> None:
        """Raise TransientError unless the broker is reachable."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
