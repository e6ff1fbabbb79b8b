"""The failed store on Redis: each dead letter a string key, indexed by when it died.

`<prefix>dead:<dead_letter_id>` holds the dead letter as JSON (adapters/codec.py), with no
expiry: a dead letter is the only copy of an accepted item and stays until purged
(`python -m cluster dead-letters purge`). `<prefix>dead` is a sorted set of the ids
scored by the time they died (epoch milliseconds), so listing is oldest first and a page
starts after the previous page's last id (ZRANK, then ZRANGE).

Writes go through an allow-oom script, like the batch-order record, with WAITAOF behind
them when configured: a shard stores its dead letters before it publishes their batch,
and at Redis's memory limit that write must not be the one that stops the drain.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from adapters.codec import dump_dead_letter, load_dead_letter
from adapters.errors import TransientError
from models.dead_letter import DeadLetter

# KEYS[1]: the index; KEYS[2..]: the letters' keys. ARGV: (id, score, body) per letter.
_STORE = """#!lua flags=allow-oom
for i = 2, #KEYS do
  local base = 3 * (i - 2)
  redis.call('SET', KEYS[i], ARGV[base + 3])
  redis.call('ZADD', KEYS[1], ARGV[base + 2], ARGV[base + 1])
end
return 1
"""


class RedisDeadLetters:
    """The Inbox port's failed-store methods, on the inbox's own connection."""

    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        execute_durably: Callable[[Pipeline], Awaitable[list[Any]]],
    ) -> None:
        self._redis = redis
        self._index = f"{prefix}dead"
        self._key_prefix = f"{prefix}dead:"
        self._execute_durably = execute_durably
        self._store = redis.register_script(_STORE)

    def key(self, dead_letter_id: str) -> str:
        """The Redis key of a dead letter."""
        return f"{self._key_prefix}{dead_letter_id}"

    async def store(self, letters: Sequence[DeadLetter]) -> None:
        """SET each letter and ZADD it to the index, one allow-oom script (WAITAOF behind)."""
        if not letters:
            return
        args: list[Any] = []
        for letter in letters:
            score = int(letter.dead_at.timestamp() * 1000)
            args += [letter.dead_letter_id, score, dump_dead_letter(letter)]
        keys = [self._index, *(self.key(letter.dead_letter_id) for letter in letters)]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                await self._store(keys=keys, args=args, client=pipe)
                await self._execute_durably(pipe)
        except RedisError as exc:
            raise TransientError(f"redis store_dead_letters: {exc}") from exc

    async def find(self, dead_letter_ids: Collection[str]) -> dict[str, DeadLetter]:
        """MGET the letters."""
        wanted = list(dead_letter_ids)
        if not wanted:
            return {}
        try:
            bodies = await self._redis.mget([self.key(i) for i in wanted])
        except RedisError as exc:
            raise TransientError(f"redis find_dead_letters: {exc}") from exc
        pairs = zip(wanted, bodies, strict=True)
        return {i: load_dead_letter(body) for i, body in pairs if body is not None}

    async def page(self, limit: int, after: str | None) -> list[DeadLetter]:
        """ZRANK of `after` (from the start if absent), ZRANGE the next ids, MGET them."""
        try:
            start = 0
            if after is not None:
                rank: int | None = await self._redis.zrank(self._index, after)  # type: ignore[assignment]
                start = 0 if rank is None else rank + 1
            ids = await self._redis.zrange(self._index, start, start + max(limit, 1) - 1)
        except RedisError as exc:
            raise TransientError(f"redis dead_letters: {exc}") from exc
        names = [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
        found = await self.find(names)
        return [found[name] for name in names if name in found]

    async def purge(self, dead_letter_ids: Sequence[str] | None) -> int:
        """DEL the letters and ZREM them (None: every id in the index, in pages)."""
        try:
            if dead_letter_ids is not None:
                return await self._delete(list(dead_letter_ids))
            total = 0
            while ids := await self._redis.zrange(self._index, 0, 999):
                names = [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
                total += await self._delete(names)
            return total
        except RedisError as exc:
            raise TransientError(f"redis purge_dead_letters: {exc}") from exc

    async def _delete(self, names: list[str]) -> int:
        if not names:
            return 0
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*(self.key(name) for name in names))
            pipe.zrem(self._index, *names)
            deleted, _ = await pipe.execute()
        return int(deleted)

    async def count(self) -> int:
        """ZCARD of the index."""
        try:
            return int(await self._redis.zcard(self._index))
        except RedisError as exc:
            raise TransientError(f"redis dead_letter_count: {exc}") from exc
