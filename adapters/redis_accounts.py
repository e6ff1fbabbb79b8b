"""The AccountStore port on Redis, beside the inbox under its key prefix.

`<prefix>account:<tenant>` holds a tenant's snapshot as JSON (models/account.py), no
expiry: it is a cache of what Meta says, rewritten by every refresh, and small (a few KB
per tenant with its templates). `<prefix>stats:<tenant>` is a hash of the tenant's
analytics counters (models/tenant_stats.py), added to with HINCRBY.

`apply` is an optimistic transaction per tenant: WATCH the snapshot, read it, apply the
changes in Python (`apply_change` is the one definition of what a webhook changes), and
write it back in MULTI/EXEC; a concurrent write (another shard's change, a refresh's
`put`) aborts the EXEC and the whole read-apply-write is done again, so neither is lost.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Collection, Mapping, Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError, WatchError

from adapters.errors import TransientError
from adapters.redis_client import bounded_client
from models.account import AccountSnapshot
from models.account_change import AccountChange, apply_change

# Concurrent writers of one tenant's snapshot are few (its shard, the refresher, an admin):
# a try that lost the race waits a jittered, growing moment, so a crowd thins out instead
# of colliding again in step.
_MAX_TRIES = 40
_RETRY_BASE_S = 0.001


def _grouped(changes: Sequence[AccountChange]) -> dict[str, list[AccountChange]]:
    by_tenant: dict[str, list[AccountChange]] = {}
    for change in changes:
        by_tenant.setdefault(change.tenant_id, []).append(change)
    return by_tenant


class RedisAccountStore:
    """AccountStore (adapters/ports.py) on Redis."""

    def __init__(self, url: str, prefix: str) -> None:
        self._redis: aioredis.Redis = bounded_client(url)
        self._prefix = prefix

    def _key(self, tenant_id: str) -> str:
        return f"{self._prefix}account:{tenant_id}"

    def _stats_key(self, tenant_id: str) -> str:
        return f"{self._prefix}stats:{tenant_id}"

    async def get(self, tenant_id: str) -> AccountSnapshot | None:
        """See AccountStore: GET the snapshot."""
        try:
            raw = await self._redis.get(self._key(tenant_id))
        except RedisError as exc:
            raise TransientError(f"redis account get: {exc}") from exc
        return None if raw is None else AccountSnapshot.model_validate_json(raw)

    async def get_many(self, tenant_ids: Collection[str]) -> dict[str, AccountSnapshot]:
        """See AccountStore: MGET."""
        wanted = list(tenant_ids)
        if not wanted:
            return {}
        try:
            bodies = await self._redis.mget([self._key(t) for t in wanted])
        except RedisError as exc:
            raise TransientError(f"redis account get_many: {exc}") from exc
        return {
            tenant: AccountSnapshot.model_validate_json(body)
            for tenant, body in zip(wanted, bodies, strict=True)
            if body is not None
        }

    async def put(self, snapshot: AccountSnapshot) -> None:
        """See AccountStore: SET the snapshot."""
        try:
            await self._redis.set(self._key(snapshot.tenant_id), snapshot.model_dump_json())
        except RedisError as exc:
            raise TransientError(f"redis account put: {exc}") from exc

    async def apply(self, changes: Sequence[AccountChange]) -> None:
        """See AccountStore: one optimistic transaction per tenant (the module docstring)."""
        try:
            for tenant_id, mine in _grouped(changes).items():
                await self._apply_tenant(tenant_id, mine)
        except RedisError as exc:
            raise TransientError(f"redis account apply: {exc}") from exc

    async def _apply_tenant(self, tenant_id: str, changes: list[AccountChange]) -> None:
        key = self._key(tenant_id)
        for attempt in range(_MAX_TRIES):
            if attempt:
                await asyncio.sleep(random.uniform(0, _RETRY_BASE_S * 2 ** min(attempt, 7)))
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    snapshot = None if raw is None else AccountSnapshot.model_validate_json(raw)
                    new = snapshot
                    for change in changes:
                        new = apply_change(new, change)
                    if new == snapshot:
                        return  # nothing changes; leaving the block resets the WATCH
                    assert new is not None  # apply_change always returns a snapshot
                    pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                    pipe.set(key, new.model_dump_json())
                    await pipe.execute()
                    return
                except WatchError:
                    continue  # someone wrote the snapshot meanwhile: read it again
        raise TransientError(f"redis account apply: {tenant_id} kept changing, gave up")

    async def add_counts(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        """See AccountStore: HINCRBY per counter, one pipeline (not a transaction: each
        increment stands alone)."""
        if not any(counts.values()):
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for tenant_id, per_name in counts.items():
                    for name, amount in per_name.items():
                        pipe.hincrby(self._stats_key(tenant_id), name, amount)
                await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"redis add_counts: {exc}") from exc

    async def counts(self, tenant_id: str) -> dict[str, int]:
        """See AccountStore: HGETALL."""
        try:
            raw: dict[bytes, bytes] = await self._redis.hgetall(self._stats_key(tenant_id))  # type: ignore[assignment]  # redis-py types it for sync and async clients at once
        except RedisError as exc:
            raise TransientError(f"redis counts: {exc}") from exc
        return {name.decode(): int(value) for name, value in raw.items()}

    async def ping(self) -> None:
        """See AccountStore."""
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise TransientError(f"redis ping: {exc}") from exc

    async def close(self) -> None:
        """See AccountStore."""
        await self._redis.aclose()
