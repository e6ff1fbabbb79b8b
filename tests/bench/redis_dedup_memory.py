"""Bench (not a test): Redis memory per dedup mark, for 1M marks as the adapter writes them.

    .venv/bin/python -m tests.bench.redis_dedup_memory [--keys 1000000] [--url redis://...]

Writes N marks `<prefix>seen:d:<32 hex>` with SET EX (the RedisInbox layout), reads
INFO memory before and after and MEMORY USAGE of a sample, then deletes them.
"""

from __future__ import annotations

import argparse
import hashlib
import uuid

import redis


def main() -> None:
    """Measure and print bytes per key."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    client = redis.Redis.from_url(args.url)
    prefix = f"wabench:{uuid.uuid4().hex[:8]}:seen:"
    keys = [
        prefix + "d:" + hashlib.sha256(str(n).encode()).hexdigest()[:32] for n in range(args.keys)
    ]
    before = int(client.info("memory")["used_memory"])
    for start in range(0, len(keys), 10_000):
        with client.pipeline(transaction=False) as pipe:
            for key in keys[start : start + 10_000]:
                pipe.set(key, b"1", ex=7 * 24 * 3600)
            pipe.execute()
    after = int(client.info("memory")["used_memory"])
    sample = [int(client.memory_usage(k) or 0) for k in keys[:: max(1, len(keys) // 1000)]]
    print(f"keys={args.keys} key_length={len(keys[0])}")
    print(f"used_memory delta: {after - before} bytes = {(after - before) / args.keys:.1f} B/key")
    print(f"MEMORY USAGE mean of {len(sample)} keys: {sum(sample) / len(sample):.1f} B/key")
    per_key = (after - before) / args.keys
    print(f"7-day window at 100 marks/s: {per_key * 100 * 604800 / 2**30:.2f} GiB")
    for start in range(0, len(keys), 10_000):
        client.delete(*keys[start : start + 10_000])
    client.close()


if __name__ == "__main__":
    main()
