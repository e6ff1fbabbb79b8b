"""Production inbox: one Redis Stream per partition, read through a consumer group.

Each partition has one consumer (`p<partition>`), so a restarted shard re-reads its own
pending entries (read but never acknowledged) before new ones. Committed entries are
acknowledged and deleted by the same script that stores the sequences and the item marks,
so the stream only holds what is still in flight and a redelivery always gets the sequence
it had. Streams are never trimmed by length: trimming could drop entries nobody has
published.

Dedup marks are plain keys `<prefix>seen:<key>` with an expiry (SET ... EX window): Redis
evicts them itself, so memory is bounded by the keys marked within one window (measured
in docs/redis.md). A delivery is appended by a Lua script that checks its mark, adds
every item and sets the mark in one atomic step; one pipelined round trip carries the
script calls of every delivery in a batch, and WAITAOF after them when configured.
Each conversation's last sequence is its own key `<prefix>seq:<conversation_id>`, expiring
after the sequence TTL of silence (docs/redis.md: memory per conversation, what a restart
of the numbering means).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from adapters.codec import dump_item, load_item
from adapters.errors import TransientError
from adapters.ports import Delivery, InboxDurability, InboxStats
from adapters.redis_durability import WaitAof, check_waitaof, read_durability
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
# The commit. Why a script flagged allow-oom and not MULTI: under `maxmemory` with
# `noeviction` Redis refuses every command queued in a MULTI once memory is full (7.0.15;
# 8.2.3 still refuses the SETs there), so the commit that would free memory by deleting the
# published entries was refused too and a full inbox could never drain (tested in
# tests/integration/test_redis_safety.py). Nothing runs between a script's commands and
# Redis never stops one half-way for memory, so acknowledgement, deletion, sequences and
# marks stay one atomic step, as in the MULTI; allow-oom lets it run at the limit. It
# writes a batch's marks and sequences (145 B and 116 B each, docs/redis.md) while
# deleting its entries (~1.4 KB for a 0.8 KB text), so a commit at the limit frees more
# than it writes; at worst (tiny entries) it overshoots maxmemory by one batch's marks.
# KEYS[1]: the stream; KEYS[2]: the sequences hash of versions before issue 9 (read as a
# fallback, expired one TTL after the first commit of this version); KEYS[3..2+n]: the n
# conversations' sequence keys; then one key per item mark. ARGV[1]: the group; ARGV[2]: n;
# ARGV[3]: the marks' window (s); ARGV[4]: the sequences' TTL (s); ARGV[5..4+n]: the
# sequences; then the entry ids (500 per XACK: unpack's stack is bounded).
_COMMIT = """#!lua flags=allow-oom
local n = tonumber(ARGV[2])
for i = 5 + n, #ARGV, 500 do
  local last = math.min(i + 499, #ARGV)
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, i, last))
  redis.call('XDEL', KEYS[1], unpack(ARGV, i, last))
end
for i = 1, n do redis.call('SET', KEYS[2 + i], ARGV[4 + i], 'EX', ARGV[4]) end
for i = 3 + n, #KEYS do redis.call('SET', KEYS[i], '1', 'EX', ARGV[3]) end
if n > 0 then redis.call('EXPIRE', KEYS[2], ARGV[4], 'NX') end
return 1
"""

# The consumer group, created by an allow-oom script for the same reason: XGROUP CREATE is
# refused at the memory limit, and a shard's first read may come when the ingress has
# already filled Redis (the shards were down). id 0, not $: entries appended before the
# first reader started are not skipped.
_CREATE_GROUP = """#!lua flags=allow-oom
local reply = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if type(reply) == 'table' and reply.err then
  if string.find(reply.err, 'BUSYGROUP') then return 0 end
  return reply
end
return 1
"""


class RedisInbox:
    """The Inbox port on Redis Streams."""

    def __init__(
        self,
        url: str,
        prefix: str,
        window_s: int,
        *,
        sequence_ttl_s: int,
        waitaof: WaitAof | None,
    ) -> None:
        # Timeouts: a Redis that stops answering must fail the request (503) or the batch
        # (retried), never hang it. Reads block at most block_ms and WAITAOF at most its
        # timeout (checked by Settings), both well under 10 s.
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=10, socket_connect_timeout=5
        )
        self._prefix = prefix
        self._window_s = window_s
        self._sequence_ttl_s = sequence_ttl_s
        self._waitaof = waitaof
        self._append_once = self._redis.register_script(_APPEND_ONCE)
        self._commit = self._redis.register_script(_COMMIT)
        self._create_group = self._redis.register_script(_CREATE_GROUP)
        self._groups: set[int] = set()
        # Per partition: where the re-read of this consumer's pending entries has got to,
        # or absent once they are all re-read and only new entries (">") are left.
        self._pending_from: dict[int, str] = {}
        self._pending_done: set[int] = set()

    def stream(self, partition: int) -> str:
        """The stream key of a partition."""
        return f"{self._prefix}inbox:{partition}"

    @property
    def _legacy_seq_key(self) -> str:
        return f"{self._prefix}seq"

    def sequence_key(self, conversation_id: str) -> str:
        """The Redis key of a conversation's last sequence."""
        return f"{self._prefix}seq:{conversation_id}"

    def mark_key(self, key: str) -> str:
        """The Redis key of a dedup mark."""
        return f"{self._prefix}seen:{key}"

    async def append_deliveries(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """One EVALSHA per delivery (check mark, XADD items, set mark), then WAITAOF when
        configured: one round trip on one connection, so WAITAOF covers these writes.

        WAITAOF short of its counts in time is a failed append (TransientError, 503): the
        items and mark may already be in Redis, so Meta's retry is answered "duplicate"
        and the items are published; if Redis then crashes before the fsync, both are gone
        together and the retry stores them again.
        """
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
                if self._waitaof is not None:
                    pipe.execute_command(*self._waitaof.command())
                results = await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"redis append: {exc}") from exc
        if self._waitaof is not None:
            check_waitaof(results.pop(), self._waitaof)
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
        await self._create_group(keys=[self.stream(partition)], args=[GROUP])
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
        """XACK + XDEL the entries, SET EX the sequences and the marks: one allow-oom script,
        so it succeeds at the memory limit (the drain is what frees memory)."""
        conversations = list(sequences.items())
        keys = [
            self.stream(partition),
            self._legacy_seq_key,
            *(self.sequence_key(cid) for cid, _ in conversations),
            *(self.mark_key(key) for key in seen),
        ]
        args: list[str | int] = [
            GROUP,
            len(conversations),
            self._window_s,
            self._sequence_ttl_s,
            *(seq for _, seq in conversations),
            *entry_ids,
        ]
        try:
            await self._commit(keys=keys, args=args)
        except RedisError as exc:
            raise TransientError(f"redis commit: {exc}") from exc

    async def sequences(self, conversation_ids: Collection[str]) -> dict[str, int]:
        """MGET the conversations' keys, HMGET the pre-issue-9 hash beside: one round trip."""
        wanted = list(conversation_ids)
        if not wanted:
            return {}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.mget([self.sequence_key(cid) for cid in wanted])
                pipe.hmget(self._legacy_seq_key, wanted)
                current, legacy = await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"redis sequences: {exc}") from exc
        found: dict[str, int] = {}
        for cid, now, old in zip(wanted, current, legacy, strict=True):
            value = now if now is not None else old
            if value is not None:
                found[cid] = int(value)
        return found

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

    async def durability(self) -> InboxDurability:
        """INFO and CONFIG GET appendfsync, judged by adapters/redis_durability.py's rules."""
        return await read_durability(self._redis, self._waitaof)

    async def stats(self) -> InboxStats:
        """INFO keyspace (this database's keys with an expiry) and INFO memory."""
        db = int(self._redis.connection_pool.connection_kwargs.get("db", 0))
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.info("keyspace")
                pipe.info("memory")
                keyspace, memory = await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"redis stats: {exc}") from exc
        maxmemory = int(memory.get("maxmemory", 0))
        return InboxStats(
            expiring_keys=int(keyspace.get(f"db{db}", {}).get("expires", 0)),
            used_memory_bytes=int(memory["used_memory"]),
            max_memory_bytes=maxmemory or None,
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
