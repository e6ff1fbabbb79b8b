"""A tenant's budgets as plain logic (actors/tenant_budget.py, actors/tenant_limiter.py's
TenantLimits): the token bucket never grants more than its rate allows, the rate comes
from the rules or the numbers' Meta throughput tiers, the Graph budget slows at high usage
and closes on throttling until Meta's wait, and what a restart must not forget is stored."""

from __future__ import annotations

from datetime import UTC, datetime

from actors.tenant_budget import (
    SLOW_FACTOR,
    GraphState,
    TenantBudget,
    TokenBucket,
    number_rate,
    publish_rate,
)
from actors.tenant_limiter import LeaseRequest, LimiterDeps, TenantLimits, ThrottleReport
from models.account import AccountSnapshot, PhoneNumberState
from models.tenant import TenantRules


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MemoryState:
    """LimiterStateStore in memory (one shared by the 'restarted' limiters of a test)."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    async def get(self, tenant_id: str) -> bytes | None:
        return self.values.get(tenant_id)

    async def put(self, tenant_id: str, state: bytes) -> None:
        self.values[tenant_id] = state

    async def close(self) -> None:
        pass


def test_a_bucket_starts_empty_and_never_grants_more_than_its_rate() -> None:
    bucket = TokenBucket(50.0, 1.0, now=0.0)
    assert bucket.take(10, 0.0)[0] == 0
    granted = 0
    for step in range(1, 301):  # 3 s in 10 ms steps, asking for far more than the rate
        granted += bucket.take(100, step / 100)[0]
    assert granted <= 50 * 3
    assert granted >= 50 * 3 - 1


def test_a_short_lease_says_when_the_rest_will_be_there() -> None:
    bucket = TokenBucket(10.0, 1.0, now=0.0)
    granted, retry = bucket.take(5, 0.2)
    assert granted == 2
    assert abs(retry - 0.3) < 1e-9
    granted, retry = bucket.take(1000, 0.2)
    assert granted == 0
    assert retry <= 1.0, "never asks to wait for more than the bucket can bank"


def test_the_publish_rate_is_the_rule_else_the_sum_of_the_numbers_tiers() -> None:
    assert publish_rate(TenantRules(publish_rate_per_s=50), None) == 50
    assert publish_rate(TenantRules(), None) == 80

    def number(pid: str, level: str | None, platform: str | None = None) -> PhoneNumberState:
        return PhoneNumberState(phone_number_id=pid, throughput_level=level, platform_type=platform)

    snapshot = AccountSnapshot(
        tenant_id="t",
        phone_numbers={
            "1": number("1", "HIGH"),
            "2": number("2", "STANDARD"),
            "3": number("3", None, "CLOUD_API_COEXISTENCE"),
        },
        fetched_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert publish_rate(TenantRules(), snapshot) == 1000 + 80 + 20
    assert number_rate("NOT_APPLICABLE", None) == 80


def test_high_usage_slows_the_graph_budget_and_a_calm_answer_restores_it() -> None:
    budget = TenantBudget("t", 80, 20, 1.0, now=0.0, wall=0.0)
    assert budget.stats(0.0).graph_rate_per_s == 20
    budget.used(95.0, 0.0, now=0.0, wall=0.0)
    assert budget.stats(0.0).graph_rate_per_s == 20 * SLOW_FACTOR
    budget.used(40.0, 0.0, now=1.0, wall=1.0)
    assert budget.stats(1.0).graph_rate_per_s == 20


def test_each_throttling_code_closes_the_graph_budget_for_metas_wait() -> None:
    for code in (4, 80007, 130429, 131056):
        budget = TenantBudget("t", 80, 20, 1.0, now=0.0, wall=100.0)
        state = budget.throttled(code, 300.0, wall=100.0)
        assert state.blocked_until == 400.0
        lease = budget.lease_graph(5, now=10.0, wall=110.0)
        assert lease.granted == 0
        assert lease.retry_after_s == 290.0
        assert budget.stats(110.0).throttles == {str(code): 1}
        assert budget.lease_graph(5, now=400.0, wall=401.0).granted == 5


def test_without_metas_wait_the_backoff_doubles_per_throttle() -> None:
    budget = TenantBudget("t", 80, 20, 1.0, now=0.0, wall=0.0)
    waits = []
    for _ in range(4):
        state = budget.throttled(4, 0.0, wall=0.0)
        waits.append(state.backoff_s)
    assert waits == [1.0, 2.0, 4.0, 8.0]
    budget.used(10.0, 0.0, now=0.0, wall=0.0)
    assert budget.state.backoff_s == 0.0, "a calm usage report ends the run"


def test_the_usage_header_wait_closes_the_budget_too() -> None:
    budget = TenantBudget("t", 80, 20, 1.0, now=0.0, wall=50.0)
    budget.used(100.0, 120.0, now=0.0, wall=50.0)
    assert budget.lease_graph(1, now=1.0, wall=51.0).blocked_until == 170.0


async def test_a_restarted_limiter_finds_its_closure_again_and_starts_empty() -> None:
    clock, wall, store = Clock(), Clock(), MemoryState()

    async def rules(tenant_id: str) -> TenantRules:
        return TenantRules(publish_rate_per_s=50)

    async def snapshot(tenant_id: str) -> AccountSnapshot | None:
        return None

    deps = LimiterDeps(rules=rules, snapshot=snapshot, state=store)
    first = TenantLimits("t", deps, clock, wall)
    assert (await first.lease(LeaseRequest(budget="publish", want=10))).granted == 0
    clock.now += 1
    wall.now += 1
    assert (await first.lease(LeaseRequest(budget="publish", want=10))).granted == 10
    await first.throttled(ThrottleReport(code=130429, retry_after_s=600.0))
    assert GraphState.model_validate_json(store.values["t"]).blocked_code == 130429

    again = TenantLimits("t", deps, clock, wall)
    lease = await again.lease(LeaseRequest(budget="graph", want=1))
    assert lease.granted == 0
    assert lease.blocked_until is not None
    assert lease.blocked_until > wall.now + 590
    assert (await again.lease(LeaseRequest(budget="publish", want=10))).granted == 0
