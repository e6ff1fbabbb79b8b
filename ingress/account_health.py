"""The accounts' readiness detail: a tenant whose account is restricted or unverified.

An account Meta restricted or has not verified still receives webhooks, and the service
must keep storing them, so this check only ever says "degraded" (the replica stays
ready): failing readiness would turn a ban of one tenant into refused deliveries for all.
It names the tenants and their first reasons (models/account.py `AccountSnapshot.flags`).

The snapshots are read in one round trip, at most once per `cache_s`: a snapshot holds
every template of the tenant (hundreds of KB for a large one), and readiness is probed
every few seconds by every load balancer; an account's state changes far more slowly. A
store that does not answer is reported as a detail too (the inbox check, on the same
store, is the one that decides readiness).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from adapters.errors import AdapterError
from adapters.ports import AccountStore
from ingress.config import ReadyCheck
from models.tenant import TenantDirectory

_REASONS_SHOWN = 3  # per tenant; the admin API has them all


def account_check(
    store: AccountStore,
    directory: TenantDirectory,
    *,
    cache_s: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> ReadyCheck:
    """None while no tenant's account is restricted or unverified; else a detail naming
    the tenants and why (read again after `cache_s`)."""
    last: tuple[float, str | None] | None = None

    async def read() -> str | None:
        snapshots = await store.get_many([t.id for t in directory.tenants])
        restricted: list[str] = []
        unverified: list[str] = []
        for tenant_id in sorted(snapshots):
            flags = snapshots[tenant_id].flags()
            if flags.restricted:
                restricted.append(f"{tenant_id} ({'; '.join(flags.restricted[:_REASONS_SHOWN])})")
            if flags.unverified:
                unverified.append(f"{tenant_id} ({'; '.join(flags.unverified[:_REASONS_SHOWN])})")
        parts = []
        if restricted:
            parts.append("restricted: " + ", ".join(restricted))
        if unverified:
            parts.append("unverified: " + ", ".join(unverified))
        return " | ".join(parts) if parts else None

    async def accounts() -> str | None:
        nonlocal last
        now = clock()
        if last is not None and now - last[0] < cache_s:
            return last[1]
        try:
            detail = await read()
        except AdapterError as exc:
            return f"account store unreadable ({type(exc).__name__})"
        last = (now, detail)
        return detail

    return accounts
