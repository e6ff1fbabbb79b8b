"""Throughput per added node: `python -m tests.bench.node_scaling` (docs/scaling.md).

For 1, 2 and 3 nodes (a head plus 0, 1, 2 workers of cluster/local_cluster.py, all on
this machine) the service joins the cluster with `WA_RAY_ADDRESS`, its shards spread
over the nodes (`WA_PLACEMENT=spread`) and one ingress replica per node behind the
head's HAProxy; the harness's open loop then runs at each given rate, its report giving
achieved rate, ack and ack→published latency, loss and order, and the CPU seconds of
every process of the cluster by group. On one machine the nodes share its cores: the
figures measure what each node adds in overhead (memory, CPU per event, latency) and
that nothing is lost, not added capacity.

Run it under the Ray lock (it starts Ray):
`flock /tmp/wa-ray.lock python -m tests.bench.node_scaling`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import psutil
import redis

from cluster.local_cluster import CLIENT_ENV, LocalCluster, default_nodes
from loadtest import procs
from loadtest.consumers import RabbitSource
from loadtest.harness import RunConfig, run_load
from loadtest.tenants import generate_tenants, write_tenants_file
from loadtest.traffic import TrafficGenerator

ROOT = Path(__file__).resolve().parents[2]


def _cluster_pids(cluster: LocalCluster) -> list[int]:
    return [pid for node in cluster.nodes for pid, _ in cluster.processes(node.spec.name)]


def _rss_mib(cluster: LocalCluster) -> dict[str, float]:
    """Resident memory of each node's processes (MiB), summed."""
    out = {}
    for node in cluster.nodes:
        total = 0
        for pid, _ in cluster.processes(node.spec.name):
            with contextlib.suppress(psutil.Error):
                total += int(psutil.Process(pid).memory_info().rss)
        out[node.spec.name] = round(total / 2**20, 1)
    return out


async def _load(
    url: str, rate: float, duration_s: float, exchange: str, args: Any, roots: list[int]
) -> dict[str, Any]:
    tenants = generate_tenants(2, seed=42)
    generator = TrafficGenerator(tenants, args.conversations, batch=1, status_share=0.4, seed=0)
    source = RabbitSource(args.amqp_url, exchange)
    cfg = RunConfig(
        url=url,
        rate=rate,
        duration_s=duration_s,
        connections=64,
        grace_s=30.0,
        progress=False,
        cpu_roots=tuple(roots),
    )
    _, report = await run_load(cfg, generator, source, io.StringIO())
    return report


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    events = report["events"]
    run_cpu = report["cpu"]["run"] or {}
    return {
        "offered_rps": report["rates"]["offered_rps"],
        "achieved_rps": report["rates"]["achieved_rps"],
        "published_eps": report["rates"]["published_eps"],
        "ack_ms": {k: report["ack_latency_ms"].get(k) for k in ("mean", "p50", "p99")},
        # Little's law: requests in flight = throughput x mean time in the system (the
        # autoscaler's `target_ongoing_requests` counts the same thing per replica).
        "in_flight": round(
            report["rates"]["achieved_rps"] * (report["ack_latency_ms"].get("mean") or 0) / 1000, 2
        ),
        "ack_to_published_ms": {k: report["ack_to_published_ms"].get(k) for k in ("p50", "p99")},
        "lost": events["lost"],
        "order_violations": events["order_violations"],
        "errors": report["requests"]["errors_by_status"],
        "cpu": run_cpu,
    }


def cleanup_broker(amqp_url: str, exchange: str) -> None:
    """Delete the run's exchange, its unrouted twin and queue."""

    async def clean() -> None:
        connection = await aio_pika.connect_robust(amqp_url, timeout=10)
        async with connection:
            channel = await connection.channel()
            for queue in (f"{exchange}.unrouted", f"{exchange}.dead"):
                with contextlib.suppress(Exception):
                    await channel.queue_delete(queue)
            for name in (exchange, f"{exchange}.unrouted", f"{exchange}.dead"):
                with contextlib.suppress(Exception):
                    await channel.exchange_delete(name)

    with contextlib.suppress(Exception):
        asyncio.run(clean())


def cleanup_redis(redis_url: str, prefix: str) -> None:
    """Delete the run's keys."""
    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def measure(nodes: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One cluster size: up, deploy, load at each rate, drain, down."""
    cluster = LocalCluster(work / f"nodes{nodes}")
    run_id = uuid.uuid4().hex[:8]
    exchange = f"lt.scaling.{run_id}"
    port = args.port
    data = work / f"nodes{nodes}" / "service"
    data.mkdir(parents=True, exist_ok=True)
    tenants_file = data / "tenants.json"
    write_tenants_file(generate_tenants(2, seed=42), tenants_file)
    result: dict[str, Any] = {"nodes": nodes}
    started = time.monotonic()
    cluster.up(default_nodes(nodes - 1))
    try:
        result["cluster_up_s"] = round(time.monotonic() - started, 1)
        env = {
            **CLIENT_ENV,
            "WA_HOST": "127.0.0.1",
            "WA_PORT": str(port),
            "WA_DATA_DIR": str(data),
            "WA_RAY_ADDRESS": cluster.address,
            "WA_PROXY_LOCATION": "HeadOnly",
            "WA_PLACEMENT": "spread",
            "WA_SHARDS": str(args.shards),
            "WA_INGRESS_REPLICAS": str(nodes),
            "WA_INGRESS_MAX_PER_NODE": "1",
            "WA_REDIS_URL": args.redis_url,
            "WA_REDIS_PREFIX": f"lt:scaling:{run_id}:",
            "WA_RABBITMQ_URL": args.amqp_url,
            "WA_RABBITMQ_EXCHANGE": exchange,
            "WA_TENANTS_FILE": str(tenants_file),
            "WA_LOG_LEVEL": "WARNING",
            "WA_MEDIA_ENABLED": "false",
        }
        service = procs.start([sys.executable, "-m", "cluster", "run"], env, data / "service.log")
        try:
            started = time.monotonic()
            procs.wait_ready(f"http://127.0.0.1:{port}/readyz", service, 300)
            result["deploy_s"] = round(time.monotonic() - started, 1)
            time.sleep(3)
            result["idle_rss_mib"] = _rss_mib(cluster)
            result["runs"] = []
            for rate in args.rates:
                report = asyncio.run(
                    _load(
                        f"http://127.0.0.1:{port}/webhook",
                        rate,
                        args.duration,
                        exchange,
                        args,
                        _cluster_pids(cluster),
                    )
                )
                result["runs"].append(_summary(report))
                print(json.dumps({"nodes": nodes, **result["runs"][-1]}), flush=True)
        finally:
            procs.stop(service, timeout_s=90)
    finally:
        cluster.down()
        cleanup_broker(args.amqp_url, exchange)
        cleanup_redis(args.redis_url, f"lt:scaling:{run_id}:")
    return result


def main(argv: list[str] | None = None) -> int:
    """Measure each cluster size; write var/scaling/scaling.json."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.node_scaling", description=__doc__)
    parser.add_argument("--nodes", default="1,2,3", help="cluster sizes, comma-separated")
    parser.add_argument("--rates", default="400,1500", help="open-loop POSTs/s per run")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--port", type=int, default=28480)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--out", default="var/scaling")
    args = parser.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",")]
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    results = [measure(int(n), args, out) for n in args.nodes.split(",")]
    (out / "scaling.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
