"""The shard's cache of its conversations' records: bounded in count, evicted when idle.

A record is written only by the shard that owns its partition, and only by a commit, so
the cache is exact: a record (or "none stored", cached as None) is kept from the commit
that wrote it or the read that loaded it until it is evicted, and an evicted record is
read from the store again on demand. Least recently used first; a record unused for
`idle_s` goes at the next eviction pass whatever the count.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

from models.conversation import ConversationRecord


class ConversationCache:
    """Records by conversation id, LRU order, with each one's last use (monotonic s)."""

    def __init__(
        self, max_entries: int, idle_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max = max_entries
        self._idle_s = idle_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[ConversationRecord | None, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def missing(self, conversation_ids: Iterable[str]) -> set[str]:
        """The ids not cached (to load from the store)."""
        return {cid for cid in conversation_ids if cid not in self._entries}

    def get(self, conversation_id: str) -> ConversationRecord | None:
        """The cached record (None: none stored); the caller loaded it first."""
        record, _ = self._entries[conversation_id]  # KeyError: not loaded first
        self._entries.move_to_end(conversation_id)
        self._entries[conversation_id] = (record, self._clock())
        return record

    def put(self, records: Mapping[str, ConversationRecord | None]) -> None:
        """Records just loaded or committed, then an eviction pass."""
        now = self._clock()
        for cid, record in records.items():
            self._entries[cid] = (record, now)
            self._entries.move_to_end(cid)
        self.evict()

    def drop(self, conversation_ids: Iterable[str]) -> None:
        """Forget these records (read from the store again on demand)."""
        for cid in conversation_ids:
            self._entries.pop(cid, None)

    def evict(self) -> int:
        """Drop the least recently used past the bound and every idle one; how many."""
        dropped = 0
        oldest = self._clock() - self._idle_s
        while self._entries:
            cid, (_, used) = next(iter(self._entries.items()))
            if len(self._entries) <= self._max and used >= oldest:
                break
            del self._entries[cid]
            dropped += 1
        return dropped
