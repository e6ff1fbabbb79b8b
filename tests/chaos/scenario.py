"""One chaos scenario: steady load from the harness, one fault in the middle, the counts.

The load is loadtest's open-loop harness (signed Meta-shaped deliveries, Meta-style
retries of every non-200, a ledger of what was acknowledged and what was consumed). The
fault runs beside it in a thread, so the load keeps its schedule while the broker, the
store or Ray is down. Times are the harness's clock (time.perf_counter).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from loadtest.harness import RunConfig, RunState, run_load
from loadtest.sender import RetryPolicy
from loadtest.tenants import SimTenant
from loadtest.traffic import TrafficGenerator
from tests.chaos.checks import StreamCheck, check_stream
from tests.chaos.consumer import DurableQueueSource
from tests.chaos.target import ChaosTarget


@dataclass(frozen=True, slots=True)
class ChaosProfile:
    """How much load and how long a fault: `short` inside `make test`, `long` for `make chaos`."""

    name: str
    rate: float  # POSTs per second
    batch: int  # items per POST
    conversations: int
    lead_s: float  # load before the fault starts
    fault_s: float  # how long an outage lasts (broker, store)
    tail_s: float  # load after the fault's planned end
    kill_rounds: int  # kill -9 rounds of the process faults
    kill_every_s: float


PROFILES = {
    "short": ChaosProfile("short", 50, 2, 200, 3, 3, 3, 1, 0),
    "long": ChaosProfile("long", 200, 1, 2000, 10, 15, 20, 3, 5),
}


def current_profile() -> ChaosProfile:
    """WA_CHAOS=long for `make chaos`; short otherwise."""
    return PROFILES[os.environ.get("WA_CHAOS", "short")]


@dataclass(slots=True)
class FaultWindow:
    """When the fault began and when it was over (the service's dependency back)."""

    start: float = 0.0
    end: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)


Fault = Callable[[FaultWindow], None]
"""Runs in a thread: injects the fault, sets start and end, records facts."""


@dataclass(slots=True)
class ScenarioResult:
    """The counts of one scenario (docs/reliability.md, "Chaos suite")."""

    scenario: str
    profile: str
    requests_sent: int
    requests_acked: int
    acknowledged: int  # items (tracking keys) answered 200 at least once
    published: int  # acknowledged items consumed at least once
    published_events: int  # item events consumed, duplicates included
    lost: int
    duplicates: int  # deliveries of an event id already consumed (state events included)
    order_violations: int
    renumbered: int
    foreign_events: int
    repeated_created: int
    answered_503: int
    other_errors: dict[str, int]
    failed_after_retries: int
    acked_during_fault: int
    backlog_at_fault_end: int  # acknowledged by the fault's end, published after it
    fault_s: float
    recovery_s: float | None  # fault's end -> last of those published
    longest_ack_gap_s: float  # the longest time no new item was answered 200
    facts: dict[str, Any]
    lost_examples: list[str]
    order_examples: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def _recovery(state: RunState, window: FaultWindow) -> tuple[int, int, float | None]:
    """(acked during the fault, backlog at its end, seconds to drain that backlog)."""
    ledger = state.ledger
    during = sum(1 for at in ledger.first_ack.values() if window.start <= at <= window.end)
    before_end = [key for key, at in ledger.first_ack.items() if at <= window.end]
    backlog = [
        key for key in before_end if ledger.first_published.get(key, window.end + 1) > window.end
    ]
    if any(key not in ledger.first_published for key in before_end):
        return during, len(backlog), None
    last = max((ledger.first_published[key] for key in before_end), default=window.end)
    return during, len(backlog), round(max(0.0, last - window.end), 2)


def _longest_gap(times: list[float]) -> float:
    """The longest interval between consecutive times (0 for fewer than two)."""
    ordered = sorted(times)
    return round(max((b - a for a, b in itertools.pairwise(ordered)), default=0.0), 2)


def _result(
    name: str,
    profile: ChaosProfile,
    state: RunState,
    window: FaultWindow,
    stream: StreamCheck,
) -> ScenarioResult:
    summary = state.ledger.summary()
    during, backlog, recovery = _recovery(state, window)
    errors = dict(state.outcomes)
    return ScenarioResult(
        scenario=name,
        profile=profile.name,
        requests_sent=state.scheduled,
        requests_acked=state.acked,
        acknowledged=summary.keys_acked,
        published=sum(1 for key in state.ledger.first_ack if key in state.ledger.published),
        published_events=summary.published_events,
        lost=summary.lost,
        duplicates=stream.duplicates,
        order_violations=stream.order_violations,
        renumbered=stream.renumbered,
        foreign_events=summary.foreign_events,
        repeated_created=summary.repeated_created,
        answered_503=errors.pop("503", 0),
        other_errors=errors,
        failed_after_retries=state.failed,
        acked_during_fault=during,
        backlog_at_fault_end=backlog,
        fault_s=round(window.end - window.start, 2),
        recovery_s=recovery,
        longest_ack_gap_s=_longest_gap(list(state.ledger.first_ack.values())),
        facts=window.facts,
        lost_examples=summary.lost_examples,
        order_examples=stream.examples,
    )


@dataclass(frozen=True, slots=True)
class LoadTarget:
    """What the load needs of a deployment: its webhook URL, tenants and broker exchange."""

    url: str
    tenants: list[SimTenant]
    rabbit_url: str
    exchange: str


async def run_scenario(
    name: str, target: ChaosTarget, profile: ChaosProfile, fault: Fault, fault_budget_s: float
) -> ScenarioResult:
    """Load for lead + fault_budget + tail seconds, the fault `lead_s` in; wait for the
    backlog to drain (the harness's grace period), then count."""
    load = LoadTarget(target.url, target.tenants, target.rabbit.url, target.exchange)
    return await run_against(name, load, profile, fault, fault_budget_s)


async def run_against(
    name: str, target: LoadTarget, profile: ChaosProfile, fault: Fault, fault_budget_s: float
) -> ScenarioResult:
    """run_scenario against any deployment (tests/chaos/test_multinode.py's cluster)."""
    generator = TrafficGenerator(
        target.tenants, profile.conversations, batch=profile.batch, status_share=0.4
    )
    source = DurableQueueSource(target.rabbit_url, target.exchange)
    cfg = RunConfig(
        url=target.url,
        rate=profile.rate,
        duration_s=profile.lead_s + fault_budget_s + profile.tail_s,
        connections=32,
        timeout_s=10.0,
        # Why long: an item is lost only if it never comes; a Ray restart keeps the
        # consumer waiting for as long as the service takes to start.
        grace_s=120.0,
        max_drain_s=600.0,
        # Meta retries for days; a few tens of seconds cover the longest outage here.
        retry=RetryPolicy(max_attempts=12, base_s=0.5, max_s=5.0),
        progress=False,
    )
    window = FaultWindow()

    async def inject() -> None:
        await asyncio.sleep(profile.lead_s)
        await asyncio.to_thread(fault, window)

    faulting = asyncio.create_task(inject())
    state, _measured = await run_load(cfg, generator, source, io.StringIO())
    await faulting
    return _result(name, profile, state, window, check_stream(source.events))


def hold_outage(
    window: FaultWindow, seconds: float, down: Callable[[], None], up: Callable[[], None]
) -> None:
    """down(), wait `seconds`, up(): the window spans from down() to up() returning."""
    window.start = time.perf_counter()
    down()
    window.facts["down_s"] = round(time.perf_counter() - window.start, 2)
    time.sleep(seconds)
    restoring = time.perf_counter()
    up()
    window.end = time.perf_counter()
    window.facts["up_s"] = round(window.end - restoring, 2)
