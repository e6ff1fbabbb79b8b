"""An AccountStore whose writes and reads fail on demand (a store outage), over a real one."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from adapters.errors import TransientError
from adapters.ports import AccountStore
from models.account import AccountSnapshot
from models.account_change import AccountChange


class FailingAccountStore:
    """Every call raises TransientError while `fail` is set; else the inner store answers."""

    def __init__(self, inner: AccountStore, *, fail: bool = True) -> None:
        self.inner = inner
        self.fail = fail

    def _check(self) -> None:
        if self.fail:
            raise TransientError("account store down (test)")

    async def get(self, tenant_id: str) -> AccountSnapshot | None:
        self._check()
        return await self.inner.get(tenant_id)

    async def get_many(self, tenant_ids: Collection[str]) -> dict[str, AccountSnapshot]:
        self._check()
        return await self.inner.get_many(tenant_ids)

    async def put(self, snapshot: AccountSnapshot) -> None:
        self._check()
        await self.inner.put(snapshot)

    async def apply(self, changes: Sequence[AccountChange]) -> None:
        self._check()
        await self.inner.apply(changes)

    async def add_counts(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        self._check()
        await self.inner.add_counts(counts)

    async def counts(self, tenant_id: str) -> dict[str, int]:
        self._check()
        return await self.inner.counts(tenant_id)

    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        await self.inner.close()
