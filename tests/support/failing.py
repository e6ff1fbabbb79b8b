"""Adapters whose infrastructure is down: the ports implemented, every call failing the way a
real adapter fails (adapters.errors.TransientError), for the ingress's failure paths.

No patching of the project's code: the app is built on these exactly as on a real adapter.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from adapters.errors import TransientError
from adapters.ports import (
    Archive,
    ArchiveBacklog,
    Delivery,
    Inbox,
    InboxDurability,
    InboxStats,
    PendingArchive,
    StateWrite,
)
from models.archive import RawDelivery
from models.conversation import ConversationRecord, MessageRecord
from models.dead_letter import DeadLetter
from models.event import NormalizedEvent
from models.inbox import InboxItem, StoredItem


class FailingInbox:
    """The Inbox port over a working one, failing every call while `down` (an outage).

    Calls made while down never reach the inner inbox, as when the store is unreachable;
    `append_attempts` counts the appends that were refused.
    """

    def __init__(self, inner: Inbox, down: bool = True) -> None:
        self.inner = inner
        self.down = down
        self.append_attempts = 0

    def _check(self) -> None:
        if self.down:
            raise TransientError("inbox unreachable (test outage)")

    async def append_deliveries(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """Refused while down, else the inner inbox's append."""
        if self.down:
            self.append_attempts += 1
        self._check()
        return await self.inner.append_deliveries(deliveries)

    async def claim(self, partition: int) -> int:
        """Refused while down."""
        self._check()
        return await self.inner.claim(partition)

    async def read(self, partition: int, count: int, block_ms: int) -> list[StoredItem]:
        """Refused while down."""
        self._check()
        return await self.inner.read(partition, count, block_ms)

    async def commit(
        self,
        partition: int,
        entry_ids: Sequence[str],
        state: StateWrite,
        seen: Collection[str] = (),
    ) -> None:
        """Refused while down."""
        self._check()
        await self.inner.commit(partition, entry_ids, state, seen)

    async def record_order(self, partition: int, entry_ids: Sequence[str]) -> None:
        """Refused while down."""
        self._check()
        await self.inner.record_order(partition, entry_ids)

    async def recorded_order(self, partition: int) -> list[str]:
        """Refused while down."""
        self._check()
        return await self.inner.recorded_order(partition)

    async def entries(self, partition: int, entry_ids: Sequence[str]) -> list[StoredItem]:
        """Refused while down."""
        self._check()
        return await self.inner.entries(partition, entry_ids)

    async def seen(self, keys: Collection[str]) -> set[str]:
        """Refused while down."""
        self._check()
        return await self.inner.seen(keys)

    async def conversations(
        self, conversation_ids: Collection[str]
    ) -> dict[str, ConversationRecord]:
        """Refused while down."""
        self._check()
        return await self.inner.conversations(conversation_ids)

    async def messages(self, keys: Collection[str]) -> dict[str, MessageRecord]:
        """Refused while down."""
        self._check()
        return await self.inner.messages(keys)

    async def find_conversations(
        self, tenant_id: str, *, wa_id: str | None = None, user_id: str | None = None
    ) -> list[ConversationRecord]:
        """Refused while down."""
        self._check()
        return await self.inner.find_conversations(tenant_id, wa_id=wa_id, user_id=user_id)

    async def store_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Refused while down."""
        self._check()
        await self.inner.store_dead_letters(letters)

    async def find_dead_letters(self, dead_letter_ids: Collection[str]) -> dict[str, DeadLetter]:
        """Refused while down."""
        self._check()
        return await self.inner.find_dead_letters(dead_letter_ids)

    async def dead_letters(self, limit: int, after: str | None = None) -> list[DeadLetter]:
        """Refused while down."""
        self._check()
        return await self.inner.dead_letters(limit, after)

    async def dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        """Refused while down."""
        self._check()
        return await self.inner.dead_letter(dead_letter_id)

    async def purge_dead_letters(self, dead_letter_ids: Sequence[str] | None) -> int:
        """Refused while down."""
        self._check()
        return await self.inner.purge_dead_letters(dead_letter_ids)

    async def dead_letter_count(self) -> int:
        """Refused while down."""
        self._check()
        return await self.inner.dead_letter_count()

    async def append_replayed(self, items: Sequence[InboxItem]) -> None:
        """Refused while down."""
        self._check()
        await self.inner.append_replayed(items)

    async def archive_pending(self, limit: int) -> list[PendingArchive]:
        """Refused while down."""
        self._check()
        return await self.inner.archive_pending(limit)

    async def archive_done(self, entry_ids: Sequence[str]) -> None:
        """Refused while down."""
        self._check()
        await self.inner.archive_done(entry_ids)

    async def archive_backlog(self) -> ArchiveBacklog:
        """Refused while down."""
        self._check()
        return await self.inner.archive_backlog()

    async def backlog(self, partition: int) -> int:
        """Refused while down."""
        self._check()
        return await self.inner.backlog(partition)

    async def ping(self) -> None:
        """TransientError while down."""
        self._check()
        await self.inner.ping()

    async def durability(self) -> InboxDurability:
        """Refused while down."""
        self._check()
        return await self.inner.durability()

    async def stats(self) -> InboxStats:
        """Refused while down."""
        self._check()
        return await self.inner.stats()

    async def close(self) -> None:
        """Closes the inner inbox (down or not)."""
        await self.inner.close()


class FailingRateLimiter:
    """The RateLimiter port with its store down: every hit raises TransientError."""

    def __init__(self) -> None:
        self.hits = 0

    async def hit(self, limits: Sequence[tuple[str, int]]) -> float:
        """Always TransientError (counted)."""
        self.hits += 1
        raise TransientError("rate limit store unreachable (test outage)")

    async def close(self) -> None:
        """Nothing to release."""


class FailingPublisher:
    """The Publisher port with the broker down: publish and ping raise TransientError."""

    async def publish(self, events: Sequence[NormalizedEvent]) -> None:
        """Always TransientError."""
        raise TransientError("broker unreachable (test outage)")

    async def publish_dead(self, letters: Sequence[DeadLetter]) -> list[str]:
        """Always TransientError."""
        raise TransientError("broker unreachable (test outage)")

    async def ping(self) -> None:
        """Always TransientError."""
        raise TransientError("broker unreachable (test outage)")

    async def close(self) -> None:
        """Nothing to release."""


class FailingArchive:
    """The Archive port over a working one, failing every call while `down` (S3 down)."""

    def __init__(self, inner: Archive, down: bool = True) -> None:
        self.inner = inner
        self.down = down
        self.put_attempts = 0

    def _check(self) -> None:
        if self.down:
            raise TransientError("archive store unreachable (test outage)")

    async def put(self, delivery: RawDelivery) -> None:
        """Refused while down (counted), else the inner archive's write."""
        self.put_attempts += 1
        self._check()
        await self.inner.put(delivery)

    async def get(self, delivery_id: str) -> RawDelivery | None:
        """Refused while down."""
        self._check()
        return await self.inner.get(delivery_id)

    async def delivery_ids(self, tenant_id: str, start: datetime, end: datetime) -> list[str]:
        """Refused while down."""
        self._check()
        return await self.inner.delivery_ids(tenant_id, start, end)

    async def sweep(self, before: datetime) -> int:
        """Refused while down."""
        self._check()
        return await self.inner.sweep(before)

    async def ping(self) -> None:
        """TransientError while down."""
        self._check()
        await self.inner.ping()

    async def close(self) -> None:
        """Closes the inner archive (down or not)."""
        await self.inner.close()
