"""Bench (not a test): what archiving costs the acknowledgement path.

    .venv/bin/python -m tests.bench.archive_append [--appends 2000]

The ingress now builds the raw delivery (`WebhookReceiver.raw_delivery`) and the inbox
writes the body with the items in the same atomic append (Lua script / transaction). This
measures both: the CPU of building and encoding the raw delivery per request, and one
delivery per `append_deliveries` call, sequentially, with and without its body, on the
real Redis and on SQLite; blocks of each alternate so drift hits both alike. Medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis

from adapters.archive_codec import dump_header
from adapters.ports import Delivery, Inbox
from ingress.receiver import WebhookReceiver
from models.archive import new_delivery_id
from models.envelope import DeliveryContext, split_signed
from tests.support.app import signed
from tests.support.bodies import envelope, messages_value, text_message
from tests.support.configs import redis_inbox, sqlite_inbox
from tests.support.redis_server import own_redis, server_binary

URL = "redis://127.0.0.1:6379/0"
BLOCK = 100


def body(n: int) -> bytes:
    """A one-message webhook body (~0.6 KB), unique per n."""
    value = messages_value([text_message(f"wamid.bench.{n}", "16505550001", f"hello {n}")])
    return orjson.dumps(envelope(("messages", value)))


def cpu_us(samples: int) -> float:
    """Median us to build and encode one raw delivery as the ingress does."""
    raw = body(0)
    payload = orjson.loads(raw)
    ctx = DeliveryContext(new_delivery_id(datetime.now(UTC)), datetime.now(UTC), 4)
    split = split_signed(payload, ctx, lambda p, w: "acme", signed_by={"acme"})
    signature = signed(raw)[1]["X-Hub-Signature-256"]
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        dump_header(WebhookReceiver.raw_delivery(raw, signature, split, ctx, {"acme"}))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


async def appends(inbox: Inbox, n: int) -> tuple[float, float]:
    """Median us per append without and with the body, alternating blocks of BLOCK."""
    with_raw: list[float] = []
    without: list[float] = []
    now = datetime.now(UTC)
    for block in range(n // BLOCK):
        for i in range(BLOCK):
            k = block * BLOCK + i
            raw = body(k)
            ctx = DeliveryContext(new_delivery_id(now), now, 4)
            split = split_signed(orjson.loads(raw), ctx, lambda p, w: "acme", signed_by={"acme"})
            key = f"bench:{uuid.uuid4().hex}"
            carry = block % 2 == 1
            delivery: Delivery = (key, split.items)
            if carry:
                raw_delivery = WebhookReceiver.raw_delivery(raw, None, split, ctx, {"acme"})
                delivery = (key, split.items, raw_delivery)
            t0 = time.perf_counter()
            await inbox.append_deliveries([delivery])
            (with_raw if carry else without).append(time.perf_counter() - t0)
    await inbox.close()
    return statistics.median(without) * 1e6, statistics.median(with_raw) * 1e6


async def server_us(url: str, n: int) -> tuple[float, float]:
    """Redis's own time per append script (INFO commandstats, evalsha usec_per_call) on a
    server of the bench's own, without and with the body: unaffected by the client's
    scheduling on a loaded machine."""
    client = redis.Redis.from_url(url)
    per_call: dict[bool, list[float]] = {False: [], True: []}
    for rounds in range(4):
        carry = rounds % 2 == 1
        client.config_resetstat()
        inbox = redis_inbox(f"wabench:{rounds}:", url=url)
        now = datetime.now(UTC)
        for k in range(n):
            raw = body(k)
            ctx = DeliveryContext(new_delivery_id(now), now, 4)
            split = split_signed(orjson.loads(raw), ctx, lambda p, w: "acme", signed_by={"acme"})
            delivery: Delivery = (f"b:{rounds}:{k}", split.items)
            if carry:
                raw_delivery = WebhookReceiver.raw_delivery(raw, None, split, ctx, {"acme"})
                delivery = (delivery[0], split.items, raw_delivery)
            await inbox.append_deliveries([delivery])
        await inbox.close()
        stats: Any = client.info("commandstats")
        per_call[carry].append(float(stats["cmdstat_evalsha"]["usec_per_call"]))
    client.close()
    return statistics.median(per_call[False]), statistics.median(per_call[True])


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--appends", type=int, default=2000)
    n = parser.parse_args().appends
    print(f"build + encode the raw delivery (CPU, per request): {cpu_us(20_000):6.1f} us")
    binary = server_binary()
    if binary is not None:
        with tempfile.TemporaryDirectory() as tmp, own_redis(binary, Path(tmp)) as url:
            plain, archived = await server_us(url, n)
        print(
            f"redis server time per append script: {plain:5.1f} us without body, "
            f"{archived:5.1f} us with"
        )
    prefix = f"wabench:{uuid.uuid4().hex[:8]}:"
    plain, archived = await appends(redis_inbox(prefix, url=URL), n)
    print(f"redis append, one delivery:  {plain:6.0f} us without body, {archived:6.0f} us with")
    with tempfile.TemporaryDirectory() as tmp:
        plain, archived = await appends(sqlite_inbox(Path(tmp) / "b.db"), n)
    print(f"sqlite append, one delivery: {plain:6.0f} us without body, {archived:6.0f} us with")
    client = redis.Redis.from_url(URL)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


if __name__ == "__main__":
    asyncio.run(main())
