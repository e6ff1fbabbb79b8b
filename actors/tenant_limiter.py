"""One rate-limiter actor per tenant (issue 13 point 4): the owner of its budgets.

`<prefix>-limiter-<tenant>`, created on demand by whoever needs it first (a shard, a
media worker, the account refresher) with `get_if_exists`, zero CPUs, restarted by Ray
without limit and its calls retried. Not detached: it shares the fate of the process
that created it (an actor's fate is its owner's), every one of which the shard pool owns,
so a limiter can never outlive the service that made it (a killed or restarted service
left detached ones running against a gone store, in the way of the next one). When its
creator dies (a shard killed), the other users' next call fails, they drop the handle
(actors/limiter_leases.py) and the next one creates it again: its buckets start empty
(never more than the rate), its Graph closure is read back from the state store. The
shard pool's shutdown also ends them by name (`end_limiters`).

State. The budgets' logic is actors/tenant_budget.py. A restart loses the token buckets
(they start empty: never more than the rate allows) but finds its Graph closure and
the usage last seen again in the state store (LimiterStateStore), written on each
throttle and usage report. Rates are read again every `refresh_s` from the live rules
(the tenant registry) and the tenant's account snapshot (its numbers' throughput tiers),
in a background task: a lease never waits on the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import ray
import structlog
from pydantic import BaseModel, ConfigDict

from actors.tenant_budget import (
    GraphState,
    Lease,
    LimiterStats,
    TenantBudget,
    graph_rate,
    publish_rate,
)
from adapters.ports import LimiterStateStore
from models.account import AccountSnapshot
from models.tenant import TenantRules

log = structlog.get_logger("tenant_limiter")


@dataclass(frozen=True, slots=True)
class LimiterDeps:
    """What a limiter reads its rates from and keeps its state in (built in its process)."""

    rules: Callable[[str], Awaitable[TenantRules]]  # the tenant's live rules
    snapshot: Callable[[str], Awaitable[AccountSnapshot | None]]  # its account snapshot
    state: LimiterStateStore
    burst_s: float = 1.0  # the most a bucket banks, in seconds of its rate
    refresh_s: float = 5.0


LimiterDepsFactory = Callable[[], LimiterDeps]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LeaseRequest(_Model):
    """Up to `want` tokens of one budget."""

    budget: Literal["publish", "graph"]
    want: int


class ThrottleReport(_Model):
    """Meta throttled a Graph call of the tenant."""

    code: int
    retry_after_s: float


class UsageReport(_Model):
    """Meta's usage headers for the tenant."""

    peak_pct: float
    regain_s: float


class TenantLimits:
    """A limiter's logic, testable without Ray: the budget, its rates and its state."""

    def __init__(
        self,
        tenant_id: str,
        deps: LimiterDeps,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.tenant_id = tenant_id
        self._deps = deps
        self._clock = clock
        self._wall = wall
        self._budget: TenantBudget | None = None
        self._refreshed = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._failing: set[str] = set()  # what failed since it last worked: logged once
        self._rules = TenantRules()  # the last rules read (the defaults until then)

    async def budget(self) -> TenantBudget:
        """The budget, made on first use from the stored state and the current rates."""
        if self._budget is None:
            async with self._starting:
                if self._budget is None:
                    state = await self._load()
                    publish, graph = await self._rates()
                    self._budget = TenantBudget(
                        self.tenant_id,
                        publish,
                        graph,
                        self._deps.burst_s,
                        self._clock(),
                        self._wall(),
                        state,
                    )
                    self._refreshed = self._clock()
        self._maybe_refresh(self._budget)
        return self._budget

    async def lease(self, request: LeaseRequest) -> Lease:
        """Up to `want` tokens now (never waits on the tokens)."""
        budget = await self.budget()
        if request.budget == "publish":
            return budget.lease_publish(request.want, self._clock())
        return budget.lease_graph(request.want, self._clock(), self._wall())

    async def throttled(self, report: ThrottleReport) -> None:
        """Close the Graph budget (and persist that)."""
        budget = await self.budget()
        state = budget.throttled(report.code, report.retry_after_s, self._wall())
        log.warning(
            "tenant_graph_throttled",
            tenant_id=self.tenant_id,
            code=report.code,
            until=round(state.blocked_until, 1),
        )
        await self._save(state)

    async def used(self, report: UsageReport) -> None:
        """Slow or close the Graph budget by Meta's usage (persisted)."""
        budget = await self.budget()
        before = budget.state
        state = budget.used(report.peak_pct, report.regain_s, self._clock(), self._wall())
        if (
            state.blocked_until != before.blocked_until
            or abs(state.usage_pct - before.usage_pct) >= 5
        ):
            await self._save(state)

    async def stats(self) -> LimiterStats:
        """The budget's counters and rates."""
        return (await self.budget()).stats(self._wall())

    async def refresh(self) -> None:
        """Read the rates again (rules, account snapshot)."""
        budget = await self.budget()
        publish, graph = await self._rates()
        budget.set_rates(publish, graph, self._clock())
        self._refreshed = self._clock()

    def _maybe_refresh(self, budget: TenantBudget) -> None:
        if self._clock() - self._refreshed < self._deps.refresh_s:
            return
        if self._refreshing is None or self._refreshing.done():
            self._refreshed = self._clock()  # one refresh per period, even if it fails
            self._refreshing = asyncio.ensure_future(self._refresh_quietly())

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # noqa: BLE001 -- the old rates hold until the store answers
            self._failed("refresh", exc)
        else:
            self._failing.discard("refresh")

    def _failed(self, what: str, exc: Exception) -> None:
        """Log a failure once per outage (a refresh every few seconds against a store
        that is down would flood the logs)."""
        if what not in self._failing:
            self._failing.add(what)
            log.warning(
                f"tenant_limiter_{what}_failed", tenant_id=self.tenant_id, error=repr(exc)[:300]
            )

    async def _rates(self) -> tuple[float, float]:
        rules = self._rules
        try:
            rules = self._rules = await self._deps.rules(self.tenant_id)
        except Exception as exc:  # noqa: BLE001 -- the last rules until the registry answers
            self._failed("rules", exc)
        else:
            self._failing.discard("rules")
        snapshot = None
        if rules.publish_rate_per_s is None:
            try:
                snapshot = await self._deps.snapshot(self.tenant_id)
            except Exception as exc:  # noqa: BLE001 -- the default tier until the store answers
                self._failed("snapshot", exc)
            else:
                self._failing.discard("snapshot")
        return publish_rate(rules, snapshot), graph_rate(rules)

    async def _load(self) -> GraphState | None:
        try:
            raw = await self._deps.state.get(self.tenant_id)
        except Exception:  # noqa: BLE001 -- open (Meta will say again) rather than stuck
            log.warning("tenant_limiter_state_unreadable", tenant_id=self.tenant_id)
            return None
        if raw is None:
            return None
        try:
            return GraphState.model_validate_json(raw)
        except ValueError:
            return None

    async def _save(self, state: GraphState) -> None:
        try:
            await self._deps.state.put(self.tenant_id, state.model_dump_json().encode())
        except Exception:  # noqa: BLE001 -- kept in memory; the next report writes again
            log.warning("tenant_limiter_state_unwritten", tenant_id=self.tenant_id)

    async def close(self) -> None:
        """Release the store."""
        if self._refreshing is not None:
            self._refreshing.cancel()
        with contextlib.suppress(Exception):
            await self._deps.state.close()


@ray.remote(  # type: ignore[call-overload]  # Ray's stubs omit actor-only options
    num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=64
)
class TenantLimiter:
    """The Ray shell around TenantLimits: one per tenant, by name."""

    def __init__(self, tenant_id: str, deps_factory: LimiterDepsFactory) -> None:
        self._limits = TenantLimits(tenant_id, deps_factory())

    async def lease(self, request: LeaseRequest) -> Lease:
        """See TenantLimits.lease."""
        return await self._limits.lease(request)

    async def throttled(self, report: ThrottleReport) -> None:
        """See TenantLimits.throttled."""
        await self._limits.throttled(report)

    async def used(self, report: UsageReport) -> None:
        """See TenantLimits.used."""
        await self._limits.used(report)

    async def stats(self) -> LimiterStats:
        """See TenantLimits.stats."""
        return await self._limits.stats()

    async def refresh(self) -> None:
        """Read the rates again now (tests, an admin change)."""
        await self._limits.refresh()


def limiter_name(prefix: str, tenant_id: str) -> str:
    """The tenant's limiter actor's name."""
    return f"{prefix}-limiter-{tenant_id}"


def limiter_actor(prefix: str, tenant_id: str, deps_factory: LimiterDepsFactory) -> Any:
    """The tenant's limiter, created if it does not exist (owned by the caller: see the
    module docstring). A blocking call to Ray's control store: call it off the event loop."""
    return TenantLimiter.options(  # type: ignore[attr-defined]
        name=limiter_name(prefix, tenant_id), get_if_exists=True
    ).remote(tenant_id, deps_factory)


def existing_limiter(prefix: str, tenant_id: str) -> Any | None:
    """The tenant's limiter if it runs (None: never created or ended). Blocking."""
    try:
        return ray.get_actor(limiter_name(prefix, tenant_id))
    except ValueError:
        return None


def end_limiters(prefix: str) -> int:
    """End every limiter of this prefix (the shard pool's shutdown); how many."""
    ended = 0
    for name in ray.util.list_named_actors():
        if isinstance(name, str) and name.startswith(f"{prefix}-limiter-"):
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(name), no_restart=True)
                ended += 1
    return ended
