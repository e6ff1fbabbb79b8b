"""The service under chaos: `python -m cluster run` on its own Redis (AOF) and RabbitMQ node,
with the handles the faults need (the processes it recorded, a restart on the same data)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cluster import process_tree
from loadtest.tenants import SimTenant, generate_tenants, write_tenants_file
from tests.chaos.redis_node import RedisNode
from tests.support.rabbitmq_server import RabbitNode
from tests.support.service import Service, free_port, start_service

SHARD_TITLE = b"ray::ShardActor"
INGRESS_TITLE = b"ray::ServeReplica:wa-ingest:WebhookIngress"


@dataclass
class ChaosTarget:
    """One service deployment; `service` is replaced by `restart_ray`."""

    data_dir: Path
    redis: RedisNode
    rabbit: RabbitNode
    port: int = field(default_factory=free_port)
    exchange: str = field(default_factory=lambda: f"chaos.{uuid.uuid4().hex[:8]}")
    tenants: list[SimTenant] = field(default_factory=lambda: generate_tenants(2, seed=42))
    service: Service | None = None

    @property
    def url(self) -> str:
        """The webhook URL the harness posts to."""
        return f"http://127.0.0.1:{self.port}/webhook"

    def _env(self) -> dict[str, str]:
        tenants_file = self.data_dir / "tenants.json"
        if not tenants_file.exists():
            write_tenants_file(self.tenants, tenants_file)
        return {
            "WA_TENANTS_FILE": str(tenants_file),
            "WA_REDIS_URL": self.redis.url,
            "WA_REDIS_PREFIX": "chaos:",
            "WA_RABBITMQ_URL": self.rabbit.url,
            "WA_RABBITMQ_EXCHANGE": self.exchange,
            "WA_LOG_LEVEL": "WARNING",
            # The harness's media messages name ids no Graph API knows, and Meta's is not
            # reachable here: every one would hold its conversation for WA_MEDIA_WAIT_S
            # and end `failed`. The media path is tested and measured on its own
            # (tests/e2e/test_media_e2e.py, docs/media.md); here it publishes `skipped`.
            "WA_MEDIA_ENABLED": "false",
        }

    def start(self) -> float:
        """Start the service and wait until /readyz says ready; returns the seconds taken."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self.service = start_service(self.data_dir, self._env(), port=self.port)
        self.service.wait_ready()
        return time.monotonic() - started

    def _running(self) -> Service:
        if self.service is None:
            raise RuntimeError("the service is not started")
        return self.service

    def pids(self, title: bytes) -> list[int]:
        """Pids of this service's processes whose title starts with `title` (Ray sets an
        actor's process title to `ray::<class>`), from the tree the runner records."""
        found = []
        for pid, _ in process_tree.load(self.data_dir / "run.pid"):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(title):
                found.append(pid)
        return found

    def kill(self, pids: list[int]) -> None:
        """kill -9 each pid (ours: found in the recorded tree)."""
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def kill_everything(self) -> int:
        """kill -9 the runner and every process it recorded (Ray's GCS, raylet, workers,
        HAProxy): the whole cluster crashes at once. Returns how many were killed."""
        service = self._running()
        procs = [p for p in process_tree.load(self.data_dir / "run.pid") if process_tree.alive(p)]
        self.kill([pid for pid, _ in procs])
        service.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(process_tree.alive(p) for p in procs):
            time.sleep(0.1)
        return len(procs)

    def restart_ray(self) -> float:
        """Crash everything, then start again on the same port and data; returns the
        seconds from the crash to ready."""
        started = time.monotonic()
        self.kill_everything()
        self.start()
        return time.monotonic() - started

    def stop(self) -> int:
        """SIGTERM the runner (drain) and clean up what is left; returns its exit code."""
        service = self._running()
        try:
            return service.terminate(timeout_s=90)
        finally:
            service.cleanup()

    def tail(self) -> str:
        """The service log's end, for failure messages."""
        return self.service.tail() if self.service is not None else ""
