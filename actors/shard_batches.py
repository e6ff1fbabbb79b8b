"""How many inbox entries go in a shard's next batch: bounded by count and by bytes, and
small after a crash.

The inbox read is bounded by count only (up to 256 entries of up to ~4 MiB each), so the
shard keeps the entries it read in order and cuts batches from them: a batch stops
before the entry that would take it past `max_bytes` (an entry larger than that is a
batch of its own), and the next read asks for as many entries as fit the bound at the
size of the largest entry last read. Entries left over are neither re-read nor skipped:
both adapters hand an entry to its reader once per process (SQLite's cursor, Redis's
pending list), so they stay here until their batch.

Entries read again (a crashed or failed reader's: `deliveries > 1`) go in batches of 1,
then 2, 4, ... up to the batch size, one doubling per committed batch. If a batch kills
the process when published (out of memory, a crash in a native library), the restart
finds its entries redelivered and cuts them smaller, so within log2(batch size) + 1
restarts the entry that kills it is alone in its batch, and every entry before it is
published. Slow start rather than halving by the delivery count, because RedisInbox
reports every pending entry as delivered twice, however many readers it outlived.
"""

from __future__ import annotations

from collections import deque

import orjson

from models.inbox import StoredItem

_ENTRY_OVERHEAD = 512  # bytes beside the raw item: ids, times, the envelope's facts


def entry_bytes(entry: StoredItem) -> int:
    """About the bytes of an entry as stored: its raw item encoded, plus the envelope."""
    try:
        return len(orjson.dumps(entry.item.item)) + _ENTRY_OVERHEAD
    except Exception:  # noqa: BLE001 -- an entry we cannot measure is batched on its own
        return 2**62


class BatchCutter:
    """The entries read and not yet batched, in read order, and the next batch's bounds."""

    def __init__(self, batch_size: int, max_bytes: int) -> None:
        self._batch_size = batch_size
        self._max_bytes = max_bytes
        self._held: deque[tuple[StoredItem, int]] = deque()
        self._redelivered_size = 1  # the next batch of redelivered entries
        self._largest = 0  # bytes of the largest entry of the last read

    @property
    def holding(self) -> bool:
        """Entries were read and are waiting for their batch."""
        return bool(self._held)

    def read_count(self) -> int:
        """How many entries the next read asks for: the batch size, or as many as fit
        `max_bytes` at the size of the largest entry last read."""
        if self._largest <= 0:
            return self._batch_size
        return max(1, min(self._batch_size, self._max_bytes // self._largest))

    def hold(self, entries: list[StoredItem]) -> None:
        """Keep entries just read, after those still held."""
        sized = [(entry, entry_bytes(entry)) for entry in entries]
        self._largest = max(size for _, size in sized) if sized else 0
        self._held.extend(sized)

    def take(self) -> list[StoredItem]:
        """The next batch, a prefix of the held entries (empty when none are held).

        Redelivered and new entries are never mixed: a batch of redelivered entries is
        bounded by the slow-start size, one of new entries by the batch size.
        """
        if not self._held:
            return []
        redelivered = self._held[0][0].deliveries > 1
        limit = self._redelivered_size if redelivered else self._batch_size
        batch: list[StoredItem] = []
        total = 0
        while self._held and len(batch) < limit:
            entry, size = self._held[0]
            if (entry.deliveries > 1) != redelivered or (batch and total + size > self._max_bytes):
                break
            batch.append(entry)
            total += size
            self._held.popleft()
        return batch

    def committed(self, batch: list[StoredItem]) -> None:
        """A batch was committed: redelivered entries may go in a batch twice as large."""
        if batch and batch[0].deliveries > 1:
            self._redelivered_size = min(self._redelivered_size * 2, self._batch_size)
