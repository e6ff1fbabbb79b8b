"""What the webhook checks per tenant beyond the service's settings: whether the tenant is
disabled, its source policy, its body cap and its inbound rate limits (rules.webhook and
rules.rate_limits, docs/tenants.md "Webhook endpoint per tenant").

Built from the live directory and rebuilt on the first request after its `version` moved
(the registry's watcher swaps it). Only tenants that are disabled or have one of those
rules get a gate: with none, the snapshot's `gates` is empty and the receiver's hot path
skips every per-tenant check on one falsy test, allocating nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingress.client_ip import SourcePolicy, parse_networks
from models.tenant import Tenant, TenantDirectory

UNKNOWN = ("unknown",)
"""The metric label of a request no configured tenant is known for."""


@dataclass(frozen=True, slots=True)
class TenantGate:
    """One tenant's webhook checks (only for a tenant that is disabled or has rules)."""

    disabled: bool
    # The source policy of the tenant's own path (trusted proxies: the service's).
    policy: SourcePolicy
    # True when that policy can refuse a source the service's admits (its allowlist on
    # while the service's is off): then it is checked on /webhook too, after verification.
    strict: bool
    max_body_bytes: int  # at most the service's WA_MAX_BODY_BYTES
    per_ip: int | None  # None: WA_RATE_LIMIT_PER_IP, counted with every tenant's
    per_tenant: int | None  # None: WA_RATE_LIMIT_PER_TENANT


@dataclass(frozen=True, slots=True)
class GateSet:
    """One version of the directory, as the webhook checks it."""

    version: int
    gates: dict[str, TenantGate] = field(default_factory=dict)
    # Tenant id -> its metric label (a 1-tuple, so the hot path allocates none); an id
    # not in it is labelled UNKNOWN: labels only ever come from the directory.
    labels: dict[str, tuple[str]] = field(default_factory=dict)


class TenantGates:
    """The current GateSet of a live directory."""

    def __init__(self, directory: TenantDirectory, policy: SourcePolicy, max_body_bytes: int):
        self._directory = directory
        self._policy = policy
        self._max_body_bytes = max_body_bytes
        self._current = self._build()

    def current(self) -> GateSet:
        """The gates of the directory's current version (rebuilt if it moved)."""
        current = self._current
        if current.version != self._directory.version:
            current = self._current = self._build()
        return current

    def _build(self) -> GateSet:
        directory = self._directory
        version = directory.version  # first: a swap during the build rebuilds next time
        gates: dict[str, TenantGate] = {}
        labels: dict[str, tuple[str]] = {}
        for tenant in directory.tenants:
            labels[tenant.id] = (tenant.id,)
            rules = tenant.rules
            if tenant.disabled or rules.webhook is not None or rules.rate_limits is not None:
                gates[tenant.id] = self._gate(tenant)
        return GateSet(version, gates, labels)

    def _gate(self, tenant: Tenant) -> TenantGate:
        service = self._policy
        webhook, limits = tenant.rules.webhook, tenant.rules.rate_limits
        allowed = service.allowed
        cap = self._max_body_bytes
        if webhook is not None:
            extra = parse_networks(webhook.extra_cidrs)
            if webhook.allowlist is False:
                allowed = None
            elif webhook.allowlist is True:
                # The service's networks are only loaded when its allowlist is on; off,
                # "on" for the tenant means its extra_cidrs alone.
                allowed = (service.allowed or ()) + extra
            elif service.allowed is not None:
                allowed = service.allowed + extra
            if webhook.max_body_bytes is not None:
                cap = min(cap, webhook.max_body_bytes)
        return TenantGate(
            disabled=tenant.disabled,
            policy=SourcePolicy(service.trusted_proxies, allowed),
            strict=allowed is not None and service.allowed is None,
            max_body_bytes=cap,
            per_ip=limits.per_ip if limits is not None else None,
            per_tenant=limits.per_tenant if limits is not None else None,
        )
