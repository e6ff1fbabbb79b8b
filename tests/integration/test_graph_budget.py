"""The Graph client's budget hook (adapters/graph.py `budget`, the GraphBudget port of
issue 13) against the Graph simulator: asked before every call, retries included; told of
Meta's throttling code and wait and of its usage headers; a closed budget stops the call
before it is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.errors import GraphThrottled
from adapters.graph import GraphClient
from loadtest.graph_errors import APP_RATE_LIMIT, THROUGHPUT_LIMIT
from loadtest.graph_sim import GraphSim, GraphSimConfig
from tests.integration.test_graph_client import ACME, MEDIA_ID, TENANTS, make_client
from tests.support.graph_sim_server import SimClock, serve_graph_sim


class RecordingBudget:
    """GraphBudget that records what it is asked and told; closed when `closed_for` > 0."""

    def __init__(self) -> None:
        self.acquired: list[str] = []
        self.throttles: list[tuple[str, int, float]] = []
        self.usage: list[tuple[str, float, float]] = []
        self.closed_for = 0.0

    async def acquire(self, tenant_id: str) -> None:
        self.acquired.append(tenant_id)
        if self.closed_for > 0:
            raise GraphThrottled(0, self.closed_for, "tenant Graph budget closed")

    def throttled(self, tenant_id: str, code: int, retry_after_s: float) -> None:
        self.throttles.append((tenant_id, code, retry_after_s))

    def used(self, tenant_id: str, peak_pct: float, regain_s: float) -> None:
        self.usage.append((tenant_id, peak_pct, regain_s))


@pytest.fixture
def sim() -> GraphSim:
    sim = GraphSim(GraphSimConfig(TENANTS, url_ttl_s=300), clock=SimClock(1_750_000_000.0))
    sim.add_media(MEDIA_ID, b"x" * 1000, "image/jpeg", owner=ACME.id)
    return sim


async def test_every_call_and_retry_asks_the_budget_and_throttles_are_told(
    sim: GraphSim, tmp_path: Path
) -> None:
    budget = RecordingBudget()
    async with serve_graph_sim(sim) as port:
        client: GraphClient = make_client(port, budget=budget)
        try:
            sim.fail(MEDIA_ID, 1, THROUGHPUT_LIMIT)  # retried in the client: two calls
            info = await client.media_info(ACME.id, MEDIA_ID)
            assert budget.acquired == [ACME.id, ACME.id]
            assert [(t, c) for t, c, _ in budget.throttles] == [(ACME.id, 130429)]
            await client.download(ACME.id, info, tmp_path / "file", 10_000)
            assert len(budget.acquired) == 3, "the download asks too"

            sim.fail(MEDIA_ID, 1, APP_RATE_LIMIT, regain_minutes=3)
            with pytest.raises(GraphThrottled):
                await client.media_info(ACME.id, MEDIA_ID)
            assert budget.throttles[-1] == (ACME.id, 4, 180.0)
            assert budget.usage, "the usage headers are told"
            assert budget.usage[-1][2] == 180.0
        finally:
            await client.close()


async def test_a_closed_budget_stops_the_call_before_it_is_sent(sim: GraphSim) -> None:
    budget = RecordingBudget()
    budget.closed_for = 600.0
    async with serve_graph_sim(sim) as port:
        client = make_client(port, budget=budget)
        try:
            with pytest.raises(GraphThrottled) as caught:
                await client.media_info(ACME.id, MEDIA_ID)
        finally:
            await client.close()
    assert caught.value.retry_after_s == 600.0
    assert budget.acquired == [ACME.id], "longer than the client may wait: not retried"
    assert budget.usage == [], "nothing was sent, so Meta reported nothing"
