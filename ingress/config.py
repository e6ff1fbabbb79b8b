"""What the composition root hands the ingress: its settings view and its dependencies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pydantic import SecretStr

from adapters.ports import Inbox, RateLimiter
from ingress.client_ip import LOOPBACK, SourcePolicy, parse_networks
from models.tenant import TenantDirectory

ReadyCheck = Callable[[], Awaitable[None]]
"""A readiness probe: returns when the dependency answers, raises otherwise."""

_DEFAULT_POLICY = SourcePolicy(trusted_proxies=parse_networks(LOOPBACK))  # allowlist off


@dataclass(frozen=True, slots=True)
class IngressConfig:
    """The ingress's narrow view of the settings (defaults: the embedded profile)."""

    partitions: int
    max_body_bytes: int = 4 * 1024 * 1024
    append_linger_s: float = 0.001
    append_max_items: int = 512
    max_json_depth: int = 32
    max_json_array: int = 10_000
    body_timeout_s: float = 10.0
    rate_limit_per_ip: int = 5_000
    rate_limit_per_tenant: int = 20_000
    source_policy: SourcePolicy = _DEFAULT_POLICY
    admin_token: SecretStr | None = None


@dataclass(slots=True)
class IngressDeps:
    """Everything the app needs, built per replica by the composition root."""

    config: IngressConfig
    directory: TenantDirectory
    inbox: Inbox
    ready_checks: dict[str, ReadyCheck] = field(default_factory=dict)
    rate_limiter: RateLimiter | None = None  # None: no rate limits (tests of other checks)
    # Other resources the replica holds (e.g. the publisher behind a readiness check).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        """Release every connection the dependencies hold."""
        closers = [self.inbox.close, *self.closers]
        if self.rate_limiter is not None:
            closers.append(self.rate_limiter.close)
        await asyncio.gather(*(close() for close in closers), return_exceptions=True)
