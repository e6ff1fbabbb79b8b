"""The accounts' readiness check (ingress/account_health.py): degraded, never down, for a
restricted or unverified account or a store that does not answer; read at most once per
cache period."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from adapters.sqlite_accounts import SqliteAccountStore
from ingress.account_health import account_check
from models.account import AccountSnapshot, PhoneNumberState, WabaState
from models.tenant import Tenant, TenantDirectory
from tests.support.failing_accounts import FailingAccountStore

DIRECTORY = TenantDirectory(
    [Tenant(id=t, app_secrets=(SecretStr(f"{t}-secret"),)) for t in ("acme", "beta", "gamma")]
)


def banned(tenant_id: str) -> AccountSnapshot:
    return AccountSnapshot(
        tenant_id=tenant_id,
        wabas={"w1": WabaState(waba_id="w1", ban_state="DISABLE")},
        phone_numbers={"p1": PhoneNumberState(phone_number_id="p1", name_status="PENDING_REVIEW")},
    )


async def test_restricted_and_unverified_tenants_are_named(tmp_path: Path) -> None:
    """acme banned with a name in review, beta healthy, gamma never refreshed."""
    store = SqliteAccountStore(tmp_path / "inbox.db")
    try:
        check = account_check(store, DIRECTORY, cache_s=0)
        assert await check() is None
        await store.put(banned("acme"))
        await store.put(AccountSnapshot(tenant_id="beta"))
        assert await check() == (
            "restricted: acme (waba w1: ban DISABLE) | "
            "unverified: acme (phone_number p1: name PENDING_REVIEW)"
        )
    finally:
        await store.close()


async def test_the_answer_is_cached_and_a_dead_store_is_a_detail(tmp_path: Path) -> None:
    """Within cache_s the store is not read again; after it, a store that fails is
    reported as a detail (not raised: the replica stays ready)."""
    now = [0.0]
    store = FailingAccountStore(SqliteAccountStore(tmp_path / "inbox.db"), fail=False)
    try:
        check = account_check(store, DIRECTORY, cache_s=30, clock=lambda: now[0])
        assert await check() is None
        await store.put(banned("acme"))
        store.fail = True
        now[0] = 29.0
        assert await check() is None  # cached
        now[0] = 31.0
        assert await check() == "account store unreadable (TransientError)"
        store.fail = False
        assert (await check() or "").startswith("restricted: acme")
    finally:
        await store.close()
