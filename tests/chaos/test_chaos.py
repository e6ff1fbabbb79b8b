"""Faults under steady load, against the real service on its own Redis (AOF) and RabbitMQ.

One service for the module (`python -m cluster run`, 2 shards, 1 ingress replica); each
scenario runs the harness's open-loop load for a few seconds, injects one fault in the
middle and then checks, from the consumer side (a durable queue bound to '#'): every item
answered 200 was consumed at least once, per conversation the distinct event ids come in
strictly increasing sequence, a repeated delivery repeats an event id with its sequence,
no event carries an id nobody sent, and no conversation is created twice. The Ray
restart runs last: it replaces the service. WA_CHAOS=long (`make chaos`) runs more load
and longer faults; the report goes to var/chaos/ (tests/chaos/report.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.chaos import report
from tests.chaos.redis_node import RedisNode
from tests.chaos.scenario import (
    FaultWindow,
    ScenarioResult,
    current_profile,
    hold_outage,
    run_scenario,
)
from tests.chaos.target import INGRESS_TITLE, SHARD_TITLE, ChaosTarget
from tests.support.rabbitmq_server import RabbitNode
from tests.support.redis_server import server_binary

pytestmark = [pytest.mark.ray, pytest.mark.chaos, pytest.mark.timeout(900)]

PROFILE = current_profile()
SHARDS = 2  # tests/support/service.py starts every service with WA_SHARDS=2
KILL_BUDGET_S = 5.0 + PROFILE.kill_every_s * (PROFILE.kill_rounds - 1)
"""Seconds of load planned for a process fault (a replacement takes ~2-10 s here)."""


@pytest.fixture(scope="module")
def results() -> Iterator[list[ScenarioResult]]:
    """The scenarios' counts; written to var/chaos/ when the module ends."""
    collected: list[ScenarioResult] = []
    yield collected
    if collected:
        report.write(PROFILE, collected)


@pytest.fixture(scope="module")
def redis_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisNode]:
    """A Redis with AOF on a port of its own (never the machine's)."""
    binary = server_binary()
    if binary is None:
        pytest.skip("no redis-server >= 7 (make services)")
    node = RedisNode(binary, tmp_path_factory.mktemp("redis"))
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def target(
    tmp_path_factory: pytest.TempPathFactory, redis_node: RedisNode, rabbitmq_node: RabbitNode
) -> Iterator[ChaosTarget]:
    """The service, ready; drained and stopped when the module ends."""
    chaos = ChaosTarget(tmp_path_factory.mktemp("svc"), redis_node, rabbitmq_node)
    try:
        chaos.start()
        yield chaos
    finally:
        if chaos.service is not None:
            chaos.stop()


def assert_consumer_side(result: ScenarioResult, tail: str) -> None:
    """The suite's promise, whatever the fault."""
    assert result.acknowledged > 0, tail
    assert result.lost == 0, (result.lost_examples, tail)
    assert result.published == result.acknowledged
    assert result.order_violations == 0, result.order_examples
    assert result.renumbered == 0, result.order_examples
    assert result.foreign_events == 0  # every event id is one of an item we sent
    assert result.repeated_created == 0  # no conversation created twice under new ids


def kill_and_wait_replaced(
    target: ChaosTarget, title: bytes, count: int, window: FaultWindow
) -> list[int]:
    """The process fault: kill -9 the `count` processes with `title`, wait until as many
    new ones run (Ray restarts an actor, Serve replaces a replica), `kill_rounds` times,
    `kill_every_s` apart. The fault ends when the last replacements are up. Returns
    every pid killed; records each round's replacement time in the window's facts."""
    killed: list[int] = []
    replaced_in: list[float | None] = []
    window.start = time.perf_counter()
    for n in range(PROFILE.kill_rounds):
        if n:
            time.sleep(PROFILE.kill_every_s)
        victims = target.pids(title)
        target.kill(victims)
        killed += victims
        round_started = time.perf_counter()
        deadline = time.monotonic() + 90
        while len([p for p in target.pids(title) if p not in killed]) < count:
            if time.monotonic() > deadline:
                replaced_in.append(None)
                break
            time.sleep(0.1)  # the runner records its process tree every 0.5 s
        else:
            replaced_in.append(round(time.perf_counter() - round_started, 1))
    window.end = time.perf_counter()
    window.facts.update(killed_pids=killed, replaced_in_s=replaced_in)
    return killed


async def test_rabbitmq_stopped_and_started_loses_nothing(
    target: ChaosTarget, results: list[ScenarioResult]
) -> None:
    """The broker's application stopped for the outage (every connection cut) and started
    again: the ingress keeps acknowledging into the inbox, the shards back off and drain
    the backlog on recovery, and every acknowledged item reaches the consumer in order."""
    node = target.rabbit

    def fault(window: FaultWindow) -> None:
        hold_outage(window, PROFILE.fault_s, node.stop_app, node.start_app)

    result = await run_scenario("rabbitmq stop/start", target, PROFILE, fault, PROFILE.fault_s)
    results.append(result)
    assert_consumer_side(result, target.tail())
    # The inbox took the load while the broker was away.
    assert result.acked_during_fault > 0, result


async def test_redis_killed_and_restarted_loses_nothing_acknowledged(
    target: ChaosTarget, results: list[ScenarioResult]
) -> None:
    """kill -9 of the service's Redis (AOF, fsync every second) and a restart on the same
    files: requests in the outage are refused (503 or a timeout, retried as Meta does),
    never acknowledged without being stored; everything acknowledged before the kill is
    still in the inbox after the restart and is published."""
    node = target.redis

    def fault(window: FaultWindow) -> None:
        hold_outage(window, PROFILE.fault_s, node.kill_hard, node.start)

    result = await run_scenario("redis kill -9/restart", target, PROFILE, fault, PROFILE.fault_s)
    results.append(result)
    assert_consumer_side(result, target.tail())
    assert result.answered_503 + sum(result.other_errors.values()) > 0, result


async def test_shard_actors_killed_are_restarted_and_reread_their_partitions(
    target: ChaosTarget, results: list[ScenarioResult]
) -> None:
    """kill -9 every shard actor (by pid) under load: Ray restarts them, their partitions'
    pending entries are read again, and nothing acknowledged is lost or reordered."""

    def fault(window: FaultWindow) -> None:
        kill_and_wait_replaced(target, SHARD_TITLE, SHARDS, window)

    result = await run_scenario("shard actors kill -9", target, PROFILE, fault, KILL_BUDGET_S)
    results.append(result)
    assert len(result.facts["killed_pids"]) >= SHARDS, target.tail()
    assert None not in result.facts["replaced_in_s"], (result.facts, target.tail())
    assert_consumer_side(result, target.tail())


async def test_ingress_replica_killed_is_replaced_by_serve(
    target: ChaosTarget, results: list[ScenarioResult]
) -> None:
    """kill -9 the ingress replica (by pid) under load: Serve starts a new one, requests
    cut by the kill are retried, and every acknowledged item is published in order."""

    def fault(window: FaultWindow) -> None:
        kill_and_wait_replaced(target, INGRESS_TITLE, 1, window)

    result = await run_scenario("ingress replica kill -9", target, PROFILE, fault, KILL_BUDGET_S)
    results.append(result)
    assert result.facts["killed_pids"], target.tail()
    assert None not in result.facts["replaced_in_s"], (result.facts, target.tail())
    assert_consumer_side(result, target.tail())


RAY_RESTART_BUDGET_S = {"short": 15.0, "long": 40.0}
"""Seconds of load planned for the restart (the service takes 30-70 s to start again
here; what is sent meanwhile is retried)."""


async def test_whole_ray_cluster_restarted_drains_the_inbox(
    target: ChaosTarget, results: list[ScenarioResult]
) -> None:
    """kill -9 of the runner and every process it recorded (GCS, raylet, workers,
    HAProxy), then `python -m cluster run` again on the same data: the inbox in Redis
    survived, the new shards drain it, and nothing acknowledged is lost."""

    def fault(window: FaultWindow) -> None:
        window.start = time.perf_counter()
        window.facts["processes_killed"] = target.kill_everything()
        window.facts["killed_in_s"] = round(time.perf_counter() - window.start, 1)
        window.facts["start_s"] = round(target.start(), 1)
        window.end = time.perf_counter()

    budget = RAY_RESTART_BUDGET_S[PROFILE.name]
    result = await run_scenario("Ray cluster restart", target, PROFILE, fault, budget)
    results.append(result)
    assert result.facts["processes_killed"] > 5, result.facts
    assert_consumer_side(result, target.tail())
