"""The TenantRegistry port on Redis, beside the inbox under its key prefix.

`<prefix>tenants` is a hash of tenant id -> the tenant's JSON (Tenant.stored(), secrets in
clear: the store is as trusted as the inbox, which holds the raw deliveries);
`<prefix>tenants:version` counts the changes; `<prefix>tenants:deleted` is the set of ids
deleted through the registry, which seeding never brings back. No key expires.

Every write is an optimistic transaction on the version: WATCH it, read the whole set,
decide in Python (adapters/tenant_sets.py checks the resulting set), then HSET/HDEL and
INCR in MULTI/EXEC. Every write bumps the version, so any concurrent write aborts the EXEC
and the loser reads again: two admins' puts both land, and a conflict is judged against
the set that is really there. `load` reads the version and the hash in one MULTI, a
consistent snapshot. Writers are a handful of admins and seeding replicas at start-up.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, WatchError

from adapters.errors import TransientError
from adapters.redis_client import bounded_client
from adapters.tenant_sets import checked_delete, checked_put, seeded
from models.tenant import Tenant

# A lost race waits a jittered, growing moment (as adapters/redis_accounts.py does), so
# replicas seeding together at start-up thin out instead of colliding again in step.
_MAX_TRIES = 40
_RETRY_BASE_S = 0.001


def _tenants(raw: dict[bytes, bytes]) -> dict[str, Tenant]:
    return {key.decode(): Tenant.from_stored(body) for key, body in raw.items()}


class RedisTenantRegistry:
    """TenantRegistry (adapters/ports.py) on Redis."""

    def __init__(self, url: str, prefix: str) -> None:
        self._redis: aioredis.Redis = bounded_client(url)
        self._hash = f"{prefix}tenants"
        self._version = f"{prefix}tenants:version"
        self._deleted = f"{prefix}tenants:deleted"

    async def version(self) -> int:
        """See TenantRegistry: GET the counter."""
        try:
            raw = await self._redis.get(self._version)
        except RedisError as exc:
            raise TransientError(f"redis tenants version: {exc}") from exc
        return int(raw or 0)

    async def load(self) -> tuple[int, list[Tenant]]:
        """See TenantRegistry: the counter and the hash in one MULTI."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(self._version)
                pipe.hgetall(self._hash)
                raw_version, raw = await pipe.execute()
        except RedisError as exc:
            raise TransientError(f"redis tenants load: {exc}") from exc
        return int(raw_version or 0), list(_tenants(raw).values())

    async def get(self, tenant_id: str) -> Tenant | None:
        """See TenantRegistry: HGET."""
        try:
            raw = await self._redis.hget(self._hash, tenant_id)
        except RedisError as exc:
            raise TransientError(f"redis tenants get: {exc}") from exc
        return None if raw is None else Tenant.from_stored(raw)

    async def put(self, tenant: Tenant, *, create: bool) -> int:
        """See TenantRegistry: an optimistic transaction on the version."""

        async def write(pipe: Pipeline, current: dict[str, Tenant]) -> Callable[[], None]:
            stored = checked_put(current, tenant, create=create)

            def queue() -> None:
                pipe.hset(self._hash, stored.id, stored.stored())

            return queue

        return await self._transact("put", write)

    async def delete(self, tenant_id: str) -> int:
        """See TenantRegistry: HDEL and remember the id, on the version's transaction."""

        async def write(pipe: Pipeline, current: dict[str, Tenant]) -> Callable[[], None]:
            checked_delete(current, tenant_id)

            def queue() -> None:
                pipe.hdel(self._hash, tenant_id)
                pipe.sadd(self._deleted, tenant_id)

            return queue

        return await self._transact("delete", write)

    async def seed(self, tenants: Sequence[Tenant]) -> list[str]:
        """See TenantRegistry: the new ids in one transaction (nothing written: [])."""
        added: list[str] = []

        async def write(pipe: Pipeline, current: dict[str, Tenant]) -> Callable[[], None] | None:
            members: set[bytes] = await pipe.smembers(self._deleted)  # type: ignore[assignment]  # redis-py types it for sync and async clients at once
            deleted = {m.decode() for m in members}
            new = seeded(current, deleted, tenants)
            added[:] = [t.id for t in new]
            if not new:
                return None

            def queue() -> None:
                pipe.hset(self._hash, mapping={t.id: t.stored() for t in new})

            return queue

        await self._transact("seed", write)
        return added

    async def _transact(
        self,
        what: str,
        decide: Callable[[Pipeline, dict[str, Tenant]], Awaitable[Callable[[], None] | None]],
    ) -> int:
        """WATCH the version, read the set, `decide` (its queued writes, or None: nothing
        to write), EXEC them with INCR; again on a concurrent write. The version after."""
        try:
            for attempt in range(_MAX_TRIES):
                if attempt:
                    await asyncio.sleep(random.uniform(0, _RETRY_BASE_S * 2 ** min(attempt, 7)))
                async with self._redis.pipeline(transaction=True) as pipe:
                    try:
                        await pipe.watch(self._version, self._deleted)
                        raw: dict[bytes, bytes] = await pipe.hgetall(self._hash)  # type: ignore[assignment]  # redis-py types it for sync and async clients at once
                        current = _tenants(raw)
                        queue = await decide(pipe, current)
                        if queue is None:
                            return int(await pipe.get(self._version) or 0)
                        pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                        queue()
                        pipe.incr(self._version)
                        results = await pipe.execute()
                        return int(results[-1])
                    except WatchError:
                        continue  # another write came in between: read the set again
        except RedisError as exc:
            raise TransientError(f"redis tenants {what}: {exc}") from exc
        raise TransientError(f"redis tenants {what}: the registry kept changing, gave up")

    async def ping(self) -> None:
        """See TenantRegistry."""
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise TransientError(f"redis ping: {exc}") from exc

    async def close(self) -> None:
        """See TenantRegistry."""
        await self._redis.aclose()
