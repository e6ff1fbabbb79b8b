"""A Redis of the chaos suite's own: AOF on, a fixed port, killed with -9 and restarted.

tests/support/redis_server.py's `own_redis` picks a new port each time; a restart must
come back on the same port and the same files, as a crashed production Redis does under
its supervisor, so the service's clients reconnect by themselves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.support.service import free_port


@dataclass
class RedisNode:
    """redis-server with `appendonly yes` (fsync every second) in `directory` on `port`."""

    binary: str
    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    @property
    def url(self) -> str:
        """The URL the service is given."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 30) -> None:
        """Start (or restart on the same AOF) and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        # Why everysec is enough here: a reply is sent only after its write reached the
        # AOF file (the kernel's page cache), so a kill -9 of the process loses nothing;
        # only a machine crash could lose the last second.
        args += ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.directory)]
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.BusyLoadingError:
                    pass  # replaying the AOF
                except redis.RedisError:
                    if self.process.poll() is not None:
                        raise RuntimeError(f"redis-server exited: {args}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server not ready in {timeout_s}s: {args}")
                time.sleep(0.05)
        finally:
            client.close()

    def kill_hard(self) -> None:
        """kill -9 (by pid): no shutdown, no final AOF rewrite."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM by pid and wait (SIGKILL if it does not stop)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait(timeout=10)
