"""A tenant's budgets, as plain logic (the Ray actor around it: actors/tenant_limiter.py).

Publish budget: a token bucket at the tenant's `publish_rate_per_s` (rules), else the sum
of its numbers' Meta throughput tiers (models/tenant.py THROUGHPUT_RATES: 80/s standard,
1,000/s HIGH, 20/s for a number shared with the WhatsApp Business app), 80/s when none is
known yet. The bucket holds at most `burst_s` seconds of the rate and starts empty: a
restarted limiter never grants more than the rate allows since it started.

Graph budget: a bucket at `graph_rate_per_s` (default DEFAULT_GRAPH_RATE_PER_S), slowed to
a quarter while Meta's usage headers show any allowance at SLOW_AT_PCT or more, and
closed until Meta's `estimated_time_to_regain_access` (else a doubling backoff) after a
throttling answer (codes 4, 80007, 130429, 131056 and the others of
adapters/graph_errors.py). What cannot be recomputed after a restart, the closure and the
last usage seen, is `GraphState`, persisted by the actor.

A lease asks for up to `want` tokens and gets what the bucket holds now (never waits):
`granted`, and when that is short, `retry_after_s` until the rest could be had.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from models.account import AccountSnapshot
from models.tenant import DEFAULT_PUBLISH_RATE_PER_S, THROUGHPUT_RATES, TenantRules

DEFAULT_GRAPH_RATE_PER_S = 20.0  # well under Meta's per-app allowance: ~70k calls per hour
SLOW_AT_PCT = 90.0  # X-Business-Use-Case-Usage / X-App-Usage peak that slows the budget
SLOW_FACTOR = 0.25
_MIN_BACKOFF_S = 1.0
_MAX_BACKOFF_S = 3600.0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Lease(_Frozen):
    """A lease's answer: tokens granted now, and when to ask again if short."""

    granted: int
    rate_per_s: float
    retry_after_s: float = 0.0
    blocked_until: float | None = None  # Graph budget closed until (unix time)


class GraphState(_Frozen):
    """The Graph budget's state a restart must not forget (persisted by the actor)."""

    blocked_until: float = 0.0  # unix time; 0: open
    blocked_code: int | None = None
    backoff_s: float = 0.0  # the last closure without Meta's own wait, doubled per throttle
    usage_pct: float = 0.0  # the latest usage peak Meta reported
    usage_at: float = 0.0  # when (unix time)


class LimiterStats(_Frozen):
    """What `GET /admin/tenants/{id}/stats` shows of the tenant's limiter."""

    tenant_id: str
    publish_rate_per_s: float
    graph_rate_per_s: float
    granted: int
    graph_granted: int
    waits: int  # leases that came back short
    throttles: dict[str, int]  # by Meta code
    throttled_until: float | None  # unix time the Graph budget is closed until
    usage_pct: float


def number_rate(throughput_level: str | None, platform_type: str | None) -> float:
    """One number's Meta throughput: HIGH 1,000/s, shared with the Business app 20/s,
    else 80/s (Meta's names vary: anything naming coexistence or the SMB app counts)."""
    for value in (throughput_level, platform_type):
        upper = (value or "").upper()
        if "COEXIST" in upper or "SMB" in upper:
            return THROUGHPUT_RATES["COEXISTENCE"]
    if (throughput_level or "").upper() == "HIGH":
        return THROUGHPUT_RATES["HIGH"]
    return THROUGHPUT_RATES["STANDARD"]


def publish_rate(rules: TenantRules, snapshot: AccountSnapshot | None) -> float:
    """The tenant's publish rate: its rule, else the sum of its numbers' tiers, else 80."""
    if rules.publish_rate_per_s is not None:
        return rules.publish_rate_per_s
    numbers: Iterable[tuple[str | None, str | None]] = (
        (n.throughput_level, n.platform_type)
        for n in (snapshot.phone_numbers.values() if snapshot is not None else ())
    )
    rates = [number_rate(level, platform) for level, platform in numbers]
    return sum(rates) if rates else DEFAULT_PUBLISH_RATE_PER_S


def graph_rate(rules: TenantRules) -> float:
    """The tenant's Graph API calls per second before Meta's usage slows it."""
    return rules.graph_rate_per_s or DEFAULT_GRAPH_RATE_PER_S


class TokenBucket:
    """`rate` tokens a second, at most `rate * burst_s` (and 1) banked; starts empty."""

    def __init__(self, rate: float, burst_s: float, now: float) -> None:
        self.rate = rate
        self._burst_s = burst_s
        self._tokens = 0.0
        self._at = now

    @property
    def capacity(self) -> float:
        """The most tokens the bucket banks."""
        return max(1.0, self.rate * self._burst_s)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._at)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._at = now

    def set_rate(self, rate: float, now: float) -> None:
        """A new rate from now on (tokens banked at the old one kept, within capacity)."""
        self._refill(now)
        self.rate = rate
        self._tokens = min(self._tokens, self.capacity)

    def take(self, want: int, now: float) -> tuple[int, float]:
        """Up to `want` whole tokens now, and the seconds until the rest would be there
        (0 when all were granted; never more than the bucket can bank)."""
        self._refill(now)
        granted = max(0, min(want, math.floor(self._tokens)))
        self._tokens -= granted
        short = min(want - granted, math.floor(self.capacity))
        if short <= 0:
            return granted, 0.0
        return granted, max(0.0, (short - self._tokens) / self.rate)


class TenantBudget:
    """Both budgets of one tenant, the counters its stats show, and the Graph state."""

    def __init__(
        self,
        tenant_id: str,
        publish_rate_per_s: float,
        graph_rate_per_s: float,
        burst_s: float,
        now: float,
        wall: float,
        state: GraphState | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self._publish = TokenBucket(publish_rate_per_s, burst_s, now)
        self._graph_rate = graph_rate_per_s
        self._graph = TokenBucket(graph_rate_per_s, burst_s, now)
        self.state = state or GraphState()
        self._apply_usage(now, wall)
        self.granted = 0
        self.graph_granted = 0
        self.waits = 0
        self.throttles: dict[str, int] = {}

    @property
    def publish_rate_per_s(self) -> float:
        """The publish bucket's rate."""
        return self._publish.rate

    def set_rates(self, publish_rate_per_s: float, graph_rate_per_s: float, now: float) -> None:
        """Rates re-read from the rules and the account snapshot."""
        if publish_rate_per_s != self._publish.rate:
            self._publish.set_rate(publish_rate_per_s, now)
        if graph_rate_per_s != self._graph_rate:
            self._graph_rate = graph_rate_per_s
            self._graph.set_rate(self._slowed(graph_rate_per_s), now)

    def lease_publish(self, want: int, now: float) -> Lease:
        """Up to `want` publish tokens."""
        granted, retry = self._publish.take(max(0, want), now)
        self.granted += granted
        if granted < want:
            self.waits += 1
        return Lease(granted=granted, rate_per_s=self._publish.rate, retry_after_s=retry)

    def lease_graph(self, want: int, now: float, wall: float) -> Lease:
        """Up to `want` Graph calls; none while Meta's throttling closes the budget."""
        blocked = self.state.blocked_until
        if blocked > wall:
            self.waits += 1
            return Lease(
                granted=0,
                rate_per_s=self._graph.rate,
                retry_after_s=blocked - wall,
                blocked_until=blocked,
            )
        granted, retry = self._graph.take(max(0, want), now)
        self.graph_granted += granted
        if granted < want:
            self.waits += 1
        return Lease(granted=granted, rate_per_s=self._graph.rate, retry_after_s=retry)

    def throttled(self, code: int, retry_after_s: float, wall: float) -> GraphState:
        """Meta throttled a call: closed for its wait, else a backoff doubled per throttle
        in a row (from 1 s up to an hour). Returns the state to persist."""
        self.throttles[str(code)] = self.throttles.get(str(code), 0) + 1
        backoff = self.state.backoff_s
        if retry_after_s > 0:
            wait = retry_after_s
        else:
            backoff = min(_MAX_BACKOFF_S, max(_MIN_BACKOFF_S, backoff * 2))
            wait = backoff
        until = max(self.state.blocked_until, wall + wait)
        self.state = self.state.model_copy(
            update={"blocked_until": until, "blocked_code": code, "backoff_s": backoff}
        )
        return self.state

    def used(self, peak_pct: float, regain_s: float, now: float, wall: float) -> GraphState:
        """Meta's usage headers: slow down at SLOW_AT_PCT, close while regain_s > 0."""
        update: dict[str, float | int | None] = {"usage_pct": peak_pct, "usage_at": wall}
        if regain_s > 0:
            update["blocked_until"] = max(self.state.blocked_until, wall + regain_s)
        elif peak_pct < SLOW_AT_PCT:
            update["backoff_s"] = 0.0  # a calm answer ends the run of throttles
        self.state = self.state.model_copy(update=update)
        self._apply_usage(now, wall)
        return self.state

    def _slowed(self, rate: float) -> float:
        return rate * SLOW_FACTOR if self.state.usage_pct >= SLOW_AT_PCT else rate

    def _apply_usage(self, now: float, wall: float) -> None:
        self._graph.set_rate(self._slowed(self._graph_rate), now)

    def stats(self, wall: float) -> LimiterStats:
        """The counters and the current rates."""
        blocked = self.state.blocked_until
        return LimiterStats(
            tenant_id=self.tenant_id,
            publish_rate_per_s=self._publish.rate,
            graph_rate_per_s=self._graph.rate,
            granted=self.granted,
            graph_granted=self.graph_granted,
            waits=self.waits,
            throttles=dict(self.throttles),
            throttled_until=blocked if blocked > wall else None,
            usage_pct=self.state.usage_pct,
        )
