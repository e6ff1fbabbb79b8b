"""The shard's batch bounds and poison handling on the production adapters: RedisInbox
(which reports every pending entry as delivered twice) and RabbitPublisher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest

from actors.shard import ConversationShard
from actors.shard_metrics import ShardStats
from adapters.outbox import OutboxPublisher, read_outbox
from tests.conftest import RABBITMQ_URL
from tests.support.configs import rabbit_publisher, redis_inbox, shard_config, sqlite_inbox
from tests.support.events import check_streams, inbox_item, item_events, store
from tests.support.shards import POISON, drain, flow_reply


@pytest.mark.redis
async def test_redis_pending_entries_are_retried_in_batches_growing_from_one(
    redis_prefix: str, tmp_path: Path
) -> None:
    """A crashed reader's ten pending entries: its successor takes 1, 2, 4, 3, in order."""
    crashed = redis_inbox(redis_prefix)
    await store(crashed, [inbox_item(n) for n in range(1, 11)])
    assert len(await crashed.read(0, 100, 10)) == 10  # read, never committed
    await crashed.close()
    inbox = redis_inbox(redis_prefix)
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    shard = ConversationShard(shard_config(block_ms=10), inbox, outbox, ShardStats())
    assert await drain(shard) == [1, 2, 4, 3]
    events = [row["event"]["event_id"] for row in read_outbox(tmp_path / "outbox.db")]
    assert events == [f"wamid.{n}" for n in range(1, 11)]
    assert await inbox.backlog(0) == 0
    await inbox.close()
    await outbox.close()


@pytest.mark.rabbitmq
async def test_poison_items_reach_rabbitmq_as_dead_letters_in_their_places(
    exchange_name: str, tmp_path: Path
) -> None:
    """Every poison after a good item: every event confirmed by the broker in order (c1's
    `conversation.created` first, the whole stream numbered 1..n), each poison's place
    taken by its placeholder, and each poison on `<exchange>.dead` with its raw item."""
    publisher = rabbit_publisher(exchange_name)
    await publisher.ping()
    connection = await aio_pika.connect(RABBITMQ_URL)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange_name, routing_key="#")
    dead_queue = await channel.get_queue(f"{exchange_name}.dead")
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    poisons = list(POISON.values())
    items = [inbox_item(1)] + [flow_reply(n, p) for n, p in enumerate(poisons, start=2)]
    await store(inbox, items)
    config = shard_config(block_ms=10, max_item_age_s=None)
    sizes = await drain(ConversationShard(config, inbox, publisher, ShardStats()))
    published = len(items) + 1  # and c1's conversation.created, before wamid.1
    assert sum(sizes) == published
    got = await received(queue, published)
    check_streams(got, {"c1": "customer"})
    letters = {letter.event_id: letter for letter in await inbox.dead_letters(100)}
    assert [(e["event_id"], e["category"]) for e in item_events(got)] == [
        ("wamid.1", "message")
    ] + [
        (f"dead:{letters[f'wamid.{n}'].dead_letter_id}", "unsupported")
        for n in range(2, len(items) + 1)
    ]
    dead = await received(dead_queue, len(poisons))
    assert sorted(d["event_id"] for d in dead) == sorted(letters)
    assert {d["event_id"]: d["item"] for d in dead} == {
        event_id: letter.item.model_dump(mode="json") for event_id, letter in letters.items()
    }
    await inbox.close()
    await publisher.close()
    await connection.close()


async def received(queue: aio_pika.abc.AbstractQueue, count: int) -> list[dict[str, Any]]:
    """`count` message bodies from the queue, acknowledged (5 s without one: fail)."""
    got: list[dict[str, Any]] = []
    async with queue.iterator(timeout=5) as messages:
        async for message in messages:
            async with message.process():
                got.append(orjson.loads(message.body))
            if len(got) == count:
                break
    return got
