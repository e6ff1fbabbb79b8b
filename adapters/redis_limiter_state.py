"""The LimiterStateStore port on Redis: `<prefix>limiter:<tenant>`, one small JSON value.

No expiry: a tenant's Graph closure may last an hour, and the value is rewritten on every
throttle and usage report; a deleted tenant leaves one key of ~200 bytes.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from adapters.errors import TransientError
from adapters.redis_client import bounded_client


class RedisLimiterState:
    """LimiterStateStore (adapters/ports.py) on Redis."""

    def __init__(self, url: str, prefix: str) -> None:
        self._redis: aioredis.Redis = bounded_client(url)
        self._prefix = prefix

    def _key(self, tenant_id: str) -> str:
        return f"{self._prefix}limiter:{tenant_id}"

    async def get(self, tenant_id: str) -> bytes | None:
        """See LimiterStateStore."""
        try:
            raw = await self._redis.get(self._key(tenant_id))
        except RedisError as exc:
            raise TransientError(f"redis limiter get: {exc}") from exc
        return raw.encode() if isinstance(raw, str) else raw

    async def put(self, tenant_id: str, state: bytes) -> None:
        """See LimiterStateStore."""
        try:
            await self._redis.set(self._key(tenant_id), state)
        except RedisError as exc:
            raise TransientError(f"redis limiter put: {exc}") from exc

    async def close(self) -> None:
        """See LimiterStateStore."""
        await self._redis.aclose()
