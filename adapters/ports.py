"""The ports: one small interface per kind of infrastructure, each with two adapters."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from models.event import NormalizedEvent
from models.inbox import InboxItem, StoredItem


class Inbox(Protocol):
    """The durable, partitioned inbox plus the shards' per-conversation state.

    `append` returns only once the items are durable; the ingress answers 200 after it.
    Each partition has one reader; `read` first returns entries that were read before but
    never committed (a crashed reader's batch), then new ones, in append order.
    `commit` acknowledges entries and stores the conversations' new sequence numbers in
    one atomic step, so a redelivered entry gets the same sequence it was published with.
    """

    async def append(self, items: Sequence[InboxItem]) -> None:
        """Durably append items to their partitions (each item carries its partition)."""
        ...

    async def read(self, partition: int, count: int, block_ms: int) -> list[StoredItem]:
        """Up to `count` uncommitted entries of a partition, oldest first; waits up to block_ms."""
        ...

    async def commit(
        self, partition: int, entry_ids: Sequence[str], sequences: Mapping[str, int]
    ) -> None:
        """Acknowledge entries and persist sequence numbers, atomically."""
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
