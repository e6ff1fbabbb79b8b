"""Production inbox: one Redis Stream per partition, read through a consumer group.

Each partition has one consumer (`p<partition>`), so a restarted shard re-reads its own
pending entries (read but never acknowledged) before new ones. Committed entries are
acknowledged and deleted in the same MULTI as the sequence update, so the stream only
holds what is still in flight and a redelivery always gets the sequence it had.
Streams are never trimmed by length: trimming could drop entries nobody has published.

Dedup marks are plain keys `<prefix>seen:<key>` with an expiry (SET ... EX window): Redis
evicts them itself, so memory is bounded by the keys marked within one window (measured
in docs/security.md). A delivery is appended by a Lua script that checks its mark, adds
every item and sets the mark in one atomic step; one pipelined round trip carries the
script calls of every delivery in a batch.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from adapters.codec import dump_item, load_item
from adapters.errors import TransientError
from adapters.ports import Delivery
from models.inbox import StoredItem

GROUP = "shards"
# KEYS[1]: the delivery's mark; KEYS[2..]: one stream per item; ARGV[1]: window seconds;
# ARGV[2..]: one encoded item per stream. Scripts are not rolled back on error, so the
# mark is written last: if an XADD fails part-way (out of memory, a wrong key type), no
# mark exists, Meta's retry appends the whole delivery again and the shards' item dedup
# drops what was already there. Setting it first would answer that retry "duplicate"
# with items missing.
_APPEND_ONCE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #KEYS do redis.call('XADD', KEYS[i], '*', 'd', ARGV[i]) end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
return 1
"""


class RedisInbox:
    """The Inbox port on Redis Streams."""

    def __init__(self, url: str, prefix: str, window_s: int) -> None:
        # Timeouts: a Redis that stops answering must fail the request (503) or the batch
        # (retried), never hang it. Reads block at most block_ms, well under 10 s.
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=10, socket_connect_timeout=5
        )
        self._prefix = prefix
        self._window_s = window_s
        self._append_once = self._redis.register_script(_APPEND_ONCE)
        self._groups: set[int] = set()
        # Per partition: where the re-read of this consumer's pending entries has got to,
        # or absent once they are all re-read and only new entries (">") are left.
        self._pending_from: dict[int, str] = {}
        self._pending_done: set[int] = set()

    def stream(self, partition: int) -> str:
        """The stream key of a partition."""
        return f"{self._prefix}inbox:{partition}"

    @property
    def _seq_key(self) -> str:
        return f"{self._prefix}seq"

    def mark_key(self, key: str) -> str:
        """The Redis key of a dedup mark."""
        return f"{self._prefix}seen:{key}"

    async def append_deliveries(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """One EVALSHA per delivery (check mark, XADD items, set mark), one round trip."""
        if not deliveries:
            return []
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, items in deliveries:
                    await self._append_once(
                        keys=[self.mark_key(key), *(self.stream(i.partition) for i in items)],
                        args=[self._window_s, *(dump_item(i) for i in items)],
                        client=pipe,
                    )
                results = await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"redis append: {exc}") from exc
        return [bool(r) for r in results]

    async def seen(self, keys: Collection[str]) -> set[str]:
        """MGET the marks: one round trip for the whole batch."""
        wanted = list(keys)
        if not wanted:
            return set()
        try:
            values = await self._redis.mget([self.mark_key(k) for k in wanted])
        except RedisError as exc:
            raise TransientError(f"redis seen: {exc}") from exc
        return {k for k, v in zip(wanted, values, strict=True) if v is not None}

    async def _ensure_group(self, partition: int) -> None:
        if partition in self._groups:
            return
        try:
            # id 0, not $: entries appended before the first reader started are not skipped.
            await self._redis.xgroup_create(self.stream(partition), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(partition)

    async def read(self, partition: int, count: int, block_ms: int) -> list[StoredItem]:
        """Pending entries of this partition's consumer first, then new ones.

        One batch is read at a time and nothing is in hand when `read` is called, so every
        pending entry of this consumer is an orphan of a failed or crashed batch. If a read
        fails after Redis may already have handed entries over (a lost reply makes them
        pending), the next read starts again from this consumer's pending entries.
        """
        try:
            return await self._read(partition, count, block_ms)
        except Exception as exc:
            self._pending_done.discard(partition)
            self._pending_from.pop(partition, None)
            if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                self._groups.discard(partition)  # Redis lost the group: create it again
            if isinstance(exc, RedisError):
                raise TransientError(f"redis read: {exc}") from exc
            raise

    async def _read(self, partition: int, count: int, block_ms: int) -> list[StoredItem]:
        key = self.stream(partition)
        consumer = f"p{partition}"
        await self._ensure_group(partition)
        if partition not in self._pending_done:
            start = self._pending_from.get(partition, "0")
            reply: Any = await self._redis.xreadgroup(GROUP, consumer, {key: start}, count=count)
            entries = [e for _, batch in reply or [] for e in batch]
            if entries:
                stored = self._decode(reply, redelivered=True)
                await self._ack_deleted(key, reply)
                last = entries[-1][0]
                self._pending_from[partition] = last.decode() if isinstance(last, bytes) else last
                return stored
            self._pending_done.add(partition)
        reply = await self._redis.xreadgroup(
            GROUP, consumer, {key: ">"}, count=count, block=block_ms
        )
        return self._decode(reply, redelivered=False)

    async def _ack_deleted(self, key: str, reply: Any) -> None:
        ids = [entry_id for _, entries in reply or [] for entry_id, fields in entries if not fields]
        if ids:
            await self._redis.xack(key, GROUP, *ids)

    @staticmethod
    def _decode(reply: Any, redelivered: bool) -> list[StoredItem]:
        stored: list[StoredItem] = []
        for _, entries in reply or []:
            for entry_id, fields in entries:
                if not fields:  # deleted while pending: nothing left to publish
                    continue
                raw_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                stored.append(
                    StoredItem(
                        entry_id=raw_id,
                        item=load_item(fields[b"d"]),
                        deliveries=2 if redelivered else 1,
                    )
                )
        return stored

    async def commit(
        self,
        partition: int,
        entry_ids: Sequence[str],
        sequences: Mapping[str, int],
        seen: Collection[str] = (),
    ) -> None:
        """XACK + XDEL the entries, HSET the sequences, SET EX the marks: one MULTI/EXEC."""
        key = self.stream(partition)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                if entry_ids:
                    pipe.xack(key, GROUP, *entry_ids)
                    pipe.xdel(key, *entry_ids)
                if sequences:
                    mapping: dict[str | bytes, int] = dict(sequences.items())
                    pipe.hset(self._seq_key, mapping=mapping)  # type: ignore[arg-type]
                for key in seen:
                    pipe.set(self.mark_key(key), b"1", ex=self._window_s)
                await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"redis commit: {exc}") from exc

    async def sequences(self, conversation_ids: Collection[str]) -> dict[str, int]:
        """HMGET the last sequences."""
        wanted = list(conversation_ids)
        if not wanted:
            return {}
        try:
            values = await self._redis.hmget(self._seq_key, wanted)
        except RedisError as exc:
            raise TransientError(f"redis sequences: {exc}") from exc
        return {cid: int(v) for cid, v in zip(wanted, values, strict=True) if v is not None}

    async def backlog(self, partition: int) -> int:
        """XLEN: committed entries are deleted, so the length is the backlog."""
        try:
            return int(await self._redis.xlen(self.stream(partition)))
        except RedisError as exc:
            raise TransientError(f"redis backlog: {exc}") from exc

    async def ping(self) -> None:
        """PING."""
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise TransientError(f"redis ping: {exc}") from exc

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
