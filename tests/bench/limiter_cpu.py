"""Bench (not a test): what the per-tenant rate limiters cost per event (issue 13).

    .venv/bin/python -m tests.bench.limiter_cpu [--events 4000] [--calls 2000]

1. The shard side, in-process on the real Redis and RabbitMQ: the same drain as
   tests/bench/shard_cpu.py (batch 256), without a budget and with one whose leases are
   answered in-process at once (1,000/s, WA_LIMITER_LEASE_S 0.2: leases of 200 tokens);
   alternated, medians. The difference is the shard's accounting per event (admit, settle,
   lease bookkeeping; no holds: the tenant is under its rate).
2. The actor side, on a local Ray cluster: lease calls to a real TenantLimiter, one after
   another; the caller's CPU and the limiter process's CPU (psutil) per call. At 1,000
   events/s and leases of 200 tokens a busy shard makes 5 calls/s per tenant: the cost
   per event is a call's / 200.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
import uuid

import psutil
import ray
import redis

from actors.shard import ConversationShard
from actors.shard_throttle import PublishBudget, ShardThrottle
from actors.tenant_budget import Lease
from actors.tenant_limiter import LeaseRequest, end_limiters, limiter_actor
from tests.bench.shard_cpu import _items
from tests.conftest import _delete_exchange
from tests.integration.test_tenant_limiter import deps
from tests.support.configs import rabbit_publisher, redis_inbox, shard_config


class InstantLeases:
    """LeasePort answering at once with everything asked (the tenant under its rate)."""

    async def lease(self, tenant_id: str, want: int) -> Lease:
        return Lease(granted=want, rate_per_s=1000.0)


async def _one(events: int, budget: bool, url: str) -> float:
    """tests/bench/shard_cpu.py's drain (batch 256), with or without a budget: CPU us/event."""
    run = uuid.uuid4().hex[:8]
    prefix, exchange = f"wabench:{run}:", f"wabench.{run}"
    inbox = redis_inbox(prefix, url=url)
    publisher = rabbit_publisher(exchange)
    items = _items(events, 400, run)
    for start in range(0, len(items), 500):
        chunk = items[start : start + 500]
        await inbox.append_deliveries(
            [(f"d:{run}:{start + i}", [it]) for i, it in enumerate(chunk)]
        )
    shard = ConversationShard(
        shard_config(0, batch_size=256, linger_ms=0),
        inbox,
        publisher,
        budget=PublishBudget(InstantLeases(), lease_s=0.2, max_held=20_000) if budget else None,
    )
    await shard.run_once()  # connections and the first read out of the measure
    cpu = time.process_time()
    while await inbox.backlog(0):
        await shard.run_once()
    cpu = time.process_time() - cpu
    await publisher.close()
    await inbox.close()
    await _delete_exchange(exchange)
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    client.close()
    return cpu / events * 1e6


def _drain(events: int, budget: bool, url: str) -> float:
    return asyncio.run(_one(events, budget, url))


def accounting(rounds: int = 2000) -> None:
    """The throttle's own bookkeeping per event, alone: admit per entry, settle per batch
    of 256 (a tenant under its rate: no holds)."""

    async def run() -> float:
        throttle: ShardThrottle[str] = ShardThrottle(
            InstantLeases(), str, lambda e: ("acme", e[-2:]), lease_s=0.2, max_held=20_000
        )
        entries = [f"e{n}" for n in range(256)]
        tenant = throttle._tenant("acme")  # a balance that never runs out (bench only)
        tenant.balance = 1e12
        cpu = time.process_time()
        for _ in range(rounds):
            tenant.leased_at = time.monotonic()  # as a lease per batch would
            for entry in entries:
                throttle.admit(entry)
            throttle.settle("acme", 10)
        return (time.process_time() - cpu) / (rounds * 256) * 1e6

    print(f"throttle accounting: {asyncio.run(run()):.2f} us CPU per event")


def shard_side(events: int, repeat: int, url: str) -> None:
    without, with_budget = [], []
    for _ in range(repeat):
        without.append(_drain(events, False, url))
        with_budget.append(_drain(events, True, url))
    a, b = statistics.median(without), statistics.median(with_budget)
    print(
        f"shard CPU per event: {a:.1f} us without a budget, {b:.1f} us with one "
        f"(+{b - a:.1f} us, median of {repeat})"
    )


def actor_side(calls: int, tmp: str) -> None:
    ray.init(num_cpus=1, include_dashboard=False, namespace=f"wabench-{uuid.uuid4().hex[:6]}")
    prefix = f"b{uuid.uuid4().hex[:6]}"
    try:
        actor = limiter_actor(prefix, "bench", functools.partial(deps, f"{tmp}/s.db", 1000.0))
        request = LeaseRequest(budget="publish", want=200)
        ray.get(actor.lease.remote(request))
        pid = ray.get(actor.__ray_call__.remote(lambda self: __import__("os").getpid()))
        limiter = psutil.Process(pid)
        own = psutil.Process()
        before_own, before_actor = own.cpu_times(), limiter.cpu_times()
        wall = time.perf_counter()
        for _ in range(calls):
            ray.get(actor.lease.remote(request))
        wall = time.perf_counter() - wall
        after_own, after_actor = own.cpu_times(), limiter.cpu_times()
        caller = (after_own.user + after_own.system - before_own.user - before_own.system) / calls
        callee = (
            after_actor.user + after_actor.system - before_actor.user - before_actor.system
        ) / calls
        per_call = (caller + callee) * 1e6
        print(
            f"lease call: {wall / calls * 1e3:.2f} ms wall, caller {caller * 1e6:.0f} us + "
            f"limiter {callee * 1e6:.0f} us CPU; per event at leases of 200: "
            f"{per_call / 200:.1f} us; at 1,000 events/s: {per_call * 5 / 1e4:.2f}% of a core"
        )
    finally:
        end_limiters(prefix)
        ray.shutdown()


def main() -> None:
    """Print both figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    accounting()
    shard_side(args.events, args.repeat, args.url)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        actor_side(args.calls, tmp)


if __name__ == "__main__":
    main()
