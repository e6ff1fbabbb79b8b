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
from pamqp.commands import Basic

from adapters.codec import (
    CONTENT_TYPE,
    WireEvent,
    amqp_properties,
    check_amqp_frames,
    encode_events,
    failure_reason,
)
from adapters.errors import TransientError
from adapters.ports import Rejection
from models.event import NormalizedEvent


def amqp_message(wire: WireEvent) -> aio_pika.Message:
    """The persistent message an encoded event is sent as (its frames checked by the codec)."""
    return aio_pika.Message(
        body=wire.body,
        headers=wire.headers,
        content_type=CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=wire.message_id,
        type=wire.type,
    )


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

        Every check that can fail for one message runs before anything is sent: encoding,
        building the message, marshalling its method and content header frames as aiormq
        will (adapters/codec.py). An event that fails one is rejected and nothing of the
        batch is sent (adapters/ports.py); the same event fails the same way on every try.
        What fails once sending has begun (a nack, a lost channel or connection, a
        timeout, or anything else raised while sending) is therefore not one message's
        doing: it is an outage, TransientError, and the shard retries the whole batch
        (at-least-once, same sequences). Order is kept: one channel delivers in publish
        order.
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
            confirms = await asyncio.wait_for(asyncio.gather(*sends), timeout=self._timeout)
        except (Exception, asyncio.CancelledError) as exc:
            # Any failure while sending is an outage, not only AMQPError, OSError,
            # TimeoutError and aiormq's ChannelInvalidStateError (a RuntimeError) on a
            # closed channel: the per-message checks all ran above, so nothing raised here
            # is one message's. A send cancelled under us (its channel closing) too. The
            # sends still running are cancelled and collected before reconnecting.
            # Nacks stay transient: a retry budget for repeated nacks comes with dead-lettering.
            for send in sends:
                send.cancel()
            await asyncio.gather(*sends, return_exceptions=True)
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling():
                raise  # this publish itself was cancelled (the shard stopping): not a failure
            await self._reset()
            raise TransientError(f"rabbitmq publish: {exc!r}") from exc
        if not all(isinstance(confirm, Basic.Ack) for confirm in confirms):
            raise TransientError("rabbitmq: a publish was not acknowledged")
        return []

    def _messages(
        self, events: Sequence[NormalizedEvent]
    ) -> tuple[list[tuple[aio_pika.Message, str]], list[Rejection]]:
        """Every event as a message and its routing key, its frames marshalled as aiormq
        will send them, or the rejected ones (all before anything is sent)."""
        encoded, rejected = encode_events(events, self._exchange_name)
        messages: list[tuple[aio_pika.Message, str]] = []
        for index, wire in enumerate(encoded if not rejected else ()):
            try:
                message = amqp_message(wire)
                # The codec marshalled this event's frames with amqp_properties; what
                # aio-pika hands aiormq at send time is marshalled too if it differs.
                sent = message.properties
                if sent != amqp_properties(wire):
                    check_amqp_frames(self._exchange_name, wire, sent)
            except MemoryError:
                raise  # not the message's fault: the batch is retried
            except Exception as exc:  # noqa: BLE001 -- a message that cannot be built is its own
                rejected.append(Rejection(index, failure_reason(exc)))
            else:
                messages.append((message, wire.routing_key))
        return messages, rejected

    async def ping(self) -> None:
        """Connect (or reuse the connection) and check it is open."""
        await self._ensure()
        if self._connection is None or self._connection.is_closed:
            raise TransientError("rabbitmq: connection closed")

    async def close(self) -> None:
        """Close the connection."""
        await self._reset()
