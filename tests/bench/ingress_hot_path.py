"""Bench (not a test): the ack path in-process (httpx ASGI transport, 32 concurrent requests).

    .venv/bin/python -m tests.bench.ingress_hot_path [--requests 3000]

Compares, on the real Redis: append only (no limiter, no allowlist) against the full
security path (allowlist + rate limit round trip + dedup in the append script), and the
same on the embedded SQLite inbox. Prints requests/s and p50/p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis

from adapters.ports import Inbox, RateLimiter
from ingress.app import IngressDeps, create_app
from ingress.client_ip import SourcePolicy, parse_networks
from models.tenant import TenantDirectory
from tests.support.app import signed, tenant
from tests.support.bodies import envelope, messages_value, text_message
from tests.support.configs import (
    ingress_config,
    local_rate_limiter,
    redis_inbox,
    redis_rate_limiter,
    sqlite_inbox,
)

URL = "redis://127.0.0.1:6379/0"


async def run(name: str, inbox: Inbox, limiter: RateLimiter | None, secure: bool, n: int) -> None:
    policy = SourcePolicy(
        parse_networks(["127.0.0.0/8"]), parse_networks(["203.0.113.0/24"]) if secure else None
    )
    config = ingress_config(partitions=4, source_policy=policy, rate_limit_per_ip=10**9)
    app = create_app(IngressDeps(config, TenantDirectory([tenant()]), inbox, rate_limiter=limiter))
    bodies = [
        signed(envelope(("messages", messages_value([text_message(f"w{n}.{i}", "1650555")]))))
        for i in range(n)
    ]
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 1))
    latencies: list[float] = []
    queue = list(reversed(bodies))
    async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:

        async def worker() -> None:
            while queue:
                raw, headers = queue.pop()
                t0 = time.perf_counter()
                reply = await client.post("/webhook", content=raw, headers=headers)
                latencies.append(time.perf_counter() - t0)
                assert reply.status_code == 200, reply.text

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(32)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(f"{name:42s} {n / elapsed:7.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
    await inbox.close()
    if limiter is not None:
        await limiter.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    n = parser.parse_args().requests
    prefix = f"wabench:{uuid.uuid4().hex[:8]}:"
    await run("redis: append only", redis_inbox(prefix + "a:", url=URL), None, False, n)
    await run(
        "redis: allowlist + rate limit + dedup",
        redis_inbox(prefix + "b:", url=URL),
        redis_rate_limiter(prefix + "b:", url=URL),
        True,
        n,
    )
    with tempfile.TemporaryDirectory() as tmp:
        await run("sqlite: append only", sqlite_inbox(Path(tmp) / "a.db"), None, False, n)
        await run(
            "sqlite: allowlist + rate limit + dedup",
            sqlite_inbox(Path(tmp) / "b.db"),
            local_rate_limiter(),
            True,
            n,
        )
    client = redis.Redis.from_url(URL)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


if __name__ == "__main__":
    asyncio.run(main())
