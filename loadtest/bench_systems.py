"""The three systems of the bench: how each is started, reached, stopped and cleaned up."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import redis

from loadtest import procs


@dataclass(frozen=True, slots=True)
class System:
    """One system under test."""

    name: str
    title: str
    command: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/readyz"
    ready_timeout_s: float = 60.0
    drain_exchange: str | None = None  # bind a draining queue while wrk runs
    events_exchange: str | None = None  # the harness can match these events
    under_flock: bool = False

    @property
    def url(self) -> str:
        """Where webhooks are POSTed."""
        return f"http://127.0.0.1:{self.port}/webhook"

    @property
    def ready_url(self) -> str:
        """What answers 200 once the system can take traffic."""
        return f"http://127.0.0.1:{self.port}{self.ready_path}"

    def service_pid(self, proc: subprocess.Popen[bytes]) -> int:
        """The pid to SIGTERM: the service itself, not flock(1) around it."""
        if self.under_flock:
            kids = procs.children(proc.pid)
            if kids:
                return kids[0]
        return proc.pid


def _uvicorn(app: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
    ]


def systems(args: argparse.Namespace, run_id: str, tenants_file: Path, work: Path) -> list[System]:
    """a0, a, b and c, configured for this run (own exchanges, key prefix and data dir)."""
    base = args.port_base
    peer_env = {"LT_TENANTS_FILE": str(tenants_file)}
    naive_exchange = f"lt.bench.{run_id}.naive"
    service_exchange = f"lt.bench.{run_id}.svc"
    return [
        System(
            "a0",
            "bare ASGI on uvicorn, verify + parse only (1 worker)",
            _uvicorn("loadtest.peers.verify_only:app", base + 3, 1),
            base + 3,
            peer_env,
        ),
        System(
            "a",
            "uvicorn + FastAPI, verify + parse only (1 worker)",
            _uvicorn("loadtest.peers.verify_only:fastapi_app", base + 1, 1),
            base + 1,
            peer_env,
        ),
        System(
            "b",
            "naive bridge: uvicorn + FastAPI, 2 workers, publish each item with a confirm",
            _uvicorn("loadtest.peers.naive_bridge:app", base + 2, 2),
            base + 2,
            {**peer_env, "LT_AMQP_URL": args.amqp_url, "LT_EXCHANGE": naive_exchange},
            drain_exchange=naive_exchange,
        ),
        System(
            "c",
            "this service: Ray Serve (HAProxy ingress), Redis inbox, RabbitMQ",
            ["flock", args.lock, sys.executable, "-m", "cluster", "run"],
            base,
            {
                "WA_HOST": "127.0.0.1",
                "WA_PORT": str(base),
                "WA_REDIS_URL": args.redis_url,
                "WA_REDIS_PREFIX": f"lt:bench:{run_id}:",
                "WA_RABBITMQ_URL": args.amqp_url,
                "WA_RABBITMQ_EXCHANGE": service_exchange,
                "WA_TENANTS_FILE": str(tenants_file),
                "WA_DATA_DIR": str(work / "service-data"),
                "WA_LOG_LEVEL": "WARNING",
                # One shard per core: on 2 cores, more shards only make smaller batches.
                "WA_SHARDS": str(args.shards),
                "WA_INGRESS_REPLICAS": str(args.ingress_replicas),
                # The peers do not fetch media: neither does the service here (the
                # harness's media ids are known to no Graph API; docs/media.md measures
                # media on its own).
                "WA_MEDIA_ENABLED": "false",
            },
            ready_timeout_s=900.0,  # may first wait for another user's Ray to release the lock
            drain_exchange=service_exchange,
            events_exchange=service_exchange,
            under_flock=True,
        ),
    ]


def cleanup_broker(amqp_url: str, run_id: str) -> None:
    """Delete the run's exchanges and the service's unrouted queue."""

    async def clean() -> None:
        connection = await aio_pika.connect_robust(amqp_url, timeout=10)
        async with connection:
            for name in (f"lt.bench.{run_id}.svc.unrouted",):
                channel = await connection.channel()
                with contextlib.suppress(Exception):
                    await channel.queue_delete(name)
            for name in (
                f"lt.bench.{run_id}.svc",
                f"lt.bench.{run_id}.svc.unrouted",
                f"lt.bench.{run_id}.naive",
            ):
                channel = await connection.channel()
                with contextlib.suppress(Exception):
                    await channel.exchange_delete(name)

    with contextlib.suppress(Exception):
        asyncio.run(clean())


def cleanup_redis(redis_url: str, run_id: str) -> None:
    """Delete the run's Redis keys (streams and sequences under its prefix)."""
    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"lt:bench:{run_id}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
