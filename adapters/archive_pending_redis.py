"""The Redis inbox's raw deliveries waiting for the archive store, and replayed appends.

A delivery's raw body is XADDed to one stream, `<prefix>archive` (fields `h`: the header
JSON, `b`: the body), by the same script that appends its items and sets its mark
(adapters/redis_inbox.py), so the archive starts from the durability point and a
duplicate (the mark found) is not archived again. The archiver reads the stream from its
start with XRANGE, outside any consumer group: each write to the archive store is
idempotent, so two archivers (a pool replica replaced while the old one still runs) only
write an object twice; it XDELs the entries once the store confirmed them. Memory: each
waiting body costs its size plus ~100 B until archived (an archive store down for long
grows Redis by the webhook bytes accepted meanwhile: `wa_archive_backlog`, docs/archive.md).

A replay appends items with no mark, every item of the call in one script (all or none).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from adapters.archive_codec import load_delivery
from adapters.codec import dump_item
from adapters.errors import TransientError
from adapters.ports import ArchiveBacklog, PendingArchive
from models.inbox import InboxItem

# KEYS: one stream per item; ARGV: one encoded item per stream. One script, so a replay
# that fails part-way (out of memory) appended nothing and can simply be run again.
_APPEND_REPLAYED = """
for i = 1, #KEYS do redis.call('XADD', KEYS[i], '*', 'd', ARGV[i]) end
return #KEYS
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisArchivePending:
    """The pending raw deliveries of one Redis inbox (its client, prefix and durability)."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        execute_durably: Callable[[Pipeline], Awaitable[list[Any]]],
    ) -> None:
        self._redis = client
        self.key = f"{prefix}archive"
        self._execute_durably = execute_durably
        self._append_replayed = client.register_script(_APPEND_REPLAYED)

    async def pending(self, limit: int) -> list[PendingArchive]:
        """XRANGE - + COUNT limit: the oldest waiting deliveries."""
        try:
            entries: Any = await self._redis.xrange(self.key, "-", "+", count=limit)
        except RedisError as exc:
            raise TransientError(f"redis archive_pending: {exc}") from exc
        return [
            PendingArchive(_text(entry_id), load_delivery(fields[b"h"], fields[b"b"]))
            for entry_id, fields in entries
        ]

    async def done(self, entry_ids: Sequence[str]) -> None:
        """XDEL the archived ones (a deleted id is ignored)."""
        if not entry_ids:
            return
        try:
            await self._redis.xdel(self.key, *entry_ids)
        except RedisError as exc:
            raise TransientError(f"redis archive_done: {exc}") from exc

    async def backlog(self) -> ArchiveBacklog:
        """XLEN and the oldest entry's header: one round trip."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xlen(self.key)
                pipe.xrange(self.key, "-", "+", count=1)
                length, first = await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"redis archive_backlog: {exc}") from exc
        oldest = load_delivery(first[0][1][b"h"], b"").received_at if first else None
        return ArchiveBacklog(int(length), oldest)

    async def append_replayed(
        self, items: Sequence[InboxItem], stream: Callable[[int], str]
    ) -> None:
        """One script XADDs every item (replayed=True) to its partition's stream, WAITAOF
        behind it when configured, as an append."""
        if not items:
            return
        marked = [i if i.replayed else i.model_copy(update={"replayed": True}) for i in items]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                await self._append_replayed(
                    keys=[stream(i.partition) for i in marked],
                    args=[dump_item(i) for i in marked],
                    client=pipe,
                )
                await self._execute_durably(pipe)
        except RedisError as exc:
            raise TransientError(f"redis append_replayed: {exc}") from exc
