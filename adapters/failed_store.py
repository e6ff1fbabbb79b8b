"""The Inbox port's failed-store methods, shared by both inboxes: each delegates to its
store of dead letters (adapters/redis_dead_letters.py, adapters/sqlite_dead_letters.py),
kept in the inbox's own database and connection."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from models.dead_letter import DeadLetter


class DeadLetterStore(Protocol):
    """What each inbox's failed store does (the port's semantics: adapters/ports.py)."""

    async def store(self, letters: Sequence[DeadLetter]) -> None: ...

    async def find(self, dead_letter_ids: Collection[str]) -> dict[str, DeadLetter]: ...

    async def page(self, limit: int, after: str | None) -> list[DeadLetter]: ...

    async def purge(self, dead_letter_ids: Sequence[str] | None) -> int: ...

    async def count(self) -> int: ...


class FailedStoreMethods:
    """The Inbox port's dead-letter methods on `self._dead` (see Inbox)."""

    _dead: DeadLetterStore

    async def store_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """See Inbox."""
        await self._dead.store(letters)

    async def find_dead_letters(self, dead_letter_ids: Collection[str]) -> dict[str, DeadLetter]:
        """See Inbox."""
        return await self._dead.find(dead_letter_ids)

    async def dead_letters(self, limit: int, after: str | None = None) -> list[DeadLetter]:
        """See Inbox."""
        return await self._dead.page(limit, after)

    async def dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        """See Inbox."""
        return (await self._dead.find([dead_letter_id])).get(dead_letter_id)

    async def purge_dead_letters(self, dead_letter_ids: Sequence[str] | None) -> int:
        """See Inbox."""
        return await self._dead.purge(dead_letter_ids)

    async def dead_letter_count(self) -> int:
        """See Inbox."""
        return await self._dead.count()
