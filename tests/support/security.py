"""The security suite's stack: ingress app + inbox + shards + outbox, on either backend.

`embedded`: SQLite inbox and the in-process rate limiter; `redis`: the real Redis inbox and
rate limiter under a per-test key prefix. The outbox is the embedded publisher in both.
The source allowlist is on: TEST-NET-3 and 2001:db8::/32 are allowed, loopback and
10.0.0.0/8 are trusted proxies, so a test chooses its TCP peer to be Meta, a proxy or a
stranger.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from actors.shard import ConversationShard
from adapters.local_rate_limit import LocalRateLimiter
from adapters.outbox import OutboxPublisher, read_outbox
from adapters.ports import Inbox, RateLimiter
from ingress.app import IngressDeps, create_app
from ingress.client_ip import SourcePolicy, parse_networks
from models.tenant import Tenant, TenantDirectory
from tests.support.app import SECRET, VERIFY
from tests.support.clock import FixedClock
from tests.support.configs import (
    ingress_config,
    redis_inbox,
    redis_rate_limiter,
    shard_config,
    sqlite_inbox,
)

PARTITIONS = 2
META_IP = "203.0.113.7"  # inside the allowlist: plays Meta
ADMIN_TOKEN = "admin-token-0123456789abcdef"
PER_IP = 5
PER_TENANT = 8
WINDOW_S = 60  # on a FixedClock: a test never straddles two windows
OTHER_SECRET = "other-tenant-secret"
OTHER_PHONE = "222000222"


def security_tenants() -> list[Tenant]:
    """`acme` (default, owns every unclaimed number) and `other` (owns OTHER_PHONE)."""
    return [
        Tenant(
            id="acme",
            app_secrets=(SecretStr(SECRET), SecretStr("acme-previous-secret")),
            verify_token=SecretStr(VERIFY),
            default=True,
        ),
        Tenant(
            id="other",
            app_secrets=(SecretStr(OTHER_SECRET),),
            verify_token=SecretStr("other-verify-token"),
            phone_number_ids=frozenset({OTHER_PHONE}),
        ),
    ]


@dataclass
class Stack:
    """A running in-process stack and what it has stored and published."""

    app: Any
    inbox: Inbox
    outbox_path: Path
    publisher: OutboxPublisher
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    def client(self, peer: str = META_IP) -> httpx.AsyncClient:
        """An httpx client whose TCP peer address, as the app sees it, is `peer`."""
        if peer not in self.clients:
            transport = httpx.ASGITransport(app=self.app, client=(peer, 40000))
            self.clients[peer] = httpx.AsyncClient(transport=transport, base_url="http://t")
        return self.clients[peer]

    async def backlog(self) -> int:
        """Inbox entries not committed yet, over all partitions."""
        return sum([await self.inbox.backlog(p) for p in range(PARTITIONS)])

    async def drain(self) -> None:
        """Run the shards until the inbox is empty (everything published and committed).

        block_ms=1, not 0: for Redis, XREADGROUP BLOCK 0 means wait forever.
        """
        shards = [
            ConversationShard(shard_config(partition=p, block_ms=1), self.inbox, self.publisher)
            for p in range(PARTITIONS)
        ]
        for _ in range(50):
            if sum([await s.run_once() for s in shards]) == 0 and await self.backlog() == 0:
                return
        raise AssertionError("the shards did not drain the inbox")

    def events(self) -> list[dict[str, Any]]:
        """Every published event, in publish order."""
        return [row["event"] for row in read_outbox(self.outbox_path, limit=100_000)]

    def normal_events(self) -> int:
        """Published events outside the `replay` quarantine."""
        return sum(1 for e in self.events() if e["category"] != "replay")


@asynccontextmanager
async def security_stack(
    tmp_path: Path,
    backend: str,
    redis_prefix: str | None = None,
    admin: bool = True,
    body_timeout_s: float = 0.5,
    limits: tuple[int, int] = (PER_IP, PER_TENANT),
) -> AsyncIterator[Stack]:
    """The stack on `embedded` or `redis`, closed afterwards."""
    inbox: Inbox
    limiter: RateLimiter
    clock = FixedClock()  # every stack at the same instant: replicas share a window
    if backend == "redis":
        assert redis_prefix is not None
        inbox = redis_inbox(redis_prefix)
        limiter = redis_rate_limiter(redis_prefix, window_s=WINDOW_S, clock=clock)
    else:
        inbox = sqlite_inbox(tmp_path / "inbox.db")
        limiter = LocalRateLimiter(WINDOW_S, clock=clock)
    config = ingress_config(
        partitions=PARTITIONS,
        max_body_bytes=64 * 1024,
        max_json_depth=32,
        max_json_array=1_000,
        body_timeout_s=body_timeout_s,
        rate_limit_per_ip=limits[0],
        rate_limit_per_tenant=limits[1],
        source_policy=SourcePolicy(
            trusted_proxies=parse_networks(["127.0.0.0/8", "::1/128", "10.0.0.0/8"]),
            allowed=parse_networks(["203.0.113.0/24", "2001:db8::/32"]),
        ),
        admin_token=SecretStr(ADMIN_TOKEN) if admin else None,
    )
    deps = IngressDeps(
        config=config,
        directory=TenantDirectory(security_tenants()),
        inbox=inbox,
        rate_limiter=limiter,
    )
    outbox_path = tmp_path / "outbox.db"
    stack = Stack(create_app(deps), inbox, outbox_path, OutboxPublisher(outbox_path))
    try:
        yield stack
    finally:
        for client in stack.clients.values():
            await client.aclose()
        await inbox.close()
        await limiter.close()
        await stack.publisher.close()
