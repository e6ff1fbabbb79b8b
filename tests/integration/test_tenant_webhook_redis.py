"""A tenant's own inbound rate limits on the real Redis limiter, shared by two ingress
replicas (issue 13): its per-tenant limit counts across both, its per-address counter is
its own key, and the counter every other tenant shares is left alone."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from ingress.app import IngressDeps, create_app
from models.tenant import RateLimitRule, Tenant, TenantDirectory, TenantRules
from tests.conftest import REDIS_URL
from tests.support.app import signed
from tests.support.bodies import envelope, messages_value, text_message
from tests.support.clock import FixedClock
from tests.support.configs import ingress_config, redis_rate_limiter, sqlite_inbox

pytestmark = pytest.mark.redis

WINDOW_S = 60
TIGHT = Tenant(
    id="tight",
    app_secrets=(SecretStr("tight-secret"),),
    phone_number_ids=frozenset({"200200200"}),
    rules=TenantRules(rate_limits=RateLimitRule(per_ip=100, per_tenant=3)),
)


def delivery(n: int) -> dict[str, object]:
    message = text_message(f"wamid.R{n}", "1650555")
    return envelope(("messages", messages_value([message], phone_number_id="200200200")))


async def test_a_tenants_limits_are_shared_by_replicas_under_keys_of_its_own(
    redis_prefix: str, tmp_path: Path
) -> None:
    """Four requests of `tight`, alternating between two replicas and two addresses: three
    pass, the fourth is 429 (its limit, not the service's 20,000); Redis holds its
    `tenant:tight` and `ipt:tight:<address>` counters and no shared `ip:<address>` one."""
    clock = FixedClock(WINDOW_S * 28_333_333 + 1.0)
    window = 28_333_333
    limiter = redis_rate_limiter(redis_prefix, window_s=WINDOW_S, clock=clock, linger_s=0.0)
    config = ingress_config(partitions=2)
    replicas = []
    for n in range(2):
        inbox = sqlite_inbox(tmp_path / f"inbox{n}.db")
        directory = TenantDirectory([TIGHT])
        replicas.append(
            (create_app(IngressDeps(config, directory, inbox, rate_limiter=limiter)), inbox)
        )
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(f"203.0.113.{n + 1}", 1)),
            base_url="http://t",
        )
        for n, (app, _) in enumerate(replicas)
    ]
    store = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        statuses = []
        for n in range(4):
            raw, headers = signed(delivery(n), "tight-secret")
            reply = await clients[n % 2].post("/webhook/tight", content=raw, headers=headers)
            statuses.append(reply.status_code)
        assert statuses == [200, 200, 200, 429]
        assert int(await store.get(f"{redis_prefix}rl:tenant:tight:{window}") or 0) == 4
        for address in ("203.0.113.1", "203.0.113.2"):
            assert int(await store.get(f"{redis_prefix}rl:ipt:tight:{address}:{window}") or 0) == 2
            assert await store.get(f"{redis_prefix}rl:ip:{address}:{window}") is None
    finally:
        for client in clients:
            await client.aclose()
        for _, inbox in replicas:
            await inbox.close()
        await limiter.close()
        await store.aclose()
