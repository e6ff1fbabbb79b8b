"""Production publisher: a durable RabbitMQ topic exchange, persistent messages, confirms.

Unroutable events (no queue bound for their key yet) are not dropped: the exchange has an
alternate exchange `<name>.unrouted` with a durable queue of the same name, so the
deployment can be bound late without losing anything published before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection
from aio_pika.exceptions import AMQPError, DeliveryError
from pamqp.commands import Basic

from adapters.codec import dump_event, event_headers
from adapters.errors import TransientError
from models.event import NormalizedEvent


class RabbitPublisher:
    """The Publisher port on aio-pika with publisher confirms."""

    def __init__(self, url: str, exchange: str, confirm_timeout_s: float) -> None:
        self._url = url
        self._exchange_name = exchange
        self._timeout = confirm_timeout_s
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()

    async def _ensure(self) -> AbstractExchange:
        if self._exchange is not None:
            return self._exchange
        async with self._lock:
            if self._exchange is None:
                try:
                    self._connection = await aio_pika.connect_robust(self._url, timeout=10)
                    self._channel = await self._connection.channel(publisher_confirms=True)
                    unrouted = f"{self._exchange_name}.unrouted"
                    alt = await self._channel.declare_exchange(
                        unrouted, aio_pika.ExchangeType.FANOUT, durable=True
                    )
                    queue = await self._channel.declare_queue(unrouted, durable=True)
                    await queue.bind(alt)
                    self._exchange = await self._channel.declare_exchange(
                        self._exchange_name,
                        aio_pika.ExchangeType.TOPIC,
                        durable=True,
                        arguments={"alternate-exchange": unrouted},
                    )
                except (TimeoutError, AMQPError, OSError) as exc:
                    await self._reset()
                    raise TransientError(f"rabbitmq connect: {exc}") from exc
        assert self._exchange is not None
        return self._exchange

    async def _reset(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = None
        self._exchange = None
        if connection is not None:
            # Closing a broken connection: its error is moot, the next publish reconnects.
            with contextlib.suppress(Exception):
                await connection.close()

    async def publish(self, events: Sequence[NormalizedEvent]) -> None:
        """Publish all events concurrently on one channel and wait for every confirm.

        Order is kept: one channel delivers in publish order, and a nack or timeout fails
        the whole batch, which the shard retries as a unit (at-least-once, same sequences).
        """
        if not events:
            return
        exchange = await self._ensure()
        messages = [
            (
                aio_pika.Message(
                    body=dump_event(event),
                    headers=event_headers(event),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=event.event_id,
                    type=f"{event.category}.{event.type}",
                ),
                event.routing_key,
            )
            for event in events
        ]
        # Tasks are created in order and aiormq's channel lock is FIFO, so frames go out
        # in publish order; confirms are awaited together.
        sends = [
            asyncio.ensure_future(exchange.publish(message, routing_key, mandatory=False))
            for message, routing_key in messages
        ]
        try:
            confirms = await asyncio.wait_for(asyncio.gather(*sends), timeout=self._timeout)
        except (AMQPError, DeliveryError, OSError, TimeoutError, RuntimeError) as exc:
            # RuntimeError: aiormq's ChannelInvalidStateError on a closed channel. The
            # sends still running are cancelled and collected before reconnecting.
            for send in sends:
                send.cancel()
            await asyncio.gather(*sends, return_exceptions=True)
            await self._reset()
            raise TransientError(f"rabbitmq publish: {exc!r}") from exc
        if not all(isinstance(confirm, Basic.Ack) for confirm in confirms):
            raise TransientError("rabbitmq: a publish was not acknowledged")

    async def ping(self) -> None:
        """Connect (or reuse the connection) and check it is open."""
        await self._ensure()
        if self._connection is None or self._connection.is_closed:
            raise TransientError("rabbitmq: connection closed")

    async def close(self) -> None:
        """Close the connection."""
        await self._reset()
