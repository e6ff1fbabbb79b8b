"""The service on a Ray cluster of three nodes on this machine, under the harness's load.

A head (Serve's controller and its one HAProxy, `WA_PROXY_LOCATION=HeadOnly`: the nodes
share the machine's ports) and two worker nodes, each started by `ray start` with its own
resources and labels (cluster/local_cluster.py); the service joins with `WA_RAY_ADDRESS`.
Its four shard actors ask for the workers' custom resource and label and are spread over
them (`WA_PLACEMENT=spread`); the ingress autoscales between 1 and 3 replicas, at most
one per node. Checked from the consumer side as in tests/chaos/test_chaos.py: every
acknowledged item published, per conversation the distinct event ids in increasing
sequence. The node kill runs last: the cluster has two nodes after it.

Redis and RabbitMQ are the machine's (a key prefix and an exchange of the module's own):
nothing here stops them.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from cluster.local_cluster import CLIENT_ENV, LocalCluster
from loadtest.harness import RunConfig, RunState, run_load
from loadtest.sender import RetryPolicy
from loadtest.tenants import SimTenant, generate_tenants, write_tenants_file
from loadtest.traffic import TrafficGenerator
from tests.chaos.checks import check_stream
from tests.chaos.consumer import DurableQueueSource
from tests.chaos.scenario import ChaosProfile, FaultWindow, LoadTarget, run_against
from tests.chaos.target import INGRESS_TITLE, SHARD_TITLE
from tests.conftest import RABBITMQ_URL, REDIS_URL, _delete_exchange
from tests.support.ray_cluster import pids_by_node, probe, running_cluster
from tests.support.service import Service, start_service

pytestmark = [pytest.mark.ray, pytest.mark.chaos, pytest.mark.timeout(900)]

SHARDS = 4
WORKERS = ("worker1", "worker2")
MAX_REPLICAS = 3
REPORT = Path(__file__).resolve().parents[2] / "var" / "chaos" / "multinode.json"
KILL = ChaosProfile("multinode", 50, 2, 200, 3, 0, 4, 1, 0)
"""50 POSTs/s of 2 items, 200 conversations, the kill 3 s in, 4 s of load after recovery."""


@dataclass
class Deployment:
    """The service on the cluster: its process, URL, tenants, exchange, Redis prefix."""

    service: Service
    cluster: LocalCluster
    tenants: list[SimTenant]
    exchange: str
    prefix: str
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def load(self) -> LoadTarget:
        """What the harness posts to and consumes from."""
        return LoadTarget(f"{self.service.url}/webhook", self.tenants, RABBITMQ_URL, self.exchange)


@pytest.fixture(scope="module")
def facts() -> Iterator[dict[str, Any]]:
    """What the scenarios saw (replica counts, placements, recovery); written to
    var/chaos/multinode.json when the module ends (the figures in docs/scaling.md)."""
    collected: dict[str, Any] = {}
    yield collected
    if collected:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps(collected, indent=2, default=str))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Head + two workers (each `wa_shard: 8`, `wa-role=worker`), ended by their sessions."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture(scope="module")
def deployment(
    cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """`python -m cluster run` joined to the cluster, ready; drained when the module ends."""
    data_dir = tmp_path_factory.mktemp("svc")
    tenants = generate_tenants(2, seed=42)
    write_tenants_file(tenants, data_dir / "tenants.json")
    exchange = f"multinode.{uuid.uuid4().hex[:8]}"
    prefix = f"watest:{uuid.uuid4().hex[:8]}:"
    env = {
        **CLIENT_ENV,
        "WA_RAY_ADDRESS": cluster.address,
        "WA_PROXY_LOCATION": "HeadOnly",
        "WA_SHARDS": str(SHARDS),
        "WA_PLACEMENT": "spread",
        "WA_SHARD_RESOURCES": "wa_shard=1",
        "WA_SHARD_LABELS": "wa-role=worker",
        # The shards are the pool's actors: on the head, a worker's death takes only the
        # shards that ran there (docs/scaling.md "Placement").
        "WA_POOL_LABELS": "wa-role=head",
        "WA_INGRESS_REPLICAS": "1",
        "WA_INGRESS_MAX_REPLICAS": str(MAX_REPLICAS),
        "WA_INGRESS_MAX_PER_NODE": "1",
        # Why so low a target and such short delays: the burst below must add replicas
        # within seconds and the trickle after it remove them (docs/scaling.md has the
        # production values and the measurement behind them).
        "WA_INGRESS_TARGET_ONGOING": "0.5",
        "WA_INGRESS_UPSCALE_DELAY_S": "1",
        "WA_INGRESS_DOWNSCALE_DELAY_S": "2",
        "WA_INGRESS_LOOK_BACK_S": "3",
        "WA_TENANTS_FILE": str(data_dir / "tenants.json"),
        "WA_REDIS_URL": REDIS_URL,
        "WA_REDIS_PREFIX": prefix,
        "WA_RABBITMQ_URL": RABBITMQ_URL,
        "WA_RABBITMQ_EXCHANGE": exchange,
        "WA_LOG_LEVEL": "WARNING",
        "WA_MEDIA_ENABLED": "false",  # as in tests/chaos/target.py: no Graph API here
    }
    service = start_service(data_dir, env)
    try:
        service.wait_ready()
        yield Deployment(service, cluster, tenants, exchange, prefix)
        assert service.terminate(timeout_s=90) == 0, service.tail()
    finally:
        service.cleanup()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
        asyncio.run(_delete_exchange(exchange))


def _shard_nodes(deployment: Deployment) -> dict[int, str | None]:
    """Partition -> the node its shard actor runs on (from the GCS, by pid)."""
    actors = probe(deployment.cluster)["actors"]
    return {
        int(a["name"].rsplit("-", 1)[1]): a["node"] for a in actors if a["class"] == "ShardActor"
    }


def test_shards_are_placed_on_the_worker_nodes_and_spread(
    deployment: Deployment, facts: dict[str, Any]
) -> None:
    """WA_SHARD_RESOURCES / WA_SHARD_LABELS keep every shard off the head; SPREAD puts
    some on each worker rather than all where the shard pool was created."""
    nodes = _shard_nodes(deployment)
    facts["placement"] = nodes
    assert sorted(nodes) == list(range(SHARDS)), nodes
    assert set(nodes.values()) == set(WORKERS), nodes


class ReplicaWatch:
    """Counts the ingress replica processes across the cluster's nodes every 0.25 s."""

    def __init__(self, cluster: LocalCluster) -> None:
        self._cluster = cluster
        self.counts: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            count = sum(len(p) for p in pids_by_node(self._cluster, INGRESS_TITLE).values())
            self.counts.append((time.perf_counter(), count))

    def __enter__(self) -> ReplicaWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _run_config(url: str, rate: float, duration_s: float) -> RunConfig:
    return RunConfig(
        url=url,
        rate=rate,
        duration_s=duration_s,
        connections=32,
        timeout_s=10.0,
        grace_s=60.0,
        retry=RetryPolicy(max_attempts=12, base_s=0.5, max_s=5.0),
        progress=False,
    )


async def test_ingress_scales_up_and_down_under_traffic_losing_nothing(
    deployment: Deployment, facts: dict[str, Any]
) -> None:
    """A burst beside a steady trickle: Serve's autoscaler adds ingress replicas (one per
    node at most) while the burst lasts and removes them while the trickle goes on; the
    requests cut by a replica's removal are retried, and every acknowledged item of both
    streams is published in order."""
    load = deployment.load
    steady_gen = TrafficGenerator(load.tenants, 100, batch=1, status_share=0.4, seed=11)
    burst_gen = TrafficGenerator(load.tenants, 200, batch=2, status_share=0.4, seed=12)
    steady_source = DurableQueueSource(load.rabbit_url, load.exchange)
    burst_source = DurableQueueSource(load.rabbit_url, load.exchange)
    with ReplicaWatch(deployment.cluster) as watch:
        started = time.perf_counter()
        (steady, _), (burst, _) = await asyncio.gather(
            run_load(_run_config(load.url, 8, 70), steady_gen, steady_source, io.StringIO()),
            run_load(_run_config(load.url, 150, 20), burst_gen, burst_source, io.StringIO()),
        )
    steady_end = started + 70
    changes = [
        (round(at - started, 1), n)
        for i, (at, n) in enumerate(watch.counts)
        if i == 0 or n != watch.counts[i - 1][1]
    ]
    facts["autoscaling"] = {
        "replica_count_changes_s": changes,
        "steady": _facts(steady),
        "burst": _facts(burst),
    }
    peak_at, peak = max(watch.counts, key=lambda c: c[1])
    after_peak = [n for at, n in watch.counts if peak_at < at <= steady_end]
    assert peak >= 2, watch.counts  # scaled up
    assert peak <= MAX_REPLICAS, watch.counts
    assert after_peak, watch.counts
    assert min(after_peak) < peak, watch.counts  # and down, under traffic
    for state in (steady, burst):
        _assert_nothing_lost(state)
    stream = check_stream(steady_source.events)  # every event of both streams
    assert stream.order_violations == 0, stream.examples
    assert stream.renumbered == 0, stream.examples


def _facts(state: RunState) -> dict[str, Any]:
    summary = state.ledger.summary()
    return {
        "acked_requests": state.acked,
        "items_acked": summary.keys_acked,
        "lost": summary.lost,
        "errors": dict(state.outcomes),
    }


def _assert_nothing_lost(state: RunState) -> None:
    summary = state.ledger.summary()
    assert summary.keys_acked > 0
    assert summary.lost == 0, summary.lost_examples
    assert state.failed == 0  # nothing given up after Meta-style retries


async def test_worker_node_killed_its_shards_move_and_nothing_is_lost(
    deployment: Deployment, facts: dict[str, Any]
) -> None:
    """kill -9 of a worker node's raylet (by its pid) under load: the node's workers die
    with it, the GCS marks it dead, Ray restarts its shard actors on the surviving worker
    (the only other node with `wa_shard`; their owner, the shard pool, is on the head),
    and they read their partitions' pending and new entries; the other worker's shards
    run on untouched. Every acknowledged item is published, in order."""
    cluster = deployment.cluster
    placed = probe(cluster)["actors"]
    facts["node_kill_before"] = placed
    before = {
        int(a["name"].rsplit("-", 1)[1]): a["node"] for a in placed if a["class"] == "ShardActor"
    }
    pids_before = {a["name"]: a["pid"] for a in placed}
    victim = "worker1"
    moved = sorted(p for p, node in before.items() if node == victim)
    assert moved, before

    def fault(window: FaultWindow) -> None:
        window.start = time.perf_counter()
        window.facts["raylet_pid"] = cluster.kill_raylet(victim)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            survivors = pids_by_node(cluster, SHARD_TITLE)
            if not survivors[victim] and sum(len(p) for p in survivors.values()) >= SHARDS:
                break
            time.sleep(0.2)
        window.facts["shards_after"] = pids_by_node(cluster, SHARD_TITLE)
        window.end = time.perf_counter()

    result = await run_against("worker node raylet kill", deployment.load, KILL, fault, 25.0)
    facts["node_kill"] = {"moved_partitions": moved, **result.as_json()}
    assert not result.facts["shards_after"][victim], result.facts
    assert result.acknowledged > 0
    assert result.lost == 0, result.lost_examples
    assert result.published == result.acknowledged
    assert result.order_violations == 0, result.order_examples
    assert result.renumbered == 0, result.order_examples
    assert result.foreign_events == 0
    assert result.failed_after_retries == 0  # nothing given up after Meta-style retries
    ingress_nodes = {a["node"] for a in placed if a["class"].endswith(":WebhookIngress")}
    if ingress_nodes - {victim}:  # a replica outside the killed node kept acknowledging
        assert result.acked_during_fault > 0, result
    after = probe(cluster)
    nodes = {
        int(a["name"].rsplit("-", 1)[1]): a for a in after["actors"] if a["class"] == "ShardActor"
    }
    assert sorted(nodes) == list(range(SHARDS)), nodes  # every partition's shard is alive
    facts["node_kill"]["after"] = {p: (a["node"], a["restarts"]) for p, a in nodes.items()}
    facts["node_kill"]["statuses"] = after["shards"]
    for partition, actor in nodes.items():
        status = after["shards"][str(partition)]
        assert status["running"], status
        assert status["backlog"] == 0, status
        if partition not in moved:  # untouched: the same process all along
            assert actor["pid"] == pids_before[actor["name"]], (actor, pids_before)
            continue
        assert actor["node"] == "worker2", nodes  # re-created on the surviving worker
        assert actor["restarts"] >= 1, actor  # Ray's restart of the same actor
        # The new incarnation read its partition: what was pending and what came since.
        assert status["published"] > 0, status
