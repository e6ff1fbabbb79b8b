"""How many inbox entries a shard reads and puts in its next batch: bounded by count and
by bytes, and small after a crash.

Reads. The inbox read is bounded by count only, and an entry is up to ~4 MiB, so the read
itself is what can run a process out of memory (256 such entries are 1 GiB). Nothing is
known about entry sizes in a new process, so its reads start at one entry and grow by
slow start: a read that came back full lets the next ask for twice as many, never more
than the batch size nor than fit `max_bytes` at the size of the largest entry of the last
read. A read that returns redelivered entries (a crashed or failed reader's: `deliveries
> 1`) starts the slow start again. So a process killed by a large read is restarted with
reads of one entry, and grows them only as far as the sizes it has seen allow.

Batches. The shard keeps the entries it read in order and cuts batches from them: a batch
stops before the entry that would take it past `max_bytes` (an entry larger than that is
a batch of its own). Entries left over are neither re-read nor skipped: both adapters hand
an entry to its reader once per process (SQLite's cursor, Redis's pending list), so they
stay here until their batch.

Redelivered entries go in batches of 1, then 2, 4, ... up to the batch size, one doubling
per committed batch. If a batch kills the process when published (out of memory, a crash
in a native library), the restart finds its entries redelivered and cuts them smaller, so
within log2(batch size) + 1 restarts the entry that kills it is alone in its batch, and
every entry before it is published. Slow start rather than halving by the delivery count,
because RedisInbox reports every pending entry as delivered twice, however many readers
it outlived.
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
    """The entries read and not yet batched, in read order, and the next read's and
    batch's bounds."""

    def __init__(self, batch_size: int, max_bytes: int) -> None:
        self._batch_size = batch_size
        self._max_bytes = max_bytes
        self._held: deque[tuple[StoredItem, int]] = deque()
        self._redelivered_size = 1  # the next batch of redelivered entries
        self._read_size = 1  # slow start: the next read, before the byte bound
        self._largest = 0  # bytes of the largest entry of the last read (0: none yet)
        self._redelivering = False  # the last read returned redelivered entries
        self._read_short = False  # the last read returned fewer entries than it asked

    @property
    def holding(self) -> bool:
        """Entries were read and are waiting for their batch."""
        return bool(self._held)

    @property
    def read_short(self) -> bool:
        """The last read returned fewer entries than it asked for: the partition had no
        more (the shard lingers before the next read only then)."""
        return self._read_short

    def read_count(self) -> int:
        """How many entries the next read asks for: the slow-start size, bounded by the
        batch size and by as many as fit `max_bytes` at the largest entry last read."""
        count = min(self._read_size, self._batch_size)
        if self._largest > 0:
            count = min(count, self._max_bytes // self._largest)
        return max(1, count)

    def hold(self, entries: list[StoredItem]) -> None:
        """Keep entries just read (by a read of `read_count()`), after those still held."""
        asked = self.read_count()
        sized = [(entry, entry_bytes(entry)) for entry in entries]
        self._held.extend(sized)
        self._read_short = len(sized) < asked
        if not sized:
            return
        self._largest = max(size for _, size in sized)
        redelivered = any(entry.deliveries > 1 for entry, _ in sized)
        if redelivered and not self._redelivering:
            # A failed or crashed reader's entries: slow start again, this read its first
            # (a read of one that came back full lets the next ask for two).
            self._redelivered_size = 1
            self._read_size = 2 if asked == 1 else 1
        elif not self._read_short:
            self._read_size = min(asked * 2, self._batch_size)
        self._redelivering = redelivered

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
