"""Running the real service (`python -m cluster run`) as a subprocess for e2e and chaos tests."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from cluster import process_tree

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now, from 20000-32767: above Ray's worker ports
    (10002-19999) and below the kernel's ephemeral range (32768-60999). HAProxy binds the
    service port only after Ray has started, and a port the kernel handed out as
    ephemeral can meanwhile become the local end of one of Ray's own connections (CI saw
    "cannot bind socket (Address already in use)")."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 32768)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32767")


@dataclass
class Service:
    """A started service: its process, URL and log file."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    data_dir: Path
    log_offset: int = 0

    def wait_ready(self, timeout_s: float = 180) -> None:
        """Poll /readyz until 200; fail with the log tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"service exited {self.process.returncode}:\n{self.tail()}")
            # Its own "serving" line first: after a kill -9 the previous run's Ray may still
            # answer on the same port for a few seconds.
            if "serving on" in self.log.read_text(errors="replace")[self.log_offset :]:
                try:
                    if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.5)
        raise AssertionError(f"service not ready after {timeout_s}s:\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        """The end of the service's log."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def terminate(self, timeout_s: float = 120) -> int:
        """SIGTERM (drain) and wait; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def kill_hard(self) -> None:
        """kill -9 the runner only, as a crash would, leaving Ray's processes behind."""
        self.process.kill()
        self.process.wait(timeout=30)

    def cleanup(self) -> None:
        """End whatever this service started that is still alive (by recorded pid)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        process_tree.end(process_tree.load(self.data_dir / "run.pid"), grace_s=2)


def start_service(data_dir: Path, env: dict[str, str], port: int | None = None) -> Service:
    """Start `python -m cluster run` with WA_* env on a free port, logging to data_dir."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / f"service-{port}.log"
    offset = log.stat().st_size if log.exists() else 0
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WA_")},
        "WA_HOST": "127.0.0.1",
        "WA_PORT": str(port),
        "WA_DATA_DIR": str(data_dir),
        "WA_SHARDS": "2",
        # Tests run clusters one after another; the dashboard's fixed port is not needed.
        "WA_RAY_DASHBOARD": "false",
        "WA_LOG_LEVEL": "INFO",
        **env,
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cluster", "run"],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Service(process, f"http://127.0.0.1:{port}", log, data_dir, offset)


@contextmanager
def running_service(data_dir: Path, env: dict[str, str]) -> Iterator[Service]:
    """A ready service that is always cleaned up."""
    service = start_service(data_dir, env)
    try:
        service.wait_ready()
        yield service
    finally:
        service.cleanup()
