"""Bench (not a test): what WAITAOF costs an append.

    .venv/bin/python -m tests.bench.redis_waitaof [--server PATH] [--appends 2000]

Starts its own redis-server (PATH, default: the first >= 7.2 that tests/support/redis_server
finds) with AOF on in a temporary directory, then measures, per appendfsync policy:
one delivery per `append_deliveries` call, sequentially (us per append, p50/p99), with
WA_REDIS_WAITAOF off and local; and the ingress ack path in-process, 32 concurrent requests
(tests/bench/ingress_hot_path.py's `run`). Redis memory per conversation record is in
docs/redis.md ("Conversation state").
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import redis

from adapters.redis_durability import WaitAof
from cluster.logging import configure_logging
from tests.bench.ingress_hot_path import run
from tests.support.configs import redis_inbox
from tests.support.events import inbox_item
from tests.support.redis_server import own_redis, server_binary, server_version

LOCAL = WaitAof(numlocal=1, numreplicas=0, timeout_ms=2000)


async def sequential(url: str, waitaof: WaitAof | None, n: int, tag: str) -> str:
    """Append n one-item deliveries one after the other; us per append."""
    inbox = redis_inbox(f"bench:{tag}:", url=url, waitaof=waitaof)
    item = inbox_item(0)
    latencies = []
    for i in range(n):
        started = time.perf_counter()
        await inbox.append_deliveries([(f"d:{tag}:{i}", [item])])
        latencies.append(time.perf_counter() - started)
    await inbox.close()
    latencies.sort()
    p50 = statistics.median(latencies) * 1e6
    p99 = latencies[int(len(latencies) * 0.99)] * 1e6
    return f"{p50:8.0f} us p50 {p99:8.0f} us p99 ({1 / statistics.mean(latencies):6.0f} appends/s)"


async def main() -> None:
    """Print the measurements."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default=None, help="a redis-server >= 7.2")
    parser.add_argument("--appends", type=int, default=2000)
    args = parser.parse_args()
    configure_logging("WARNING")  # one log line per accepted request would be measured too
    binary = args.server or server_binary((7, 2))
    if binary is None:
        raise SystemExit("needs a redis-server >= 7.2 (--server PATH)")
    print(f"redis-server {'.'.join(map(str, server_version(binary) or ()))} ({binary})")
    with (
        tempfile.TemporaryDirectory() as tmp,
        own_redis(
            binary, Path(tmp) / "redis", "--appendonly", "yes", "--appendfsync", "always"
        ) as url,
    ):
        for fsync in ("always", "everysec"):
            redis.Redis.from_url(url).config_set("appendfsync", fsync)
            # everysec + WAITAOF local waits for the once-a-second fsync: few appends suffice.
            n = args.appends if fsync == "always" else 20
            for name, waitaof in (("off", None), ("local", LOCAL)):
                line = await sequential(url, waitaof, n, f"{fsync}-{name}")
                print(f"appendfsync {fsync:8s} WAITAOF {name:5s} sequential: {line}")
        redis.Redis.from_url(url).config_set("appendfsync", "always")
        for name, waitaof in (("off", None), ("local", LOCAL)):
            inbox = redis_inbox(f"bench:ingress-{name}:", url=url, waitaof=waitaof)
            await run(f"ingress, always, WAITAOF {name}", inbox, None, False, args.appends)


if __name__ == "__main__":
    asyncio.run(main())
