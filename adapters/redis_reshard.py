"""The inbox layout on Redis: the record, and entries moved between partition streams.

The record is a string key `<prefix>layout` (JSON, models/inbox_layout.py), no expiry.
The partitions in use are found by SCAN over `<prefix>inbox:<n>` streams (a reshard and a
start without a record only: it walks the whole keyspace, ~1 s per million keys here).

A move is one script per batch (adapters/ports.py InboxLayoutStore): per entry, XADD to
the target stream, XACK and XDEL from the source, so each entry is in exactly one stream
whatever moment the reshard is killed at (Redis runs a script whole, and the AOF holds its
effects as one transaction). A moved entry gets a new id (stream ids are per stream and
must grow), is appended in the order given, so a conversation's entries (all in one source:
one partition per conversation under any count) keep their order in the target. One that
was pending in the source's consumer group (read by a shard, never committed) carries a
field `r`, so its new partition's shard reads it as a redelivery (adapters/redis_inbox.py),
as a restart would have: not held by the reorder window, taken in entry order.

A recorded batch (the shard's crash-consistent republish, `<prefix>order:<partition>`) is
moved by one script with its records: the ids leave the source's record and, by their new
ids and in the recorded order, are appended to each target's record, so the target's shard
republishes them first, in that order. Several sources' batches may land in one record:
their conversations are disjoint, and the shard replays a record as one batch in its order.

Flagged allow-oom: at the memory limit (a backlog behind a broker outage is when one
reshards) each move adds an entry and deletes one, and a refused script would leave the
inbox half moved until memory is freed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from adapters.codec import dump_item, load_item
from adapters.errors import TransientError
from adapters.redis_client import bounded_client
from adapters.redis_inbox import GROUP
from models.inbox import StoredItem
from models.inbox_layout import InboxLayout, Move

# KEYS[1]: the source stream; KEYS[2]: its recorded order; then per target (1-based index
# t) its stream KEYS[1 + 2t] and its recorded order KEYS[2 + 2t]. ARGV[1]: the group;
# ARGV[2]: '1' when the moves are the source's recorded batch; then per move: the source
# id, the target's index, the encoded item. An entry read before (pending in its source,
# or moved before while pending: its field 'r') keeps reading back as a redelivery. The
# only command that can fail is XADD on a key of another type (written by something
# else), before anything of its entry is deleted; XPENDING and XACK of a stream without
# the group are pcalls (never read: not pending).
_MOVE = """#!lua flags=allow-oom
local group, recorded = ARGV[1], ARGV[2] == '1'
local moved, added, count = {}, {}, 0
for i = 3, #ARGV, 3 do
  local id, t, body = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local found = redis.call('XRANGE', KEYS[1], id, id)
  if #found == 1 then
    local pending = redis.pcall('XPENDING', KEYS[1], group, id, id, 1)
    local was_moved_pending = false  -- carried over from an earlier move (field 'r')
    local fields = found[1][2]
    for f = 1, #fields, 2 do
      if fields[f] == 'r' then was_moved_pending = true end
    end
    local new_id
    if was_moved_pending or (type(pending) == 'table' and pending.err == nil and #pending > 0) then
      new_id = redis.call('XADD', KEYS[1 + 2 * t], '*', 'd', body, 'r', '1')
    else
      new_id = redis.call('XADD', KEYS[1 + 2 * t], '*', 'd', body)
    end
    redis.pcall('XACK', KEYS[1], group, id)
    redis.call('XDEL', KEYS[1], id)
    moved[id] = true
    added[t] = added[t] or {}
    table.insert(added[t], new_id)
    count = count + 1
  end
end
if recorded and count > 0 then
  local body = redis.call('GET', KEYS[2])
  local stay = {}
  if body then
    for _, id in ipairs(cjson.decode(body)) do
      if not moved[id] then table.insert(stay, id) end
    end
  end
  if #stay > 0 then
    redis.call('SET', KEYS[2], cjson.encode(stay))
  else
    redis.call('DEL', KEYS[2])
  end
  for t, ids in pairs(added) do
    local existing = redis.call('GET', KEYS[2 + 2 * t])
    local all = existing and cjson.decode(existing) or {}
    for _, id in ipairs(ids) do table.insert(all, id) end
    redis.call('SET', KEYS[2 + 2 * t], cjson.encode(all))
  end
end
return count
"""

# The record, SET by an allow-oom script: the first start on a full Redis (a backlog
# behind an outage) writes it, and a reshard writes it before its first move.
_SET_LAYOUT = """#!lua flags=allow-oom
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

# The shard fence (adapters/redis_inbox.py `_CLAIM`): INCR each partition's epoch, by an
# allow-oom script (INCR alone is refused at the memory limit).
_FENCE = """#!lua flags=allow-oom
for i = 1, #KEYS do redis.call('INCR', KEYS[i]) end
return #KEYS
"""

# KEYS[1]: the stream; KEYS[2]: its recorded order. Checked and deleted in one step.
_DROP_EMPTY = """#!lua flags=allow-oom
if redis.call('XLEN', KEYS[1]) > 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""


def _glob_escape(text: str) -> str:
    """`text` matched literally by a SCAN pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisLayoutStore:
    """The InboxLayoutStore port on the Redis the inbox uses (same prefix and keys)."""

    def __init__(self, url: str, prefix: str) -> None:
        self._redis: aioredis.Redis = bounded_client(url)
        self._prefix = prefix
        self._move = self._redis.register_script(_MOVE)
        self._drop_empty = self._redis.register_script(_DROP_EMPTY)
        self._set_layout = self._redis.register_script(_SET_LAYOUT)
        self._fence = self._redis.register_script(_FENCE)

    async def fence(self, partitions: Sequence[int]) -> None:
        """INCR `<prefix>epoch:<p>` of each partition (the keys adapters/redis_inbox.py
        checks), one allow-oom script."""
        try:
            await self._fence(keys=[f"{self._prefix}epoch:{p}" for p in partitions], args=[])
        except RedisError as exc:
            raise TransientError(f"redis fence: {exc}") from exc

    @property
    def layout_key(self) -> str:
        """The Redis key of the layout record."""
        return f"{self._prefix}layout"

    def stream(self, partition: int) -> str:
        """A partition's stream key (as adapters/redis_inbox.py names it)."""
        return f"{self._prefix}inbox:{partition}"

    def order_key(self, partition: int) -> str:
        """A partition's recorded order key (as adapters/redis_inbox.py names it)."""
        return f"{self._prefix}order:{partition}"

    async def layout(self) -> InboxLayout | None:
        """GET the record."""
        try:
            body = await self._redis.get(self.layout_key)
        except RedisError as exc:
            raise TransientError(f"redis layout: {exc}") from exc
        return None if body is None else InboxLayout.model_validate_json(body)

    async def set_layout(self, layout: InboxLayout) -> None:
        """SET the record (allow-oom script)."""
        try:
            await self._set_layout(keys=[self.layout_key], args=[layout.model_dump_json()])
        except RedisError as exc:
            raise TransientError(f"redis set_layout: {exc}") from exc

    async def occupied(self) -> dict[int, int]:
        """SCAN the partition streams (TYPE stream), XLEN each non-negative one."""
        start = f"{self._prefix}inbox:"
        found: dict[int, int] = {}
        try:
            partitions: list[int] = []
            async for key in self._redis.scan_iter(
                match=_glob_escape(start) + "*", count=1000, _type="STREAM"
            ):
                suffix = _text(key)[len(start) :]
                if suffix.isdigit():  # "-1", the unowned partition, is not a shard's
                    partitions.append(int(suffix))
            async with self._redis.pipeline(transaction=False) as pipe:
                for partition in partitions:
                    pipe.xlen(self.stream(partition))
                lengths: list[Any] = await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"redis occupied: {exc}") from exc
        for partition, length in zip(partitions, lengths, strict=True):
            if int(length):
                found[partition] = int(length)
        return dict(sorted(found.items()))

    async def scan(self, partition: int, after: str | None, count: int) -> list[StoredItem]:
        """XRANGE after the id (exclusive): the stream, not the group, so nothing changes."""
        try:
            reply: Any = await self._redis.xrange(
                self.stream(partition), min="-" if after is None else f"({after}", count=count
            )
        except RedisError as exc:
            raise TransientError(f"redis scan: {exc}") from exc
        return [
            StoredItem(entry_id=_text(entry_id), item=load_item(fields[b"d"]))
            for entry_id, fields in reply
        ]

    async def recorded(self, partition: int) -> list[StoredItem]:
        """GET the record, then XRANGE id id per id, pipelined."""
        try:
            body = await self._redis.get(self.order_key(partition))
            if body is None:
                return []
            ids = [str(entry_id) for entry_id in orjson.loads(body)]
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry_id in ids:
                    pipe.xrange(self.stream(partition), min=entry_id, max=entry_id)
                replies: list[Any] = await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"redis recorded: {exc}") from exc
        return [
            StoredItem(entry_id=_text(entry_id), item=load_item(fields[b"d"]), deliveries=2)
            for reply in replies
            for entry_id, fields in reply
        ]

    async def move(self, partition: int, moves: Sequence[Move], *, recorded: bool) -> int:
        """One allow-oom script for the batch (module docstring)."""
        if not moves:
            return 0
        targets = sorted({m.target for m in moves})
        index = {target: i + 1 for i, target in enumerate(targets)}
        keys = [self.stream(partition), self.order_key(partition)]
        for target in targets:
            keys += [self.stream(target), self.order_key(target)]
        args: list[str | int | bytes] = [GROUP, "1" if recorded else "0"]
        for m in moves:
            args += [m.entry_id, index[m.target], dump_item(m.item)]
        try:
            return int(await self._move(keys=keys, args=args))
        except RedisError as exc:
            raise TransientError(f"redis move: {exc}") from exc

    async def drop_empty(self, partition: int) -> bool:
        """DEL the stream (its consumer group with it) and its record when XLEN is 0."""
        try:
            keys = [self.stream(partition), self.order_key(partition)]
            return bool(await self._drop_empty(keys=keys, args=[]))
        except RedisError as exc:
            raise TransientError(f"redis drop_empty: {exc}") from exc

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
