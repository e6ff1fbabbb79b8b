"""Consumer queues (WA_RABBITMQ_QUEUES) on the real broker: the bindings route the service's
keys, and what a consumer rejects or keeps failing ends in `<exchange>.dead` with x-death.

Every test has its own exchange (the `exchange_name` fixture deletes it and its `.unrouted`
and `.dead` twins) and its own queue names, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)

from adapters.consumer_queues import ConsumerQueue
from adapters.errors import BrokerMisconfigured
from adapters.rabbitmq import RabbitPublisher
from cluster.backends import RabbitPublisherConfig, check_publisher_topology
from cluster.settings import SettingsError
from ingress.health import publisher_check
from tests.conftest import RABBITMQ_URL
from tests.support.configs import defaults
from tests.support.events import event

pytestmark = pytest.mark.rabbitmq

_WAIT_S = 10.0  # how long a test waits for a message it expects (a bound, not a timing)


@dataclass
class Broker:
    """A connection and channel of the test's own and the names it must delete afterwards."""

    connection: AbstractConnection
    channel: AbstractChannel
    exchange: str
    queues: list[str]

    async def fresh_channel(self) -> AbstractChannel:
        """Another channel (a failed passive declare closes the one it ran on)."""
        return await self.connection.channel()

    def queue_name(self, service: str) -> str:
        """A unique consumer-queue name for `service`, deleted after the test."""
        name = f"watest.q.{service}.{uuid.uuid4().hex[:8]}"
        self.queues.append(name)
        return name

    async def queue(self, name: str) -> AbstractQueue:
        """The existing queue `name` (passive: never declares or changes it)."""
        return await self.channel.get_queue(name, ensure=True)

    async def next_message(self, name: str) -> AbstractIncomingMessage:
        """The next message on queue `name`, within _WAIT_S (the test fails otherwise)."""
        queue = await self.queue(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _WAIT_S
        while loop.time() < deadline:
            message = await queue.get(fail=False, no_ack=False)
            if message is not None:
                return message
            await asyncio.sleep(0.05)
        raise AssertionError(f"no message on {name} within {_WAIT_S}s")

    async def drain(self, name: str) -> list[str]:
        """Every routing key waiting on queue `name` (each message acknowledged)."""
        queue = await self.queue(name)
        keys: list[str] = []
        while (message := await queue.get(fail=False)) is not None:
            keys.append(message.routing_key or "")
            await message.ack()
        return keys


@pytest.fixture
async def broker(exchange_name: str) -> AsyncIterator[Broker]:
    connection = await aio_pika.connect(RABBITMQ_URL)
    channel = await connection.channel()
    state = Broker(connection, channel, exchange_name, [])
    yield state
    cleanup = await connection.channel()  # the test's channel may have been closed by an error
    for name in state.queues:
        await cleanup.queue_delete(name)
    await connection.close()


def _publisher(broker: Broker, queues: list[ConsumerQueue]) -> RabbitPublisher:
    return RabbitPublisher(
        RABBITMQ_URL, broker.exchange, defaults().rabbitmq_confirm_timeout_s, queues=queues
    )


def _x_death(message: AbstractIncomingMessage) -> list[dict[str, Any]]:
    deaths = message.headers.get("x-death")
    assert isinstance(deaths, list), message.headers
    return [dict(d) for d in deaths if isinstance(d, dict)]


async def test_bindings_route_each_services_keys_to_its_queue(broker: Broker) -> None:
    """`<tenant>.<category>.<type>` keys go to the queues whose patterns match them, only."""
    inbound, statuses = broker.queue_name("inbound"), broker.queue_name("statuses")
    queues = [
        ConsumerQueue(inbound, ("*.message.#",), 5),
        ConsumerQueue(statuses, ("acme.status.read", "other.status.#"), 5),
    ]
    publisher = _publisher(broker, queues)
    try:
        text, read = event(1), event(2, kind="status")
        assert (text.routing_key, read.routing_key) == ("acme.message.text", "acme.status.read")
        assert await publisher.publish([text, read, event(3)]) == []
    finally:
        await publisher.close()
    # Confirms came back: the broker has routed every message to every matching queue.
    assert await broker.drain(inbound) == ["acme.message.text", "acme.message.text"]
    assert await broker.drain(statuses) == ["acme.status.read"]


async def test_a_message_the_consumer_rejects_is_dead_lettered_with_its_history(
    broker: Broker,
) -> None:
    """reject(requeue=False) → the message is on `<exchange>.dead`, same key and body, with
    x-death naming the queue and the reason `rejected`."""
    name = broker.queue_name("inbound")
    publisher = _publisher(broker, [ConsumerQueue(name, ("#",), 5)])
    sent = event(1)
    try:
        assert await publisher.publish([sent]) == []
    finally:
        await publisher.close()
    message = await broker.next_message(name)
    await message.reject(requeue=False)
    dead = await broker.next_message(f"{broker.exchange}.dead")
    await dead.ack()
    assert dead.routing_key == "acme.message.text"
    assert orjson.loads(dead.body)["event_id"] == sent.event_id
    (death,) = _x_death(dead)
    assert (death["queue"], death["reason"], death["exchange"]) == (
        name,
        "rejected",
        broker.exchange,
    )
    assert await broker.drain(name) == []  # nothing left behind in the consumer's queue


async def test_a_message_redelivered_past_the_limit_is_dead_lettered(broker: Broker) -> None:
    """Returned (requeue=True) on every delivery: delivered `limit` + 1 times, then on
    `<exchange>.dead` with the reason `delivery_limit`; never lost, never delivered again."""
    name, limit = broker.queue_name("crashy"), 3
    publisher = _publisher(broker, [ConsumerQueue(name, ("#",), limit)])
    try:
        assert await publisher.publish([event(1)]) == []
    finally:
        await publisher.close()
    queue = await broker.queue(name)
    deliveries = 0
    dead_queue = await broker.queue(f"{broker.exchange}.dead")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _WAIT_S
    dead: AbstractIncomingMessage | None = None
    while dead is None and loop.time() < deadline:
        message = await queue.get(fail=False, no_ack=False)
        if message is not None:
            deliveries += 1
            await message.nack(requeue=True)
            continue
        dead = await dead_queue.get(fail=False)
        await asyncio.sleep(0.02)
    assert dead is not None, f"not dead-lettered after {deliveries} deliveries"
    await dead.ack()
    assert deliveries == limit + 1
    (death,) = _x_death(dead)
    assert (death["queue"], death["reason"]) == (name, "delivery_limit")
    assert await broker.drain(name) == []


async def test_the_services_own_dead_letter_queue_is_bound_to_every_key(broker: Broker) -> None:
    """`<exchange>.dead` is declared durable and bound with `#`; turned off, it is not."""
    publisher = _publisher(broker, [])
    try:
        await publisher.ping()
    finally:
        await publisher.close()
    dead_exchange = await broker.channel.get_exchange(f"{broker.exchange}.dead", ensure=True)
    await dead_exchange.publish(aio_pika.Message(b"x"), "any.key.at.all")
    message = await broker.next_message(f"{broker.exchange}.dead")
    await message.ack()
    assert message.routing_key == "any.key.at.all"

    other = f"watest.{uuid.uuid4().hex[:12]}"
    publisher = RabbitPublisher(RABBITMQ_URL, other, 30.0, dead_queue=False)
    try:
        await publisher.ping()
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await (await broker.fresh_channel()).get_queue(f"{other}.dead", ensure=True)
    finally:
        await publisher.close()
        cleanup = await broker.fresh_channel()
        for suffix in ("", ".dead", ".unrouted"):
            await cleanup.exchange_delete(f"{other}{suffix}")
        await cleanup.queue_delete(f"{other}.unrouted")


async def test_a_queue_declared_with_other_arguments_is_a_start_up_error(broker: Broker) -> None:
    """A consumer queue that exists with another delivery limit: ping raises
    BrokerMisconfigured every time (not an outage to retry), readiness names it, and the
    runner's start-up check turns it into a SettingsError naming the queue and the settings."""
    name = broker.queue_name("inbound")
    await broker.channel.declare_queue(
        name, durable=True, arguments={"x-queue-type": "quorum", "x-delivery-limit": 7}
    )
    publisher = _publisher(broker, [ConsumerQueue(name, ("#",), 5)])
    try:
        for _ in range(2):  # the same answer again: no half-declared state is kept
            with pytest.raises(BrokerMisconfigured, match="PRECONDITION_FAILED"):
                await publisher.ping()

        async def no_backlog() -> int:
            return 0

        # At run time (the broker changed under the service): still ready, and said so.
        detail = await publisher_check(publisher.ping, no_backlog)()
        assert detail is not None
        assert detail.startswith("misconfigured (rabbitmq topology: PRECONDITION_FAILED"), detail
    finally:
        await publisher.close()
    config = RabbitPublisherConfig(
        url=RABBITMQ_URL,
        exchange=broker.exchange,
        confirm_timeout_s=30.0,
        dead_queue=True,
        queues=((name, ("#",)),),
        delivery_limit=5,
    )
    with pytest.raises(SettingsError, match=f"{name}.*WA_RABBITMQ_QUEUES"):
        await asyncio.to_thread(check_publisher_topology, config)
