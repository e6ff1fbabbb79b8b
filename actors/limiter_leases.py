"""The tenant limiter actors as the ports their users see (issue 13): the shards' LeasePort
(actors/shard_throttle.py) and the Graph clients' GraphBudget (adapters/ports.py), and the
limiter metrics, labelled by tenant ids from the tenant directory only.

Handles are looked up (or the actor created, actors/tenant_limiter.py) once per tenant per
process, off the event loop (a blocking call to Ray's control store), and dropped when a
call fails, so the next one finds the restarted actor.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import structlog
from ray.util import metrics

from actors.tenant_budget import Lease, LimiterStats
from actors.tenant_limiter import (
    LeaseRequest,
    LimiterDepsFactory,
    ThrottleReport,
    UsageReport,
    existing_limiter,
    limiter_actor,
)
from adapters.errors import GraphThrottled, TransientError

log = structlog.get_logger("limiter_leases")

_GRAPH_LEASE = 5  # Graph calls leased at a time (calls are slow: few per second)


class LimiterHandles:
    """The limiter actors' handles of one process, by tenant."""

    def __init__(self, prefix: str, deps_factory: LimiterDepsFactory, timeout_s: float) -> None:
        self._prefix = prefix
        self._deps_factory = deps_factory
        self.timeout_s = timeout_s
        self._handles: dict[str, Any] = {}
        self._reports: set[asyncio.Future[None]] = set()  # kept until done (not collected)

    async def handle(self, tenant_id: str) -> Any:
        """The tenant's limiter (created when it does not exist)."""
        handle = self._handles.get(tenant_id)
        if handle is None:
            handle = await asyncio.to_thread(
                limiter_actor, self._prefix, tenant_id, self._deps_factory
            )
            self._handles[tenant_id] = handle
        return handle

    async def call(self, tenant_id: str, method: str, request: Any) -> Any:
        """`method(request)` on the tenant's limiter, within the timeout; TransientError
        (the handle dropped) when it fails."""
        handle = await self.handle(tenant_id)
        try:
            return await asyncio.wait_for(
                getattr(handle, method).remote(request), timeout=self.timeout_s
            )
        except TimeoutError as exc:
            # Slow or restarting (Ray restarts it and retries the call): the handle is
            # kept, since this process may own the actor, which would end with its last
            # handle here (actors/tenant_limiter.py).
            raise TransientError(f"tenant limiter {method}: timed out") from exc
        except Exception as exc:  # Ray's errors: the actor gone (its creator died)
            self._handles.pop(tenant_id, None)
            raise TransientError(f"tenant limiter {method}: {type(exc).__name__}") from exc

    def tell(self, tenant_id: str, method: str, request: Any) -> None:
        """`method(request)` without waiting for it (a report; lost if the actor is down)."""

        async def send() -> None:
            try:
                await self.call(tenant_id, method, request)
            except TransientError as exc:
                log.warning("limiter_report_lost", tenant_id=tenant_id, error=str(exc))

        report = asyncio.ensure_future(send())
        self._reports.add(report)
        report.add_done_callback(self._reports.discard)


class ActorLeases:
    """LeasePort over the tenant limiters (one per shard actor)."""

    def __init__(self, handles: LimiterHandles) -> None:
        self._handles = handles

    async def lease(self, tenant_id: str, want: int) -> Lease:
        """See LeasePort."""
        lease: Lease = await self._handles.call(
            tenant_id, "lease", LeaseRequest(budget="publish", want=want)
        )
        return lease


class RayLimiterMetrics:
    """ThrottleMetrics (actors/shard_throttle.py) and the Graph budget's throttle count,
    exported through Ray; a tenant outside `known()` is labelled `other`."""

    def __init__(self, known: Callable[[], frozenset[str]]) -> None:
        self._known = known
        self._wait = metrics.Histogram(
            "wa_tenant_limiter_wait_seconds",
            description="How long an entry was held for its tenant's publish tokens, or a "
            "Graph call for its tenant's call budget.",
            boundaries=[0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
            tag_keys=("tenant", "budget"),
        )
        self._granted = metrics.Counter(
            "wa_tenant_limiter_tokens_granted",
            description="Tokens leased from the tenants' limiters (publish: events, graph: calls).",
            tag_keys=("tenant", "budget"),
        )
        self._throttles = metrics.Counter(
            "wa_tenant_limiter_throttles",
            description="Graph API answers throttling a tenant, by Meta code (the budget "
            "closes until Meta's estimated_time_to_regain_access).",
            tag_keys=("tenant", "code"),
        )

    def _tenant(self, tenant_id: str) -> str:
        return tenant_id if tenant_id in self._known() else "other"

    def waited(self, tenant_id: str, seconds: float, budget: str = "publish") -> None:
        """See ThrottleMetrics."""
        self._wait.observe(seconds, tags={"tenant": self._tenant(tenant_id), "budget": budget})

    def granted(self, tenant_id: str, tokens: int, budget: str = "publish") -> None:
        """See ThrottleMetrics."""
        if tokens > 0:
            self._granted.inc(tokens, tags={"tenant": self._tenant(tenant_id), "budget": budget})

    def throttled(self, tenant_id: str, code: int) -> None:
        """A throttling answer for the tenant."""
        self._throttles.inc(tags={"tenant": self._tenant(tenant_id), "code": str(code)})


class ActorGraphBudget:
    """GraphBudget (adapters/ports.py) over the tenant limiters: calls leased a few at a
    time; a call waits for its token at most `max_wait_s`, past that (Meta's closure, the
    limiter away) it is GraphThrottled for its caller to reschedule."""

    def __init__(
        self,
        handles: LimiterHandles,
        metrics: RayLimiterMetrics | None = None,
        max_wait_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._handles = handles
        self._metrics = metrics
        self._max_wait_s = max_wait_s
        self._clock = clock
        self._tokens: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._told: dict[str, tuple[float, float]] = {}  # usage last reported: pct, when

    async def acquire(self, tenant_id: str) -> None:
        """See GraphBudget."""
        if self._tokens.get(tenant_id, 0) > 0:
            self._tokens[tenant_id] -= 1
            return
        started = self._clock()
        lock = self._locks.setdefault(tenant_id, asyncio.Lock())
        async with lock:  # one lease in flight per tenant; the others wait for its tokens
            while self._tokens.get(tenant_id, 0) <= 0:
                try:
                    lease: Lease = await self._handles.call(
                        tenant_id, "lease", LeaseRequest(budget="graph", want=_GRAPH_LEASE)
                    )
                except TransientError as exc:
                    raise GraphThrottled(0, 1.0, f"tenant limiter unreachable: {exc}") from exc
                if lease.granted:
                    self._tokens[tenant_id] = self._tokens.get(tenant_id, 0) + lease.granted
                    if self._metrics is not None:
                        self._metrics.granted(tenant_id, lease.granted, "graph")
                    break
                waited = self._clock() - started
                if waited + lease.retry_after_s > self._max_wait_s:
                    raise GraphThrottled(
                        0, math.ceil(lease.retry_after_s), "tenant Graph budget closed"
                    )
                await asyncio.sleep(max(lease.retry_after_s, 0.001))
            self._tokens[tenant_id] -= 1
        if self._metrics is not None:
            self._metrics.waited(tenant_id, self._clock() - started, "graph")

    def throttled(self, tenant_id: str, code: int, retry_after_s: float) -> None:
        """See GraphBudget."""
        self._tokens.pop(tenant_id, None)  # leased before Meta said stop: not used
        if self._metrics is not None:
            self._metrics.throttled(tenant_id, code)
        self._handles.tell(
            tenant_id, "throttled", ThrottleReport(code=code, retry_after_s=retry_after_s)
        )

    def used(self, tenant_id: str, peak_pct: float, regain_s: float) -> None:
        """See GraphBudget: reported when it matters (a wait, a change of 5 points, 30 s
        since the last), not after every call."""
        now = self._clock()
        last_pct, last_at = self._told.get(tenant_id, (-100.0, -1e9))
        if regain_s <= 0 and abs(peak_pct - last_pct) < 5 and now - last_at < 30:
            return
        self._told[tenant_id] = (peak_pct, now)
        self._handles.tell(tenant_id, "used", UsageReport(peak_pct=peak_pct, regain_s=regain_s))


async def limiter_stats(prefix: str, tenant_id: str, timeout_s: float) -> LimiterStats | None:
    """The tenant's limiter's stats, if it runs and answers within `timeout_s` (None)."""
    handle = await asyncio.to_thread(existing_limiter, prefix, tenant_id)
    if handle is None:
        return None
    try:
        stats: LimiterStats = await asyncio.wait_for(handle.stats.remote(), timeout=timeout_s)
    except Exception:  # noqa: BLE001 -- restarting or slow: the stats say null
        return None
    return stats
