"""One suite, both Publisher adapters: the SQLite outbox and RabbitMQ (real broker)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest

from adapters.outbox import OutboxPublisher, read_outbox
from adapters.ports import Publisher
from adapters.rabbitmq import RabbitPublisher
from models.event import NormalizedEvent
from tests.conftest import RABBITMQ_URL
from tests.support.events import event
from tests.support.unreachable import UNWRITABLE_DB_KINDS, fails_transiently, unwritable_db_path

Consumed = list[tuple[str, dict[str, Any], dict[str, Any]]]  # routing key, headers, body

CONFIRM_TIMEOUT_S = 30.0  # how long a publish waits for the broker's confirms


class Harness:
    """A publisher plus a way to read back what it published."""

    def __init__(self, publisher: Publisher, consume: Callable[[int], Awaitable[Consumed]]) -> None:
        self.publisher = publisher
        self.consume = consume


@pytest.fixture(params=["outbox", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    if request.param == "outbox":
        path = tmp_path / "outbox.db"
        publisher: Publisher = OutboxPublisher(path)

        async def consume_outbox(n: int) -> Consumed:
            return [(r["routing_key"], r["headers"], r["event"]) for r in read_outbox(path)]

        yield Harness(publisher, consume_outbox)
        await publisher.close()
        return
    exchange = request.getfixturevalue("exchange_name")
    publisher = RabbitPublisher(RABBITMQ_URL, exchange, CONFIRM_TIMEOUT_S)
    await publisher.ping()  # declares the exchange before the test queue binds to it
    connection = await aio_pika.connect(RABBITMQ_URL)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key="#")

    async def consume_rabbit(n: int) -> Consumed:
        got: Consumed = []
        async with queue.iterator(timeout=5) as messages:
            async for message in messages:
                async with message.process():
                    got.append(
                        (
                            message.routing_key or "",
                            dict(message.headers),
                            orjson.loads(message.body),
                        )
                    )
                if len(got) >= n:
                    break
        return got

    yield Harness(publisher, consume_rabbit)
    await publisher.close()
    await connection.close()


async def test_events_arrive_in_order_with_routing_key_and_headers(harness: Harness) -> None:
    """Order kept, `<tenant>.<category>.<type>` keys, id headers on every message."""
    events = [event(1), event(2), event(3, "c2", "status")]
    await harness.publisher.publish(events)
    got = await harness.consume(3)
    assert [key for key, _, _ in got] == [
        "acme.message.text",
        "acme.message.text",
        "acme.status.read",
    ]
    assert [body["event_id"] for _, _, body in got] == ["wamid.1", "wamid.2", "wamid.3:read"]
    _, headers, body = got[2]
    assert headers["event_id"] == "wamid.3:read"
    assert headers["tenant_id"] == "acme"
    assert headers["conversation_id"] == "c2"
    assert NormalizedEvent.model_validate(body) == events[2]


async def test_a_large_batch_is_published_completely_and_in_order(harness: Harness) -> None:
    """500 events in one call: all confirmed, in publish order."""
    events = [event(n) for n in range(1, 501)]
    await harness.publisher.publish(events)
    got = await harness.consume(500)
    assert [body["sequence"] for _, _, body in got] == list(range(1, 501))


async def test_ping_succeeds_on_a_reachable_backend(harness: Harness) -> None:
    await harness.publisher.ping()


@pytest.mark.rabbitmq
async def test_unroutable_events_are_kept_not_dropped(exchange_name: str) -> None:
    """No queue bound for the key: the event lands in `<exchange>.unrouted`."""
    publisher = RabbitPublisher(RABBITMQ_URL, exchange_name, CONFIRM_TIMEOUT_S)
    await publisher.publish([event(1)])
    await publisher.close()
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{exchange_name}.unrouted", durable=True)
        message = await queue.get(timeout=5, fail=False)
        for _ in range(20):
            if message is not None:
                break
            await asyncio.sleep(0.1)
            message = await queue.get(timeout=5, fail=False)
        assert message is not None
        assert orjson.loads(message.body)["event_id"] == "wamid.1"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


@pytest.fixture(params=[*(f"outbox-{kind}" for kind in UNWRITABLE_DB_KINDS), "rabbitmq-refused"])
async def unreachable_publisher(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Publisher]:
    """A publisher whose broker cannot be reached: the outbox on a path SQLite cannot open,
    RabbitMQ on a port that refuses connections. (A broker that accepts and never answers
    costs RabbitPublisher's fixed 10 s connect timeout, so it is not exercised here.)"""
    kind: str = request.param
    if kind.startswith("outbox-"):
        publisher: Publisher = OutboxPublisher(
            unwritable_db_path(kind.removeprefix("outbox-"), tmp_path)
        )
    else:
        port = request.getfixturevalue("closed_port")
        url = f"amqp://guest:guest@127.0.0.1:{port}/"
        publisher = RabbitPublisher(url, "watest.unreachable", CONFIRM_TIMEOUT_S)
    yield publisher
    await publisher.close()


PUBLISHER_CALLS: dict[str, Callable[[Publisher], Awaitable[object]]] = {
    "publish": lambda publisher: publisher.publish([event(1)]),
    "ping": lambda publisher: publisher.ping(),
}


@pytest.mark.parametrize("call", PUBLISHER_CALLS.values(), ids=PUBLISHER_CALLS.keys())
async def test_an_unreachable_broker_is_a_transient_error_not_a_vendor_one(
    unreachable_publisher: Publisher, call: Callable[[Publisher], Awaitable[object]]
) -> None:
    """Broker down: publish and ping fail fast with TransientError (the shard keeps the
    batch and retries, /readyz says not ready), never aio-pika's or sqlite3's exceptions."""
    await fails_transiently(call(unreachable_publisher))


@pytest.mark.parametrize("call", PUBLISHER_CALLS.values(), ids=PUBLISHER_CALLS.keys())
async def test_a_publisher_retried_against_an_unreachable_broker_keeps_failing_transiently(
    unreachable_publisher: Publisher, call: Callable[[Publisher], Awaitable[object]]
) -> None:
    """The shard retries the same publisher: each attempt reconnects and fails the same way
    (a failed connect leaves no half-open state that would raise something else)."""
    for _ in range(3):
        await fails_transiently(call(unreachable_publisher))
