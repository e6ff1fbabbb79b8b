"""A TenantRegistry that fails on demand (a store outage) over a real one."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.errors import TransientError
from adapters.ports import TenantRegistry
from models.tenant import Tenant


class FailingTenantRegistry:
    """Every call raises TransientError while `fail` is set; else the inner one answers."""

    def __init__(self, inner: TenantRegistry, *, fail: bool = True) -> None:
        self.inner = inner
        self.fail = fail
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.fail:
            raise TransientError("tenant registry down (test)")

    async def version(self) -> int:
        self._check()
        return await self.inner.version()

    async def load(self) -> tuple[int, list[Tenant]]:
        self._check()
        return await self.inner.load()

    async def get(self, tenant_id: str) -> Tenant | None:
        self._check()
        return await self.inner.get(tenant_id)

    async def put(self, tenant: Tenant, *, create: bool) -> int:
        self._check()
        return await self.inner.put(tenant, create=create)

    async def delete(self, tenant_id: str) -> int:
        self._check()
        return await self.inner.delete(tenant_id)

    async def seed(self, tenants: Sequence[Tenant]) -> list[str]:
        self._check()
        return await self.inner.seed(tenants)

    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        await self.inner.close()
