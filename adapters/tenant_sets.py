"""The tenant registry's rules, shared by its Redis and SQLite adapters.

Both adapters read the whole set, decide here, and write in one atomic step (a WATCH on
the version in Redis, one write transaction in SQLite), so the rules live once: a create
refused for a registered id, an update refused for an unknown one, the resulting set
checked whole as a TenantDirectory (TenantConflict: nothing written), the per-tenant
`pii_key` made when a tenant has none and kept across updates (phone hashes stay stable
for the tenant's consumers), and seeding that never brings back a known or deleted id.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping, Sequence

import structlog
from pydantic import SecretStr

from adapters.errors import TenantExists, TenantNotFound
from models.tenant import Tenant, TenantConflict, TenantDirectory

log = structlog.get_logger("tenant_registry")


def with_pii_key(tenant: Tenant, existing: Tenant | None) -> Tenant:
    """The tenant with a pii_key: its own, else the stored one's, else a new random one."""
    if tenant.pii_key is not None:
        return tenant
    if existing is not None and existing.pii_key is not None:
        key = existing.pii_key
    else:
        key = SecretStr(secrets.token_urlsafe(32))
    return tenant.model_copy(update={"pii_key": key})


def checked_put(current: Mapping[str, Tenant], tenant: Tenant, *, create: bool) -> Tenant:
    """The tenant as it is to be stored after `put` on the `current` set (TenantExists,
    TenantNotFound, TenantConflict as the port says)."""
    existing = current.get(tenant.id)
    if create and existing is not None:
        raise TenantExists(f"tenant {tenant.id!r} is already registered")
    if not create and existing is None:
        raise TenantNotFound(f"no tenant {tenant.id!r}")
    stored = with_pii_key(tenant, existing)
    others = [t for t in current.values() if t.id != tenant.id]
    TenantDirectory([*others, stored])  # TenantConflict: the caller writes nothing
    return stored


def checked_delete(current: Mapping[str, Tenant], tenant_id: str) -> None:
    """TenantNotFound unless the tenant is registered (removing one never conflicts)."""
    if tenant_id not in current:
        raise TenantNotFound(f"no tenant {tenant_id!r}")


def seeded(
    current: Mapping[str, Tenant], deleted: Collection[str], tenants: Sequence[Tenant]
) -> list[Tenant]:
    """The tenants to add when seeding: never held (registered or deleted), each checked
    against the set with the ones before it (a conflicting one is logged and skipped)."""
    kept = list(current.values())
    added: list[Tenant] = []
    for tenant in tenants:
        if tenant.id in current or tenant.id in deleted or any(a.id == tenant.id for a in added):
            continue
        stored = with_pii_key(tenant, None)
        try:
            TenantDirectory([*kept, *added, stored])
        except TenantConflict as exc:
            log.warning("tenant_seed_skipped", tenant_id=tenant.id, reason=str(exc))
            continue
        added.append(stored)
    return added
