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
from aio_pika.exceptions import AMQPError
from aiormq.exceptions import ChannelInvalidStateError
from pamqp.commands import Basic

from adapters.codec import encode_events, failure_reason
from adapters.errors import TransientError
from adapters.ports import Rejection
from models.event import NormalizedEvent

# What a send fails with when the channel, the connection or the broker fails: AMQPError
# covers nacks (DeliveryError), closed channels and connections; ChannelInvalidStateError
# (a RuntimeError) is aiormq's answer on a channel already closed.
_OUTAGES = (AMQPError, OSError, ChannelInvalidStateError, TimeoutError, asyncio.CancelledError)


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

    async def publish(self, events: Sequence[NormalizedEvent]) -> list[Rejection]:
        """Publish all events concurrently on one channel and wait for every confirm.

        Order is kept: one channel delivers in publish order, and a nack, a lost channel
        or a timeout fails the whole batch, which the shard retries as a unit
        (at-least-once, same sequences). An event that cannot be encoded or built into a
        message is rejected before anything is sent (adapters/ports.py).
        """
        messages, rejected = self._messages(events)
        if rejected or not messages:
            return rejected
        exchange = await self._ensure()
        # Tasks are created in order and aiormq's channel lock is FIFO, so frames go out
        # in publish order; confirms are awaited together.
        sends = [
            asyncio.ensure_future(exchange.publish(message, routing_key, mandatory=False))
            for message, routing_key in messages
        ]
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*sends, return_exceptions=True), timeout=self._timeout
            )
        except TimeoutError as exc:
            # The sends still running are cancelled and collected before reconnecting.
            for send in sends:
                send.cancel()
            await asyncio.gather(*sends, return_exceptions=True)
            await self._reset()
            raise TransientError(f"rabbitmq publish: {exc!r}") from exc
        return await self._outcome(results)

    @staticmethod
    def _messages(
        events: Sequence[NormalizedEvent],
    ) -> tuple[list[tuple[aio_pika.Message, str]], list[Rejection]]:
        """Every event as a message and its routing key, or the rejected ones."""
        encoded, rejected = encode_events(events)
        messages: list[tuple[aio_pika.Message, str]] = []
        for index, wire in enumerate(encoded if not rejected else ()):
            try:
                message = aio_pika.Message(
                    body=wire.body,
                    headers=wire.headers,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=wire.message_id,
                    type=wire.type,
                )
            except Exception as exc:  # noqa: BLE001 -- a message that cannot be built is its own
                rejected.append(Rejection(index, failure_reason(exc)))
            else:
                messages.append((message, wire.routing_key))
        return messages, rejected

    async def _outcome(self, results: Sequence[object]) -> list[Rejection]:
        """Rejections for sends that failed on their own; TransientError for an outage.

        What closes the channel or the connection (a nack, the broker refusing a message
        it would not take, a lost socket) fails every send in flight with the same
        exception, so it cannot be pinned on one message: the batch is retried. Any other
        exception came from building that one message's frames (the encoding checks make
        it unexpected) and is that message's.
        """
        rejected = [
            Rejection(index, failure_reason(result))
            for index, result in enumerate(results)
            if isinstance(result, BaseException) and not isinstance(result, _OUTAGES)
        ]
        outage = next((r for r in results if isinstance(r, _OUTAGES)), None)
        if outage is not None:
            await self._reset()
        if rejected:
            return rejected  # the caller publishes the whole batch again
        if isinstance(outage, BaseException):
            raise TransientError(f"rabbitmq publish: {outage!r}") from outage
        if not all(isinstance(result, Basic.Ack) for result in results):
            raise TransientError("rabbitmq: a publish was not acknowledged")
        return []

    async def ping(self) -> None:
        """Connect (or reuse the connection) and check it is open."""
        await self._ensure()
        if self._connection is None or self._connection.is_closed:
            raise TransientError("rabbitmq: connection closed")

    async def close(self) -> None:
        """Close the connection."""
        await self._reset()
