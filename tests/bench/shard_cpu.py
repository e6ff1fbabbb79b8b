"""Bench (not a test): a shard's CPU per event, in-process on the real Redis and RabbitMQ.

    .venv/bin/python -m tests.bench.shard_cpu [--events 4000] [--conversations 400]

Appends N text messages (customer conversations, a wamid each; one status per fourth
message) to a fresh Redis prefix, then drains partition 0 with one ConversationShard
publishing to a fresh exchange, at each batch size; prints the shard process's CPU
(`time.process_time`) per event and the wall time. The reorder window is off (the
configs' test default): the figure is the per-event work, not the window's wait. Run from
any checkout whose tests/support/configs.py has `shard_config`, `redis_inbox` and
`rabbit_publisher` (so before/after an issue compares the same script).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime

import redis

from actors.shard import ConversationShard
from models.inbox import InboxItem
from models.routing import conversation_id, conversation_key
from tests.conftest import _delete_exchange
from tests.support.configs import rabbit_publisher, redis_inbox, shard_config


def _items(events: int, conversations: int, run: str) -> list[InboxItem]:
    items: list[InboxItem] = []
    now = datetime.now(UTC)
    for n in range(events):
        customer = f"1650555{n % conversations:04d}"
        key = conversation_key("acme", "106540352242922", customer)
        status = n % 4 == 3
        raw = (
            {
                "id": f"wamid.{run}.out{n}",
                "status": "delivered",
                "timestamp": str(int(now.timestamp())),
                "recipient_id": customer,
            }
            if status
            else {
                "from": customer,
                "id": f"wamid.{run}.{n}",
                "timestamp": str(int(now.timestamp()) + n // conversations),
                "type": "text",
                "text": {"body": f"message {n} " + "x" * 80},
            }
        )
        items.append(
            InboxItem(
                tenant_id="acme",
                delivery_id=f"d{n}",
                received_at=now,
                kind="status" if status else "message",
                field="messages",
                position=(0, 0, 0),
                phone_number_id="106540352242922",
                display_phone_number="15550100001",
                conversation_key=key,
                conversation_id=conversation_id(key),
                partition=0,
                contact={"wa_id": customer, "profile": {"name": f"Customer {n % conversations}"}},
                item=raw,
            )
        )
    return items


async def _one(batch: int, events: int, conversations: int, url: str) -> tuple[float, float]:
    run = uuid.uuid4().hex[:8]
    prefix = f"wabench:{run}:"
    exchange = f"wabench.{run}"
    inbox = redis_inbox(prefix, url=url)
    publisher = rabbit_publisher(exchange)
    items = _items(events, conversations, run)
    for start in range(0, len(items), 500):
        chunk = items[start : start + 500]
        await inbox.append_deliveries(
            [(f"d:{run}:{start + i}", [it]) for i, it in enumerate(chunk)]
        )
    shard = ConversationShard(shard_config(0, batch_size=batch, linger_ms=0), inbox, publisher)
    await shard.run_once()  # connections and the first read out of the measure
    cpu, wall = time.process_time(), time.perf_counter()
    while await inbox.backlog(0):
        await shard.run_once()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await publisher.close()
    await inbox.close()
    await _delete_exchange(exchange)
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    client.close()
    return cpu / events * 1e6, wall


def main() -> None:
    """Measure and print CPU per event per batch size (median of --repeat runs)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--conversations", type=int, default=400)
    parser.add_argument("--batches", default="1,16,256")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    for batch in (int(b) for b in args.batches.split(",")):
        runs = [
            asyncio.run(_one(batch, args.events, args.conversations, args.url))
            for _ in range(args.repeat)
        ]
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        print(
            f"batch={batch:4d} shard CPU {cpu:7.1f} us/event  wall {wall:6.2f} s"
            f"  (median of {args.repeat})"
        )


if __name__ == "__main__":
    main()
