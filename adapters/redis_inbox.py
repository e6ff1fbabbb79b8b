"""Production inbox: one Redis Stream per partition, read through a consumer group.

Each partition has one consumer (`p<partition>`), so a restarted shard re-reads its own
pending entries (read but never acknowledged) before new ones. Committed entries are
acknowledged and deleted by the same script that stores the conversation state and the
item marks, so the stream only holds what is still in flight and a redelivery always gets
the sequence it had. Streams are never trimmed by length: trimming could drop entries
nobody has published.

Dedup marks are plain keys `<prefix>seen:<key>` with an expiry (SET ... EX window): Redis
evicts them itself, so memory is bounded by the keys marked within one window (measured
in docs/redis.md). A delivery is appended by a Lua script that checks its mark, adds
every item and sets the mark in one atomic step; one pipelined round trip carries the
script calls of every delivery in a batch, and WAITAOF after them when configured.

Conversation state (issue 10): each conversation's record is a string key
`<prefix>conv:<conversation_id>` (compact JSON, adapters/codec.py), expiring after the
retention of silence when one is configured (else kept for ever); each message record is
`<prefix>msg:<message_key>` with the message-state TTL; a customer conversation is also a
member of its customer's index sets `<prefix>cust:<tenant>:w:<wa_id>` and
`...:u:<user_id>`, for `find_conversations` (docs/redis.md: bytes per record, what expiry
means). Last sequences stored by earlier versions (`<prefix>seq:<id>` keys of issue 9, the
`<prefix>seq` hash before it) are only read, as a fallback, and removed by the commit that
writes the conversation's record.

Reads and out-of-order commits: a shard commits some entries while holding earlier ones
back (its reorder window). Within one process `read` hands each entry out once: after the
re-read of this consumer's pending entries (a new process) only new entries (">") are
read, so an entry still pending is not handed out again however the later ones were
committed. The one exception: a read that fails (Redis may have handed entries over and
the reply was lost) starts the pending re-read again from the beginning, which hands out
again every entry this process still holds; the shard skips the ids it holds. A new
process (a restart) re-reads every uncommitted entry, with `deliveries` > 1.

A batch's order (the shard's crash-consistent republish, adapters/ports.py): a string key
`<prefix>order:<partition>` holding the JSON list of entry ids, no expiry, SET by an
allow-oom script (WAITAOF behind it when configured) and DEL'd by the commit's script;
`entries` fetches them back with one XRANGE per id, outside the consumer group.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError

from adapters.archive_codec import dump_header
from adapters.archive_pending_redis import RedisArchivePending
from adapters.codec import (
    dump_conversation,
    dump_item,
    dump_message,
    load_conversation,
    load_item,
    load_message,
)
from adapters.errors import Fenced, TransientError
from adapters.failed_store import FailedStoreMethods
from adapters.ports import (
    ArchiveBacklog,
    Delivery,
    InboxDurability,
    InboxStats,
    PendingArchive,
    StateWrite,
    raw_of,
)
from adapters.redis_client import bounded_client
from adapters.redis_dead_letters import RedisDeadLetters
from adapters.redis_durability import WaitAof, check_waitaof, read_durability
from models.conversation import ConversationRecord, MessageRecord
from models.inbox import InboxItem, StoredItem

GROUP = "shards"
# KEYS[1]: the delivery's mark; KEYS[2..n+1]: one stream per item; KEYS[n+2] (when the
# delivery carries its raw body): the archive's pending stream. ARGV[1]: window seconds;
# ARGV[2]: n; ARGV[3..n+2]: one encoded item per stream; ARGV[n+3], ARGV[n+4]: the raw
# delivery's header and body (adapters/archive_pending_redis.py). Scripts are not rolled
# back on error, so the mark is written last: if an XADD fails part-way (out of memory, a
# wrong key type), no mark exists, Meta's retry appends the whole delivery again and the
# shards' item dedup drops what was already there. Setting it first would answer that
# retry "duplicate" with items missing. The body is added in the same script, so the
# archive starts from the durability point and a duplicate is not archived again.
_APPEND_ONCE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = tonumber(ARGV[2])
for i = 1, n do redis.call('XADD', KEYS[1 + i], '*', 'd', ARGV[2 + i]) end
if #KEYS > n + 1 then
  redis.call('XADD', KEYS[n + 2], '*', 'h', ARGV[n + 3], 'b', ARGV[n + 4])
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
return 1
"""
# The commit. Why a script flagged allow-oom and not MULTI: under `maxmemory` with
# `noeviction` Redis refuses every command queued in a MULTI once memory is full (7.0.15;
# 8.2.3 still refuses the SETs there), so the commit that would free memory by deleting the
# published entries was refused too and a full inbox could never drain (tested in
# tests/integration/test_redis_safety.py). Nothing runs between a script's commands and
# Redis never stops one half-way for memory, so acknowledgement, deletion, conversation
# and message records, the customer index, the marks and clearing the recorded batch
# order stay one atomic step, as in the MULTI; allow-oom lets it run at the limit. It
# writes a batch's marks (145 B each), message records (~320-410 B) and conversation
# records (~0.9-1 KB with the index set on 7.0.15, docs/redis.md) while deleting its
# entries (~1.4 KB for a 0.8 KB text) and its recorded order, if any. A record is
# rewritten in place, so for known conversations a commit at the limit frees more than it
# writes; a new conversation's first item writes more than its entry frees (~0.9 KB more
# for a short text), so draining a backlog of new conversations can take Redis above
# maxmemory by that much per entry: headroom docs/redis.md sizes.
#
# KEYS[1]: the stream; KEYS[2]: the sequences hash of versions before issue 9; KEYS[3]:
# the partition's recorded batch order (deleted: any commit of the partition ends it, the
# shard commits the recorded batch first); then n conversation record keys; then the n
# conversations' issue-9 sequence keys (in the same order); then m message record keys;
# then x customer index sets; then one key per item mark. ARGV[1]: the group; ARGV[2..4]:
# n, m, x; ARGV[5]: the marks' window (s); ARGV[6]: the retention (s, 0: records and
# index sets never expire); ARGV[7]: the message records' TTL (s); then the n
# conversation ids, the n record bodies, the m message bodies, the x index members (the
# conversation id each set gains); then the entry ids (500 per XACK: unpack's stack is
# bounded).
#
# Order: a script that fails is not rolled back, so the commands that can fail come first.
# Only a key of another type can make one fail (WRONGTYPE: written by something else):
# SADD on an index set, then XACK/XDEL on the stream; SET, DEL and EXPIRE cannot fail
# on any key, nor HDEL on the old hash (only ever a hash). A failing commit has then
# written at most index members (`find_conversations` ignores a member without a matching
# record) and the batch is retried whole: no entry is acknowledged without its records
# and marks, and the recorded order stays until one is.
#
# A record supersedes the sequence an earlier version stored: the commit deletes it
# (DEL, HDEL), so a record that later expires cannot bring the old numbering back. With a
# retention, the old hash also expires one retention after the first commit (EXPIRE NX):
# a conversation silent that long starts over anyway. A plain SET (no retention) also
# drops a TTL an earlier configuration gave the record, and PERSIST does so for its index.
_COMMIT = """#!lua flags=allow-oom
local n, m, x = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local retention, message_ttl = tonumber(ARGV[6]), ARGV[7]
for i = 1, x do
  local set = KEYS[3 + 2 * n + m + i]
  redis.call('SADD', set, ARGV[7 + 2 * n + m + i])
  if retention > 0 then redis.call('EXPIRE', set, retention) else redis.call('PERSIST', set) end
end
for i = 8 + 2 * n + m + x, #ARGV, 500 do
  local last = math.min(i + 499, #ARGV)
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, i, last))
  redis.call('XDEL', KEYS[1], unpack(ARGV, i, last))
end
redis.call('DEL', KEYS[3])
for i = 1, n do
  if retention > 0 then
    redis.call('SET', KEYS[3 + i], ARGV[7 + n + i], 'EX', retention)
  else
    redis.call('SET', KEYS[3 + i], ARGV[7 + n + i])
  end
  redis.call('DEL', KEYS[3 + n + i])
  redis.call('HDEL', KEYS[2], ARGV[7 + i])
end
if n > 0 and retention > 0 then redis.call('EXPIRE', KEYS[2], retention, 'NX') end
for i = 1, m do
  redis.call('SET', KEYS[3 + 2 * n + i], ARGV[7 + 2 * n + i], 'EX', message_ttl)
end
for i = 4 + 2 * n + m + x, #KEYS do redis.call('SET', KEYS[i], '1', 'EX', ARGV[5]) end
return 1
"""

# Fencing (adapters/ports.py "Fencing"): the last key of every script that reads for or
# writes as the partition's shard is the partition's epoch key, and its last argument
# the epoch the caller claimed ('' for a partition it never claimed: unchecked). The
# guarded body sees its own keys and arguments with those two left off (`#KEYS - 1`,
# `#ARGV - 1`; nothing is copied). Fenced only by a *higher* stored epoch, a later claim:
# a stored epoch that is missing or lower (Redis restarted without AOF, a failover to a
# replica without the last INCR, a flush) is set back to the caller's, so the newest
# live incarnation keeps working and the fence repairs itself.
_FENCE = """
local fence_key, fence = KEYS[#KEYS], ARGV[#ARGV]
if fence ~= '' then
  local stored = tonumber(redis.call('GET', fence_key) or '0') or 0
  if stored > tonumber(fence) then
    return redis.error_reply('FENCED epoch ' .. stored .. ' claimed since ' .. fence)
  end
  if stored < tonumber(fence) then redis.call('SET', fence_key, fence) end
end
"""


def _fenced(script: str) -> str:
    """The script, guarded by the fence: its own KEYS and ARGV counts one short."""
    shebang, body = script.split("\n", 1)
    body = body.replace("#KEYS", "(#KEYS - 1)").replace("#ARGV", "(#ARGV - 1)")
    return shebang + "\n" + _FENCE + body


# A claim: INCR the epoch, by an allow-oom script (INCR alone is refused at the memory
# limit, and a shard's start is what drains a full inbox). Idempotent per claim token
# (KEYS[2] holds the last claim's): a claim retried after a lost reply, whose first try
# ran after all, returns that try's epoch instead of fencing its own shard.
_CLAIM = """#!lua flags=allow-oom
if redis.call('GET', KEYS[2]) == ARGV[1] then
  return tonumber(redis.call('GET', KEYS[1]) or '0')
end
redis.call('SET', KEYS[2], ARGV[1])
return redis.call('INCR', KEYS[1])
"""

# A read, fenced: XREADGROUP without BLOCK inside the script (a script never blocks), so
# the epoch check and the hand-over are one step. When nothing new (">") is there, the
# reply is {0, the group's last-delivered id} and the client blocks with a plain XREAD
# after that id (a read of the stream, not the group: it hands nothing over), then runs
# the script again. KEYS[1]: the stream. ARGV: group, consumer, count, start id.
_READ = """#!lua flags=allow-oom
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3],
  'STREAMS', KEYS[1], ARGV[4])
if reply or ARGV[4] ~= '>' then return {1, reply} end
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last
  for i = 1, #group, 2 do
    if group[i] == 'name' then name = group[i + 1] end
    if group[i] == 'last-delivered-id' then last = group[i + 1] end
  end
  if name == ARGV[1] then return {0, last} end
end
return {0, '$'}
"""

# A batch's order, SET by an allow-oom script for the same reason as the commit: the shard
# records it before publishing the batch whose commit frees memory, so a plain SET refused
# at the limit would stop the drain. It writes the batch's ids (~20 B each as JSON, ~5 KB
# for a 256-entry batch) that the commit following it deletes again.
_RECORD_ORDER = """#!lua flags=allow-oom
redis.call('SET', KEYS[1], ARGV[1])
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


class RedisInbox(FailedStoreMethods):
    """The Inbox port on Redis Streams."""

    def __init__(
        self,
        url: str,
        prefix: str,
        window_s: int,
        *,
        retention_s: int | None,
        message_ttl_s: int,
        waitaof: WaitAof | None,
    ) -> None:
        """`retention_s`: a conversation record (and its customer index) expires after this
        many seconds without a write, None: never; `message_ttl_s`: each message record's
        TTL, from its last write."""
        # Timeouts: a Redis that stops answering must fail the request (503) or the batch
        # (retried), never hang it. Reads block at most block_ms and WAITAOF at most its
        # timeout (checked by Settings), both well under the client's socket timeout; the
        # ingress's own deadline is shorter still (adapters/redis_client.py).
        self._redis: aioredis.Redis = bounded_client(url)
        self._prefix = prefix
        self._window_s = window_s
        self._retention_s = retention_s
        self._message_ttl_s = message_ttl_s
        self._waitaof = waitaof
        self._append_once = self._redis.register_script(_APPEND_ONCE)
        self._commit = self._redis.register_script(_fenced(_COMMIT))
        self._create_group = self._redis.register_script(_CREATE_GROUP)
        self._record_order = self._redis.register_script(_fenced(_RECORD_ORDER))
        self._claim = self._redis.register_script(_CLAIM)
        self._read_script = self._redis.register_script(_fenced(_READ))
        # Per partition: the epoch this object claimed (absent: never claimed, unfenced),
        # and the token of a claim not yet answered (reused by its retry).
        self._epochs: dict[int, int] = {}
        self._claim_tokens: dict[int, str] = {}
        self._dead = RedisDeadLetters(self._redis, prefix, self._execute_durably)
        self._archive = RedisArchivePending(self._redis, prefix, self._execute_durably)
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
        """The issue-9 key of a conversation's last sequence (read only, as a fallback)."""
        return f"{self._prefix}seq:{conversation_id}"

    def conversation_key(self, conversation_id: str) -> str:
        """The Redis key of a conversation's record."""
        return f"{self._prefix}conv:{conversation_id}"

    def message_key(self, key: str) -> str:
        """The Redis key of a message record (`key`: models.conversation.message_key)."""
        return f"{self._prefix}msg:{key}"

    def customer_keys(
        self, tenant_id: str, *, wa_id: str | None = None, user_id: str | None = None
    ) -> list[str]:
        """The customer index sets of a tenant's customer: by wa_id, by user_id."""
        base = f"{self._prefix}cust:{tenant_id}"
        return [
            *([f"{base}:w:{wa_id}"] if wa_id is not None else []),
            *([f"{base}:u:{user_id}"] if user_id is not None else []),
        ]

    def mark_key(self, key: str) -> str:
        """The Redis key of a dedup mark."""
        return f"{self._prefix}seen:{key}"

    def order_key(self, partition: int) -> str:
        """The Redis key of a partition's recorded batch order."""
        return f"{self._prefix}order:{partition}"

    def epoch_key(self, partition: int) -> str:
        """The Redis key of a partition's shard epoch (bumped by every claim)."""
        return f"{self._prefix}epoch:{partition}"

    def _fence(self, partition: int) -> tuple[str, str]:
        """The fence's key and argument for a partition's scripts."""
        epoch = self._epochs.get(partition)
        return self.epoch_key(partition), "" if epoch is None else str(epoch)

    async def claim(self, partition: int) -> int:
        """INCR the partition's epoch (allow-oom script, WAITAOF behind it when configured,
        idempotent per claim: a retry after a lost reply reuses the token); this object's
        reads of the partition start again from its consumer's pending entries."""
        token = self._claim_tokens.setdefault(partition, uuid.uuid4().hex)
        key = self.epoch_key(partition)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                await self._claim(keys=[key, f"{key}:claim"], args=[token], client=pipe)
                (reply,) = await self._execute_durably(pipe)
        except RedisError as exc:
            raise TransientError(f"redis claim: {exc}") from exc
        epoch = int(reply)
        del self._claim_tokens[partition]  # the next claim is a new incarnation
        self._epochs[partition] = epoch
        self._pending_done.discard(partition)
        self._pending_from.pop(partition, None)
        return epoch

    async def _execute_durably(self, pipe: Pipeline) -> list[Any]:
        """Execute a pipeline of writes with WAITAOF behind them when configured (one
        connection, so WAITAOF covers exactly these writes); the writes' replies. A
        WAITAOF short of its counts raises TransientError."""
        if self._waitaof is not None:
            pipe.execute_command(*self._waitaof.command())
        results: list[Any] = await pipe.execute()
        if self._waitaof is not None:
            check_waitaof(results.pop(), self._waitaof)
        return results

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
                for delivery in deliveries:
                    key, items, raw = delivery[0], delivery[1], raw_of(delivery)
                    keys = [self.mark_key(key), *(self.stream(i.partition) for i in items)]
                    args: list[bytes | int] = [self._window_s, len(items)]
                    args += [dump_item(i) for i in items]
                    if raw is not None:
                        keys.append(self._archive.key)
                        args += [dump_header(raw), raw.body]
                    await self._append_once(keys=keys, args=args, client=pipe)
                results = await self._execute_durably(pipe)
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
        await self._create_group(keys=[self.stream(partition)], args=[GROUP])
        self._groups.add(partition)

    async def read(self, partition: int, count: int, block_ms: int) -> list[StoredItem]:
        """Pending entries of this partition's consumer first, then new ones.

        The pending entries are re-read once per process, when it starts: then nothing is
        in hand, so each is an orphan of a crashed process. After that only new entries
        are read, so an entry this process holds uncommitted (a later one committed before
        it) is not handed out again. If a read fails after Redis may already have handed
        entries over (a lost reply makes them pending), the next read starts again from
        this consumer's pending entries, so it hands out again the entries this process
        still holds too (the caller skips the ids it holds; module docstring).
        """
        try:
            return await self._read(partition, count, block_ms)
        except BaseException as exc:  # a cancelled read may have lost a reply too: re-read
            self._pending_done.discard(partition)
            self._pending_from.pop(partition, None)
            if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                self._groups.discard(partition)  # Redis lost the group: create it again
            if isinstance(exc, ResponseError) and "FENCED" in str(exc):
                raise Fenced(f"partition {partition}: {exc}") from exc
            if isinstance(exc, RedisError):
                raise TransientError(f"redis read: {exc}") from exc
            raise

    async def _read_group(self, partition: int, count: int, start: str) -> tuple[Any, str]:
        """One fenced XREADGROUP from `start` (">" or a pending id): (the reply in
        redis-py's parsed shape, the id to block after when nothing new was there)."""
        fence_key, fence = self._fence(partition)
        found, reply = await self._read_script(
            keys=[self.stream(partition), fence_key],
            args=[GROUP, f"p{partition}", count, start, fence],
        )
        if not found:
            return None, reply.decode() if isinstance(reply, bytes) else str(reply)
        parsed = [
            [
                stream,
                [
                    (entry_id, dict(zip(fields[::2], fields[1::2], strict=True)) if fields else {})
                    for entry_id, fields in entries
                ],
            ]
            for stream, entries in reply or []
        ]
        return parsed, ""

    async def _read(self, partition: int, count: int, block_ms: int) -> list[StoredItem]:
        key = self.stream(partition)
        await self._ensure_group(partition)
        if partition not in self._pending_done:
            start = self._pending_from.get(partition, "0")
            reply, _ = await self._read_group(partition, count, start)
            entries = [e for _, batch in reply or [] for e in batch]
            if entries:
                stored = self._decode(reply, redelivered=True)
                await self._ack_deleted(key, reply)
                last = entries[-1][0]
                self._pending_from[partition] = last.decode() if isinstance(last, bytes) else last
                return stored
            self._pending_done.add(partition)
        reply, after = await self._read_group(partition, count, ">")
        if reply is None and block_ms > 0:
            # Wakes when an entry past the group's last-delivered id exists (or times
            # out); the script then hands it over, fenced.
            await self._redis.xread({key: after}, count=1, block=block_ms)
            reply, _ = await self._read_group(partition, count, ">")
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
                        # `r`: moved by a reshard after a shard had read it (pending):
                        # a redelivery in its new partition (adapters/redis_reshard.py).
                        deliveries=2 if redelivered or b"r" in fields else 1,
                    )
                )
        return stored

    async def commit(
        self,
        partition: int,
        entry_ids: Sequence[str],
        state: StateWrite,
        seen: Collection[str] = (),
    ) -> None:
        """XACK + XDEL the entries, DEL the partition's recorded order, SET the
        conversation records (EX the retention, when set) and SET EX the message records,
        SADD each customer conversation to its index sets, SET EX the marks: one allow-oom
        script, so it succeeds at the memory limit (the drain is what frees memory)."""
        conversations = list(state.conversations.items())
        messages = list(state.messages.items())
        index: list[tuple[str, str]] = [
            (key, cid)
            for cid, record in conversations
            if record.kind == "customer" and record.customer is not None
            for key in self.customer_keys(
                record.tenant_id, wa_id=record.customer.wa_id, user_id=record.customer.user_id
            )
        ]
        fence_key, fence = self._fence(partition)
        keys = [
            self.stream(partition),
            self._legacy_seq_key,
            self.order_key(partition),
            *(self.conversation_key(cid) for cid, _ in conversations),
            *(self.sequence_key(cid) for cid, _ in conversations),
            *(self.message_key(key) for key, _ in messages),
            *(key for key, _ in index),
            *(self.mark_key(key) for key in seen),
            fence_key,
        ]
        args: list[str | int | bytes] = [
            GROUP,
            len(conversations),
            len(messages),
            len(index),
            self._window_s,
            self._retention_s or 0,
            self._message_ttl_s,
            *(cid for cid, _ in conversations),
            *(dump_conversation(record) for _, record in conversations),
            *(dump_message(record) for _, record in messages),
            *(cid for _, cid in index),
            *entry_ids,
            fence,
        ]
        try:
            await self._commit(keys=keys, args=args)
        except ResponseError as exc:
            if "FENCED" in str(exc):
                raise Fenced(f"partition {partition}: {exc}") from exc
            raise TransientError(f"redis commit: {exc}") from exc
        except RedisError as exc:
            raise TransientError(f"redis commit: {exc}") from exc

    async def record_order(self, partition: int, entry_ids: Sequence[str]) -> None:
        """SET the order key to the JSON list by the allow-oom script (so it succeeds at
        the memory limit), WAITAOF behind it when configured, as an append: one round trip.

        WAITAOF short of its counts is a failed record (TransientError): the shard retries
        it before publishing anything, so nothing is out that a lost record would reorder.
        """
        fence_key, fence = self._fence(partition)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                await self._record_order(
                    keys=[self.order_key(partition), fence_key],
                    args=[orjson.dumps(list(entry_ids)), fence],
                    client=pipe,
                )
                await self._execute_durably(pipe)
        except ResponseError as exc:
            if "FENCED" in str(exc):
                raise Fenced(f"partition {partition}: {exc}") from exc
            raise TransientError(f"redis record_order: {exc}") from exc
        except RedisError as exc:
            raise TransientError(f"redis record_order: {exc}") from exc

    async def recorded_order(self, partition: int) -> list[str]:
        """GET the order key."""
        try:
            body = await self._redis.get(self.order_key(partition))
        except RedisError as exc:
            raise TransientError(f"redis recorded_order: {exc}") from exc
        return [] if body is None else [str(entry_id) for entry_id in orjson.loads(body)]

    async def entries(self, partition: int, entry_ids: Sequence[str]) -> list[StoredItem]:
        """XRANGE id id per id, pipelined: one round trip. XRANGE reads the stream, not
        the group, so neither this consumer's pending list nor its delivery counts change
        (XREADGROUP or XCLAIM would). Committed entries are deleted: XRANGE finds nothing."""
        wanted = list(entry_ids)
        if not wanted:
            return []
        key = self.stream(partition)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry_id in wanted:
                    pipe.xrange(key, min=entry_id, max=entry_id)
                replies: list[Any] = await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"redis entries: {exc}") from exc
        return [
            StoredItem(
                entry_id=entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id),
                item=load_item(fields[b"d"]),
                deliveries=2,
            )
            for reply in replies
            for entry_id, fields in reply
        ]

    async def conversations(
        self, conversation_ids: Collection[str]
    ) -> dict[str, ConversationRecord]:
        """MGET the records, with the issue-9 sequence keys and the pre-issue-9 hash beside
        (HMGET) for conversations without one: one round trip."""
        wanted = list(conversation_ids)
        if not wanted:
            return {}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.mget([self.conversation_key(cid) for cid in wanted])
                pipe.mget([self.sequence_key(cid) for cid in wanted])
                pipe.hmget(self._legacy_seq_key, wanted)
                records, sequences, legacy = await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"redis conversations: {exc}") from exc
        found: dict[str, ConversationRecord] = {}
        for cid, body, seq, old in zip(wanted, records, sequences, legacy, strict=True):
            if body is not None:
                found[cid] = load_conversation(body)
            elif (value := seq if seq is not None else old) is not None:
                found[cid] = ConversationRecord.legacy(cid, int(value))
        return found

    async def messages(self, keys: Collection[str]) -> dict[str, MessageRecord]:
        """MGET the message records: one round trip."""
        wanted = list(keys)
        if not wanted:
            return {}
        try:
            bodies = await self._redis.mget([self.message_key(key) for key in wanted])
        except RedisError as exc:
            raise TransientError(f"redis messages: {exc}") from exc
        return {k: load_message(b) for k, b in zip(wanted, bodies, strict=True) if b is not None}

    async def find_conversations(
        self, tenant_id: str, *, wa_id: str | None = None, user_id: str | None = None
    ) -> list[ConversationRecord]:
        """SUNION of the customer's index sets, then MGET their records: two round trips.

        A set can name a conversation whose record has expired since, or whose customer
        no longer has this id: only records that still match are returned.
        """
        sets = self.customer_keys(tenant_id, wa_id=wa_id, user_id=user_id)
        if not sets:
            return []
        try:
            members: Any = await self._redis.sunion(sets)
            ids = sorted(m.decode() for m in members)
            bodies = await self._redis.mget([self.conversation_key(c) for c in ids]) if ids else []
        except RedisError as exc:
            raise TransientError(f"redis find_conversations: {exc}") from exc
        records = [load_conversation(body) for body in bodies if body is not None]
        return [r for r in records if _matches(r, tenant_id, wa_id, user_id)]

    async def append_replayed(self, items: Sequence[InboxItem]) -> None:
        """See Inbox (adapters/archive_pending_redis.py): one script, no mark."""
        await self._archive.append_replayed(items, self.stream)

    async def archive_pending(self, limit: int) -> list[PendingArchive]:
        """See Inbox: the oldest entries of the `<prefix>archive` stream."""
        return await self._archive.pending(limit)

    async def archive_done(self, entry_ids: Sequence[str]) -> None:
        """See Inbox: XDEL from the `<prefix>archive` stream."""
        await self._archive.done(entry_ids)

    async def archive_backlog(self) -> ArchiveBacklog:
        """See Inbox."""
        return await self._archive.backlog()

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


def _matches(
    record: ConversationRecord, tenant_id: str, wa_id: str | None, user_id: str | None
) -> bool:
    """Whether a record is a customer conversation of this tenant with this wa_id or user_id."""
    customer = record.customer
    if record.kind != "customer" or customer is None or record.tenant_id != tenant_id:
        return False
    return (wa_id is not None and customer.wa_id == wa_id) or (
        user_id is not None and customer.user_id == user_id
    )
