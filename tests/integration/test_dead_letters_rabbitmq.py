"""Dead letters end to end on the real servers (issue 11, point 1): a RabbitMQ node of the
test's own whose `max_message_size` is lowered refuses one event of a conversation by
closing the channel; the shard, on the real Redis inbox, learns the limit, tries the item
`max_attempts` times, dead-letters it (failed store + `<exchange>.dead`, key
`<tenant>.dead.<category>.<type>`; too large for the broker itself, so without its raw
item, which the failed store keeps) and publishes the conversation's successors."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import aio_pika
import orjson
import pytest

from actors.shard import ConversationShard
from actors.shard_metrics import ShardStats
from adapters.errors import TransientError
from adapters.rabbitmq import RabbitPublisher
from tests.support.configs import redis_inbox, shard_config
from tests.support.events import inbox_item, store
from tests.support.rabbitmq_server import RabbitNode, rabbitmq_node
from tests.support.shards import drain

pytestmark = [pytest.mark.redis, pytest.mark.rabbitmq]

__all__ = ["rabbitmq_node"]  # the module's own broker node (tests/support/rabbitmq_server.py)

LIMIT = 64 * 1024


def big_text(n: int) -> dict[str, object]:
    """A text message whose event is larger than LIMIT."""
    body = "x" * (LIMIT + 1000)
    return {
        "from": "16505550001",
        "id": f"wamid.{n}",
        "timestamp": "1750000000",
        "type": "text",
        "text": {"body": body},
    }


async def bodies(
    queue: aio_pika.abc.AbstractQueue, count: int
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """`count` messages from the queue (acknowledged), waiting up to 10 s for each."""
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    for _ in range(count):
        message = None
        for _ in range(100):
            message = await queue.get(fail=False)
            if message is not None:
                break
            await asyncio.sleep(0.1)
        assert message is not None, f"only {len(got)} of {count} messages arrived"
        await message.ack()
        got.append(message)
    return got


async def test_an_event_the_broker_refuses_is_dead_lettered_and_its_successors_published(
    rabbitmq_node: RabbitNode, redis_prefix: str, tmp_path: Path
) -> None:
    del tmp_path
    rabbitmq_node.ctl("eval", f"application:set_env(rabbit, max_message_size, {LIMIT}).")
    exchange = f"watest.dead.{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect_robust(rabbitmq_node.url)
    channel = await connection.channel()
    # The learned limit is trusted for 2 s here (60 s by default), so the replay below,
    # after the operator raised the broker's limit, is sent and accepted.
    publisher = RabbitPublisher(rabbitmq_node.url, exchange, 10.0, learned_limit_ttl_s=2.0)
    await publisher.ping()  # declares the exchanges and `<exchange>.dead`
    events = await channel.declare_queue(exclusive=True)
    await events.bind(exchange, "#")
    dead_queue = await channel.get_queue(f"{exchange}.dead")

    inbox = redis_inbox(redis_prefix)
    await store(inbox, [inbox_item(1), inbox_item(2, raw=big_text(2)), inbox_item(3)])
    stats = ShardStats()
    config = shard_config(block_ms=10, max_item_age_s=None, max_attempts=3)
    shard = ConversationShard(config, inbox, publisher, stats)
    for _ in range(20):  # the channel closing is an outage to the loop: retried
        with contextlib.suppress(TransientError):
            await drain(shard)
            break
    assert await inbox.backlog(0) == 0

    published = [orjson.loads(m.body) for m in await bodies(events, 4)]
    assert [(e["event_id"][:5], e["sequence"]) for e in published] == [
        (published[0]["event_id"][:5], 1),
        ("wamid", 2),
        ("dead:", 3),
        ("wamid", 4),
    ]
    assert published[3]["event_id"] == "wamid.3", "the successor is published"
    (message,) = await bodies(dead_queue, 1)
    letter = orjson.loads(message.body)
    assert message.routing_key == "acme.dead.message.text"
    assert (letter["event_id"], letter["step"], len(letter["attempts"])) == (
        "wamid.2",
        "publish",
        3,
    )
    # Too large for the broker with its raw item: sent without it, kept whole in the store.
    assert (letter["item"], letter["item_omitted"]) == (None, True)
    assert published[2]["data"]["dead_letter_id"] == letter["dead_letter_id"]
    (stored,) = await inbox.dead_letters(10)
    assert stored.dead_letter_id == letter["dead_letter_id"]
    assert stored.item == inbox_item(2, raw=big_text(2))
    assert stored.published
    assert stats.dead == 1

    # The operator raises the broker's limit and replays the dead letter: once the learned
    # limit is stale the event is sent again, accepted, after the conversation's successor.
    # A channel keeps the limit it was opened with: the publisher's connection is closed,
    # as a broker restarted with the new rabbitmq.conf would close it.
    rabbitmq_node.ctl("eval", "application:set_env(rabbit, max_message_size, 1048576).")
    await publisher.close()
    await asyncio.sleep(2.1)
    await inbox.append_replayed([stored.item])
    for _ in range(20):
        with contextlib.suppress(TransientError):
            await drain(shard)
            break
    (again,) = await bodies(events, 1)
    replayed = orjson.loads(again.body)
    assert (replayed["event_id"], replayed["sequence"], replayed["replayed"]) == (
        "wamid.2",
        5,
        True,
    )
    assert replayed["data"]["body"] == "x" * (LIMIT + 1000)
    assert stats.dead == 1
    await inbox.close()
    await publisher.close()
    await connection.close()
