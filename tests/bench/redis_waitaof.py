"""Bench (not a test): what WAITAOF costs an append, and Redis memory per conversation.

    .venv/bin/python -m tests.bench.redis_waitaof [--server PATH] [--appends 2000]

Starts its own redis-server (PATH, default: the first >= 7.2 that tests/support/redis_server
finds) with AOF on in a temporary directory, then measures, per appendfsync policy:
one delivery per `append_deliveries` call, sequentially (us per append, p50/p99), with
WA_REDIS_WAITAOF off and local; and the ingress ack path in-process, 32 concurrent requests
(tests/bench/ingress_hot_path.py's `run`). Last, the bytes per conversation of the
last-sequence keys (`SET seq:<id> n EX ttl`, what the commit writes) against a field of the
pre-issue-9 hash.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
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


def sequence_memory(url: str, conversations: int) -> tuple[float, float]:
    """Bytes per conversation: own key with TTL (now) and a hash field (before issue 9)."""
    client = redis.Redis.from_url(url)
    ids = [
        hashlib.blake2b(str(n).encode(), digest_size=16).hexdigest() for n in range(conversations)
    ]
    results = []
    for layout in ("keys", "hash"):
        client.flushall()
        before = int(client.info("memory")["used_memory"])
        for start in range(0, conversations, 10_000):
            with client.pipeline(transaction=False) as pipe:
                for cid in ids[start : start + 10_000]:
                    if layout == "keys":
                        pipe.set(f"wa:seq:{cid}", 12345, ex=604800)
                    else:
                        pipe.hset("wa:seq", cid, 12345)
                pipe.execute()
        results.append((int(client.info("memory")["used_memory"]) - before) / conversations)
    client.flushall()
    client.close()
    return results[0], results[1]


async def main() -> None:
    """Print the measurements."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default=None, help="a redis-server >= 7.2")
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--conversations", type=int, default=200_000)
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
        keys, field = sequence_memory(url, args.conversations)
        print(
            f"last sequence per conversation: own key + TTL {keys:.1f} B, hash field {field:.1f} B"
        )


if __name__ == "__main__":
    asyncio.run(main())
