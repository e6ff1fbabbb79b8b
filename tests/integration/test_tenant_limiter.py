"""The tenant limiter as a real Ray actor (issue 13 point 4): one named actor per tenant
created on demand, ending with the process that created it and made again by the next
user (never outliving the service); leases in batches within the rate; the Graph budget closed on
each throttling code (4, 80007, 130429, 131056) until Meta's wait; after
`ray.kill(actor, no_restart=False)` Ray restarts it and the closure is back from the state
store while the token bucket starts empty; the Graph budget port raises GraphThrottled
while closed; `end_limiters` ends them.

Run under `flock /tmp/wa-ray.lock` (a local Ray cluster of its own)."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from actors.limiter_leases import ActorGraphBudget, ActorLeases, LimiterHandles, limiter_stats
from actors.tenant_budget import Lease
from actors.tenant_limiter import (
    LeaseRequest,
    LimiterDeps,
    ThrottleReport,
    end_limiters,
    existing_limiter,
    limiter_actor,
    limiter_name,
)
from adapters.errors import GraphThrottled
from adapters.sqlite_limiter_state import SqliteLimiterState
from models.account import AccountSnapshot
from models.tenant import TenantRules

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


def deps(path: str, rate: float) -> LimiterDeps:
    """A limiter's deps (run in the actor): fixed rules, no snapshot, SQLite state."""

    async def rules(tenant_id: str) -> TenantRules:
        return TenantRules(publish_rate_per_s=rate, graph_rate_per_s=10)

    async def snapshot(tenant_id: str) -> AccountSnapshot | None:
        return None

    return LimiterDeps(rules=rules, snapshot=snapshot, state=SqliteLimiterState(Path(path)))


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster in a namespace of the test's own; its limiters' prefix."""
    ray.init(
        num_cpus=1,
        include_dashboard=False,
        namespace=f"watest-limiter-{uuid.uuid4().hex[:8]}",
        log_to_driver=False,
    )
    prefix = f"t{uuid.uuid4().hex[:6]}"
    try:
        yield prefix
    finally:
        end_limiters(prefix)
        ray.shutdown()


def test_leases_come_in_batches_within_the_rate(cluster: str, tmp_path: Path) -> None:
    factory = functools.partial(deps, str(tmp_path / "state.db"), 50.0)
    actor = limiter_actor(cluster, "leases", factory)
    first: Lease = ray.get(actor.lease.remote(LeaseRequest(budget="publish", want=10)))
    assert first.granted == 0, "a new limiter starts empty"
    assert first.rate_per_s == 50
    started = time.monotonic()
    granted = 0
    while time.monotonic() - started < 1.0:
        lease: Lease = ray.get(actor.lease.remote(LeaseRequest(budget="publish", want=10)))
        granted += lease.granted
        time.sleep(max(lease.retry_after_s, 0.01))
    elapsed = time.monotonic() - started
    assert 0 < granted <= 50 * elapsed + 10
    assert limiter_actor(cluster, "leases", factory) is not None  # get_if_exists: the same
    assert len([n for n in ray.util.list_named_actors() if n == limiter_name(cluster, "leases")])


@pytest.mark.parametrize("code", [4, 80007, 130429, 131056])
def test_each_throttling_code_closes_the_graph_budget_until_metas_wait(
    cluster: str, tmp_path: Path, code: int
) -> None:
    factory = functools.partial(deps, str(tmp_path / "state.db"), 80.0)
    actor = limiter_actor(cluster, f"throttled-{code}", factory)
    ray.get(actor.throttled.remote(ThrottleReport(code=code, retry_after_s=600.0)))
    lease: Lease = ray.get(actor.lease.remote(LeaseRequest(budget="graph", want=5)))
    assert lease.granted == 0
    assert lease.blocked_until is not None
    assert lease.retry_after_s > 590
    stats = ray.get(actor.stats.remote())
    assert stats.throttles == {str(code): 1}
    assert stats.throttled_until == lease.blocked_until


def test_a_killed_limiter_is_restarted_with_its_closure_and_an_empty_bucket(
    cluster: str, tmp_path: Path
) -> None:
    factory = functools.partial(deps, str(tmp_path / "state.db"), 50.0)
    actor = limiter_actor(cluster, "restarted", factory)
    ray.get(actor.lease.remote(LeaseRequest(budget="publish", want=1)))
    time.sleep(1.2)  # the bucket fills: a second of its rate at most
    full: Lease = ray.get(actor.lease.remote(LeaseRequest(budget="publish", want=100)))
    assert full.granted == 50
    ray.get(actor.throttled.remote(ThrottleReport(code=80007, retry_after_s=900.0)))
    before = ray.get(actor.stats.remote())

    ray.kill(actor, no_restart=False)
    # Calls are retried (max_task_retries) until the restarted process answers; its
    # counters start at zero, which tells it from the old one.
    for _ in range(600):
        if not ray.get(actor.stats.remote(), timeout=60).throttles:
            break
        time.sleep(0.1)
    after_kill: Lease = ray.get(actor.lease.remote(LeaseRequest(budget="publish", want=100)))
    assert after_kill.granted < 50, "the restarted bucket starts empty"
    graph: Lease = ray.get(actor.lease.remote(LeaseRequest(budget="graph", want=1)))
    assert graph.granted == 0
    assert graph.blocked_until == before.throttled_until, "the closure came back from the store"
    assert ray.get(actor.stats.remote()).throttles == {}, "counters are per process"


@ray.remote(num_cpus=0)
class Creator:
    """A stand-in for a shard actor: creates a tenant's limiter and uses it."""

    def make(self, prefix: str, tenant_id: str, path: str) -> int:
        # Kept, as LimiterHandles keeps it: a limiter ends with its owner's last handle.
        self.actor = limiter_actor(prefix, tenant_id, functools.partial(deps, path, 50.0))
        lease: Lease = ray.get(self.actor.lease.remote(LeaseRequest(budget="publish", want=1)))
        return lease.granted


def test_a_limiter_ends_with_its_creator_and_the_next_user_makes_it_again(
    cluster: str, tmp_path: Path
) -> None:
    """Not detached: when the shard that made it dies, so does the limiter (a killed
    service leaves none behind), and another shard's handles make a new one on their
    next call."""
    path = str(tmp_path / "state.db")
    creator = Creator.remote()  # type: ignore[attr-defined]
    assert ray.get(creator.make.remote(cluster, "owned", path)) == 0
    assert existing_limiter(cluster, "owned") is not None
    ray.kill(creator, no_restart=True)
    deadline = time.monotonic() + 60
    while existing_limiter(cluster, "owned") is not None:
        assert time.monotonic() < deadline, "the limiter outlived its creator"
        time.sleep(0.2)

    handles = LimiterHandles(cluster, functools.partial(deps, path, 50.0), timeout_s=30.0)
    assert asyncio.run(ActorLeases(handles).lease("owned", 1)).rate_per_s == 50
    assert existing_limiter(cluster, "owned") is not None  # made again, owned by `handles`
    del handles


def test_the_ports_over_the_actor(cluster: str, tmp_path: Path) -> None:
    """ActorLeases and ActorGraphBudget create the limiter on first use; the Graph budget
    raises GraphThrottled while Meta's closure lasts; the stats look-up finds it."""
    factory = functools.partial(deps, str(tmp_path / "state.db"), 200.0)

    async def scenario() -> None:
        handles = LimiterHandles(cluster, factory, timeout_s=10.0)
        leases = ActorLeases(handles)
        await leases.lease("ports", 5)
        await asyncio.sleep(0.2)
        assert (await leases.lease("ports", 5)).granted == 5
        budget = ActorGraphBudget(handles, max_wait_s=2.0)
        await budget.acquire("ports")  # 10/s: waits for its first token
        budget.throttled("ports", 131056, 120.0)
        await asyncio.sleep(0.5)  # the report is sent without waiting
        with pytest.raises(GraphThrottled) as caught:
            await budget.acquire("ports")
        assert caught.value.retry_after_s > 100
        stats = await limiter_stats(cluster, "ports", 5.0)
        assert stats is not None
        assert stats.throttles == {"131056": 1}
        assert stats.publish_rate_per_s == 200
        assert await limiter_stats(cluster, "nobody", 5.0) is None

    asyncio.run(scenario())
    assert existing_limiter(cluster, "ports") is not None
    assert end_limiters(cluster) >= 1
    assert existing_limiter(cluster, "ports") is None
