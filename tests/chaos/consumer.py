"""The chaos suite's consumer: a durable queue that outlives a broker restart, and every
event it consumed kept in order for the checks of tests/chaos/checks.py.

The harness's own RabbitSource uses an exclusive, auto-deleted queue: a broker restart
deletes it with its connection, and whatever the service publishes before the consumer
has declared it again would be routed nowhere and counted lost. Here the queue is
durable and declared before the first POST, so it holds what the service publishes
while the consumer reconnects; messages are acknowledged after they are recorded, so a
delivery cut by the restart comes again (a duplicate with the same event_id, which the
checks allow).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from loadtest.consumers import OnEvent


class DurableQueueSource:
    """An EventSource (loadtest/consumers.py) on a durable queue bound with '#'."""

    def __init__(self, url: str, exchange: str) -> None:
        self._url = url
        self._exchange = exchange
        self.queue_name = f"chaos.{uuid.uuid4().hex[:12]}"
        self.events: list[dict[str, Any]] = []  # every delivery, redeliveries included
        self._connection: AbstractRobustConnection | None = None

    async def start(self, on_event: OnEvent) -> None:
        """Declare and bind the queue (the service declared the exchange), then consume."""
        # Why a 1 s reconnect interval: the default 5 s would add up to 5 s to every
        # recovery time measured after a broker restart.
        self._connection = await aio_pika.connect_robust(
            self._url, timeout=10, reconnect_interval=1
        )
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=2000)
        queue = await channel.declare_queue(self.queue_name, durable=True)
        await queue.bind(self._exchange, "#")

        async def handle(message: AbstractIncomingMessage) -> None:
            event = orjson.loads(message.body)
            self.events.append(event)
            on_event(event, time.perf_counter())
            # A broker gone between delivery and ack: the message is delivered again.
            with contextlib.suppress(aio_pika.exceptions.AMQPError, RuntimeError):
                await message.ack()

        await queue.consume(handle)

    async def stop(self) -> None:
        """Delete the queue and close the connection."""
        if self._connection is None:
            return
        with contextlib.suppress(aio_pika.exceptions.AMQPError, RuntimeError):
            channel = await self._connection.channel()
            await channel.queue_delete(self.queue_name)
        await self._connection.close()
        self._connection = None
