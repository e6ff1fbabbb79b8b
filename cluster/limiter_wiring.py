"""The tenant rate limiters' wiring (issue 13, docs/tenants.md "Rate limits and isolation"):
their settings, what each limiter actor reads its rates from and keeps its state in (the
inbox's Redis or SQLite file), the shards' publish budget, the Graph clients' budget, and
the admin API's look-up of a limiter's stats.

Clients are built inside the process that uses them (the limiter actor, the shard actor,
the media worker, the shard pool's replica), never pickled.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from actors.limiter_leases import (
    ActorGraphBudget,
    ActorLeases,
    LimiterHandles,
    RayLimiterMetrics,
    limiter_stats,
)
from actors.shard_throttle import PublishBudget
from actors.tenant_limiter import LimiterDeps
from adapters.ports import AccountStore, LimiterStateStore, TenantRegistry
from adapters.redis_accounts import RedisAccountStore
from adapters.redis_limiter_state import RedisLimiterState
from adapters.sqlite_accounts import SqliteAccountStore
from adapters.sqlite_limiter_state import SqliteLimiterState
from cluster.backends import InboxConfig, RedisInboxConfig
from cluster.settings import Settings
from cluster.tenant_wiring import build_tenant_registry
from models.account import AccountSnapshot
from models.tenant import Tenant, TenantRules

LIMITER_PREFIX = "wa"  # the shard pool's actor name prefix (actors/pool.py)


@dataclass(frozen=True, slots=True)
class LimiterConfig:
    """How the tenant limiters run."""

    enabled: bool
    lease_s: float
    max_held: int
    burst_s: float
    refresh_s: float
    timeout_s: float
    inbox: InboxConfig
    seed_tenants: tuple[Tenant, ...]
    prefix: str = LIMITER_PREFIX

    @classmethod
    def from_settings(
        cls, settings: Settings, inbox: InboxConfig, tenants: Sequence[Tenant]
    ) -> LimiterConfig:
        """Derive it (the settings were checked)."""
        return cls(
            enabled=settings.limiter_enabled,
            lease_s=settings.limiter_lease_s,
            max_held=settings.limiter_max_held,
            burst_s=settings.limiter_burst_s,
            refresh_s=settings.limiter_refresh_s,
            timeout_s=settings.limiter_timeout_s,
            inbox=inbox,
            seed_tenants=tuple(tenants),
        )


def _state_store(inbox: InboxConfig) -> LimiterStateStore:
    if isinstance(inbox, RedisInboxConfig):
        return RedisLimiterState(inbox.url, inbox.prefix)
    return SqliteLimiterState(inbox.path)


def _account_store(inbox: InboxConfig) -> AccountStore:
    if isinstance(inbox, RedisInboxConfig):
        return RedisAccountStore(inbox.url, inbox.prefix)
    return SqliteAccountStore(inbox.path)


def limiter_deps(config: LimiterConfig) -> LimiterDeps:
    """A limiter actor's sources and store (called inside the actor): the rules from the
    tenant registry (the tenants file's entry until the registry holds the tenant), the
    account snapshot from the account store."""
    registry: TenantRegistry = build_tenant_registry(config.inbox)
    accounts = _account_store(config.inbox)
    seeds = {t.id: t for t in config.seed_tenants}

    async def rules(tenant_id: str) -> TenantRules:
        tenant = await registry.get(tenant_id) or seeds.get(tenant_id)
        return tenant.rules if tenant is not None else TenantRules()

    async def snapshot(tenant_id: str) -> AccountSnapshot | None:
        return await accounts.get(tenant_id)

    return LimiterDeps(
        rules=rules,
        snapshot=snapshot,
        state=_state_store(config.inbox),
        burst_s=config.burst_s,
        refresh_s=config.refresh_s,
    )


def _handles(config: LimiterConfig) -> LimiterHandles:
    return LimiterHandles(config.prefix, functools.partial(limiter_deps, config), config.timeout_s)


def publish_budget(
    config: LimiterConfig, known: Callable[[], frozenset[str]]
) -> PublishBudget | None:
    """A shard actor's publish budget (None: limiters off); `known()`: the tenant ids
    metrics may carry (the live directory's)."""
    if not config.enabled:
        return None
    return PublishBudget(
        ActorLeases(_handles(config)),
        lease_s=config.lease_s,
        max_held=config.max_held,
        metrics=RayLimiterMetrics(known),
    )


def graph_budget(
    config: LimiterConfig | None, known: Callable[[], frozenset[str]]
) -> ActorGraphBudget | None:
    """A Graph client's call budget (media workers, the account refresher)."""
    if config is None or not config.enabled:
        return None
    return ActorGraphBudget(_handles(config), RayLimiterMetrics(known))


def stats_lookup(
    config: LimiterConfig,
) -> Callable[[str], Awaitable[dict[str, Any] | None]] | None:
    """What `GET /admin/tenants/{id}/stats` asks for its `limiter` section (None: off)."""
    if not config.enabled:
        return None
    prefix, timeout_s = config.prefix, min(config.timeout_s, 1.0)

    async def lookup(tenant_id: str) -> dict[str, Any] | None:
        stats = await limiter_stats(prefix, tenant_id, timeout_s)
        return stats.model_dump(mode="json") if stats is not None else None

    return lookup
