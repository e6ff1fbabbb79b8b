"""What the composition root hands the ingress: its settings view and its dependencies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from adapters.ports import (
    AccountStore,
    Archive,
    Inbox,
    MediaFiles,
    RateLimiter,
    TenantRegistry,
)
from ingress.client_ip import SourcePolicy
from models.tenant import TenantDirectory

ReadyCheck = Callable[[], Awaitable[str | None]]
"""A readiness probe: None when the dependency answers, a detail when it answers but needs
attention (reported, still ready), raises when it does not answer."""


@dataclass(frozen=True, slots=True)
class IngressConfig:
    """The ingress's narrow view of the settings (built from Settings by cluster/wiring.py)."""

    partitions: int
    max_body_bytes: int
    append_linger_s: float
    append_max_items: int
    # A request's wait for its rate-limit count and its append together; past it, 503.
    ack_timeout_s: float
    max_json_depth: int
    max_json_array: int
    body_timeout_s: float
    rate_limit_per_ip: int
    rate_limit_per_tenant: int
    source_policy: SourcePolicy
    admin_token: SecretStr | None
    # Amplification and memory bounds (reasons in docs/security.md).
    max_json_nodes: int
    max_items_per_delivery: int
    max_item_bytes: int
    max_stored_ratio: int
    max_unverified_bytes: int


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
    # The raw-delivery archive, for POST /admin/replay (None: no replay route).
    archive: Archive | None = None
    # The folder media store's serving side, for GET /media/{key} (None: media goes to
    # S3, whose presigned URLs name the store itself, and every /media path is a 404).
    media_files: MediaFiles | None = None
    # Business accounts, templates and per-tenant counters, for GET /admin/tenants/{id}/
    # account|templates|stats (ingress/account_admin.py; None: no such routes).
    accounts: AccountStore | None = None
    # The tenant's rate-limiter stats for GET /admin/tenants/{id}/stats (a callable from
    # the composition root: the ingress does not know the actors; None: no such section).
    limiter_stats: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None
    # The tenant registry, for the /admin/tenants writes (ingress/tenant_admin.py; None:
    # only the list of the directory), and the reload of this replica's directory that
    # follows a write (the watcher's refresh, cluster/tenant_wiring.py).
    tenants: TenantRegistry | None = None
    reload_tenants: Callable[[], Awaitable[object]] | None = None
    # Loops the replica runs on its event loop while it serves (the tenant watcher):
    # started with the app (ASGI lifespan), cancelled when it stops.
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)

    async def close(self) -> None:
        """Release every connection the dependencies hold."""
        closers = [self.inbox.close, *self.closers]
        if self.tenants is not None:
            closers.append(self.tenants.close)
        if self.archive is not None:
            closers.append(self.archive.close)
        if self.rate_limiter is not None:
            closers.append(self.rate_limiter.close)
        if self.accounts is not None:
            closers.append(self.accounts.close)
        await asyncio.gather(*(close() for close in closers), return_exceptions=True)
