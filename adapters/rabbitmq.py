"""Production publisher: a durable RabbitMQ topic exchange, persistent messages, confirms.

Unroutable events (no queue bound for their key yet) are not dropped: the exchange has an
alternate exchange `<name>.unrouted` with a durable queue of the same name, so the
deployment can be bound late without losing anything published before.

Tenants' routes (docs/tenants.md "Processing rules"): a tenant whose routing rule names
another exchange or RabbitMQ vhost has its events published there, with the rule's prefix
in front of the routing key. Such an exchange is declared like the main one (durable
topic, its own `<name>.unrouted` alternate) on first use; another vhost gets its own
connection (the URL's vhost replaced) and channel, opened on first use. A route that
cannot be connected or declared is an outage (TransientError): the batch is retried,
nothing is lost. Dead letters and the consumer queues stay on the service's exchange.

Dead letters: a topic exchange `<name>.dead` and, unless turned off, a durable queue of the
same name bound with `#`. The consumer queues of WA_RABBITMQ_QUEUES are declared with it
as their dead-letter exchange (adapters/consumer_queues.py). A queue or exchange that
already exists with other arguments is a set-up error (BrokerMisconfigured), not an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Sequence
from urllib.parse import quote

import aio_pika
import structlog
from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection
from aio_pika.exceptions import AMQPError
from aiormq.exceptions import ChannelPreconditionFailed
from pamqp.commands import Basic
from yarl import URL

from adapters.codec import (
    CONTENT_TYPE,
    MAX_BODY_BYTES,
    WireEvent,
    amqp_properties,
    check_amqp_frames,
    dead_letter_wire,
    encode_events,
    failure_reason,
)
from adapters.consumer_queues import ConsumerQueue
from adapters.errors import BrokerMisconfigured, RouteUnavailable, TransientError
from adapters.ports import Rejection, Routes
from models.dead_letter import DeadLetter
from models.event import NormalizedEvent

log = structlog.get_logger("rabbitmq")

# RabbitMQ's reason when a message exceeds max_message_size: "PRECONDITION_FAILED -
# message size 20000000 is larger than configured max size 16777216".
_MAX_SIZE = re.compile(r"larger than configured max size (\d+)")

LEARNED_LIMIT_TTL_S = 60.0
"""How long a learned `max_message_size` is trusted. The broker does not announce it, and
an operator may raise it to replay what it refused (docs/dead-letters.md): after this, the
next too-large message is sent again and refused (one channel closed, its batch retried)
or, the limit raised, accepted."""


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

    def __init__(
        self,
        url: str,
        exchange: str,
        confirm_timeout_s: float,
        *,
        dead_queue: bool = True,
        queues: Sequence[ConsumerQueue] = (),
        learned_limit_ttl_s: float = LEARNED_LIMIT_TTL_S,
        routes: Routes | None = None,
    ) -> None:
        """`dead_queue`: declare the durable queue `<exchange>.dead` bound to the
        dead-letter exchange with `#`; `queues`: the consumer queues to provision
        (module docstring), none by default; `learned_limit_ttl_s`: how long a
        `max_message_size` the broker named is trusted (_learn_limit); `routes`: each
        tenant's routing rule (None: every event on the service's exchange)."""
        self._url = url
        self._exchange_name = exchange
        self._timeout = confirm_timeout_s
        self._dead_queue = dead_queue
        self._queues = tuple(queues)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()
        self._dead_exchange_name = f"{exchange}.dead"
        self._dead_exchange: AbstractExchange | None = None  # declared by _ensure
        # The broker's max_message_size once it has refused a message by its size, and
        # when it was learned (_learn_limit); the codec's limit applies otherwise.
        self._learned: tuple[int, float] | None = None
        self._learned_ttl = learned_limit_ttl_s
        self._routes = routes
        # Tenants' exchanges by (vhost, name) (vhost None: the URL's), and the connection
        # and channel of each other vhost; opened on first use, dropped by _reset.
        self._route_exchanges: dict[tuple[str | None, str], AbstractExchange] = {}
        self._vhosts: dict[str, tuple[AbstractRobustConnection, AbstractRobustChannel | None]] = {}

    async def _ensure(self) -> AbstractExchange:
        if self._exchange is not None:
            return self._exchange
        async with self._lock:
            if self._exchange is None:
                try:
                    self._connection = await aio_pika.connect_robust(self._url, timeout=10)
                    self._channel = await self._connection.channel(publisher_confirms=True)
                    await self._declare_topology(self._channel)
                except ChannelPreconditionFailed as exc:
                    # An exchange or queue exists with other arguments (another type,
                    # another delivery limit): redeclaring it fails the same way on every
                    # try, so it is not an outage to retry but a set-up to fix.
                    await self._reset()
                    raise BrokerMisconfigured(f"rabbitmq topology: {exc}") from exc
                except (TimeoutError, AMQPError, OSError) as exc:
                    await self._reset()
                    raise TransientError(f"rabbitmq connect: {exc}") from exc
                except BaseException:
                    # Cancelled half-way (a readiness deadline, the shard stopping): close
                    # what was opened, or the robust connection would live on unowned,
                    # reconnecting by itself, and the next call would open another.
                    await self._reset()
                    raise
        assert self._exchange is not None
        return self._exchange

    async def _declare_topology(self, channel: AbstractRobustChannel) -> None:
        """Declare (idempotently) the unrouted and dead-letter exchanges and queues, the
        consumer queues and their bindings, then the events exchange; keep the exchanges.

        The events exchange is kept last, so `_ensure` only counts the topology declared
        once everything is."""
        unrouted = f"{self._exchange_name}.unrouted"
        alt = await channel.declare_exchange(unrouted, aio_pika.ExchangeType.FANOUT, durable=True)
        queue = await channel.declare_queue(unrouted, durable=True)
        await queue.bind(alt)
        dead = await channel.declare_exchange(
            self._dead_exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        if self._dead_queue:
            dead_queue = await channel.declare_queue(self._dead_exchange_name, durable=True)
            await dead_queue.bind(dead, "#")
        exchange = await channel.declare_exchange(
            self._exchange_name,
            aio_pika.ExchangeType.TOPIC,
            durable=True,
            arguments={"alternate-exchange": unrouted},
        )
        for spec in self._queues:
            consumer = await channel.declare_queue(
                spec.name, durable=True, arguments=spec.arguments(self._dead_exchange_name)
            )
            for pattern in spec.bindings:
                await consumer.bind(exchange, pattern)
        self._dead_exchange = dead
        self._exchange = exchange

    async def _reset(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = None
        self._exchange = None
        self._dead_exchange = None
        self._route_exchanges = {}
        vhosts, self._vhosts = self._vhosts, {}
        for other in [connection, *(c for c, _ in vhosts.values())]:
            if other is not None:
                # Closing a broken connection: its error is moot, the next publish
                # reconnects.
                with contextlib.suppress(Exception):
                    await other.close()

    async def _route(self, vhost: str | None, name: str) -> AbstractExchange:
        """A tenant route's exchange, declared (and its vhost connected) on first use; a
        failure is an outage of that route (TransientError, the batch retried)."""
        known = self._route_exchanges.get((vhost, name))
        if known is not None:
            return known
        async with self._lock:
            known = self._route_exchanges.get((vhost, name))
            if known is not None:
                return known
            try:
                if vhost is None:
                    assert self._channel is not None  # _ensure ran
                    channel = self._channel
                elif (link := self._vhosts.get(vhost)) is not None and link[1] is not None:
                    channel = link[1]
                else:
                    url = URL(self._url).with_path("/" + quote(vhost, safe=""), encoded=True)
                    connection = await aio_pika.connect_robust(url, timeout=10)
                    self._vhosts[vhost] = (connection, None)  # closed by _drop_route
                    channel = await connection.channel(publisher_confirms=True)
                    self._vhosts[vhost] = (connection, channel)
                exchange = await self._declare_events_exchange(channel, name)
            except BaseException as exc:
                # Only the route's own link is dropped (another vhost's connection; the
                # service's channel if the declare failed there, which closes a channel).
                await self._drop_route(vhost)
                if not isinstance(exc, Exception):
                    raise  # cancelled (the shard stopping): not a failure
                raise TransientError(
                    f"rabbitmq route vhost={vhost} exchange={name}: {exc!r}"
                ) from exc
            self._route_exchanges[(vhost, name)] = exchange
            return exchange

    async def _drop_route(self, vhost: str | None) -> None:
        if vhost is None:
            await self._reset()
            return
        link = self._vhosts.pop(vhost, None)
        self._route_exchanges = {k: v for k, v in self._route_exchanges.items() if k[0] != vhost}
        if link is not None:
            with contextlib.suppress(Exception):
                await link[0].close()

    @staticmethod
    async def _declare_events_exchange(
        channel: AbstractRobustChannel, name: str
    ) -> AbstractExchange:
        """An events exchange as the main one is declared: durable topic, with a durable
        `<name>.unrouted` alternate exchange and queue."""
        unrouted = f"{name}.unrouted"
        alt = await channel.declare_exchange(unrouted, aio_pika.ExchangeType.FANOUT, durable=True)
        queue = await channel.declare_queue(unrouted, durable=True)
        await queue.bind(alt)
        return await channel.declare_exchange(
            name,
            aio_pika.ExchangeType.TOPIC,
            durable=True,
            arguments={"alternate-exchange": unrouted},
        )

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
        # Every route of the batch is connected and declared before anything is sent: a
        # tenant's broken route fails the batch before it is half-published.
        targets: list[AbstractExchange] = []
        for _, _, route in messages:
            vhost, name = route
            if vhost is None and name == self._exchange_name:
                targets.append(exchange)
                continue
            try:
                targets.append(await self._route(vhost, name))
            except TransientError as exc:
                # No rejections here: messages[i] is events[i].
                tenants = frozenset(
                    events[i].tenant_id for i, m in enumerate(messages) if m[2] == route
                )
                raise RouteUnavailable(str(exc), tenants) from exc
        # Tasks are created in order and aiormq's channel lock is FIFO, so frames go out
        # in publish order on each channel (a conversation is one tenant's: one route);
        # confirms are awaited together.
        sends = [
            asyncio.ensure_future(target.publish(message, routing_key, mandatory=False))
            for (message, routing_key, _), target in zip(messages, targets, strict=True)
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
            self._learn_limit(exc)
            await self._reset()
            raise TransientError(f"rabbitmq publish: {exc!r}") from exc
        if not all(isinstance(confirm, Basic.Ack) for confirm in confirms):
            raise TransientError("rabbitmq: a publish was not acknowledged")
        return []

    def _messages(
        self, events: Sequence[NormalizedEvent]
    ) -> tuple[list[tuple[aio_pika.Message, str, tuple[str | None, str]]], list[Rejection]]:
        """Every event as a message, its routing key and its route (vhost, exchange), its
        frames marshalled as aiormq will send them, or the rejected ones (all before
        anything is sent)."""
        encoded, rejected = encode_events(
            events, self._exchange_name, self._max_body(), self._routes
        )
        messages: list[tuple[aio_pika.Message, str, tuple[str | None, str]]] = []
        for index, wire in enumerate(encoded if not rejected else ()):
            try:
                message = amqp_message(wire)
                # The codec marshalled this event's frames with amqp_properties; what
                # aio-pika hands aiormq at send time is marshalled too if it differs.
                sent = message.properties
                if sent != amqp_properties(wire):
                    check_amqp_frames(wire.exchange or self._exchange_name, wire, sent)
            except MemoryError:
                raise  # not the message's fault: the batch is retried
            except Exception as exc:  # noqa: BLE001 -- a message that cannot be built is its own
                rejected.append(Rejection(index, failure_reason(exc)))
            else:
                route = (wire.vhost, wire.exchange or self._exchange_name)
                messages.append((message, wire.routing_key, route))
        return messages, rejected

    def _max_body(self) -> int:
        """The largest body sent: the codec's, or the broker's learned limit while fresh."""
        learned = self._learned
        if learned is not None and time.monotonic() - learned[1] < self._learned_ttl:
            return min(learned[0], MAX_BODY_BYTES)
        return MAX_BODY_BYTES

    def _learn_limit(self, exc: BaseException) -> None:
        """A channel closed because a message exceeded the broker's `max_message_size`
        names the limit: keep it for `learned_limit_ttl_s`, so the retries reject that
        event before sending (adapters/ports.py) instead of the broker closing the
        channel again for ever, yet a limit the operator raised is seen a minute later."""
        if isinstance(exc, ChannelPreconditionFailed):
            found = _MAX_SIZE.search(str(exc))
            if found is not None:
                limit = int(found.group(1))
                log.warning("rabbitmq_max_message_size_learned", max_message_size=limit)
                self._learned = (limit, time.monotonic())

    async def publish_dead(self, letters: Sequence[DeadLetter]) -> list[str]:
        """Publish each dead letter to `<exchange>.dead` (persistent, confirmed), one at a
        time. One too large for the broker (the codec's limit or the broker's own, learned
        when it refuses) goes without its raw item, which the failed store keeps; one that
        cannot be sent even so is returned. Anything else failing is an outage
        (TransientError)."""
        refused: list[str] = []
        for letter in letters:
            sent = False
            for omit_item in (False, True):
                try:
                    wire = dead_letter_wire(
                        letter, self._dead_exchange_name, self._max_body(), omit_item=omit_item
                    )
                    message = amqp_message(wire)
                except MemoryError:
                    raise
                except Exception:  # noqa: BLE001, S112 -- this letter's alone: try it smaller
                    continue
                if await self._send_dead(message, wire.routing_key):
                    sent = True
                    break
            if not sent:
                refused.append(letter.dead_letter_id)
        return refused

    async def _send_dead(self, message: aio_pika.Message, routing_key: str) -> bool:
        """One dead letter sent and confirmed (True), or refused by its size (False)."""
        await self._ensure()
        dead = self._dead_exchange
        if dead is None:
            raise TransientError("rabbitmq: the dead-letter exchange is not declared")
        try:
            confirm = await asyncio.wait_for(
                dead.publish(message, routing_key, mandatory=False), timeout=self._timeout
            )
        except Exception as exc:  # an outage unless the broker named its size limit
            refused_by_size = isinstance(exc, ChannelPreconditionFailed) and bool(
                _MAX_SIZE.search(str(exc))
            )
            self._learn_limit(exc)
            await self._reset()
            if refused_by_size:
                return False
            raise TransientError(f"rabbitmq publish_dead: {exc!r}") from exc
        if not isinstance(confirm, Basic.Ack):
            raise TransientError("rabbitmq: a dead letter was not acknowledged")
        return True

    async def ping(self) -> None:
        """Connect (or reuse the connection) and check it is open and connected: a robust
        connection the broker dropped is not closed, only reconnecting (`connected` clear)."""
        await self._ensure()
        connection = self._connection
        if connection is None or connection.is_closed or not connection.connected.is_set():
            raise TransientError("rabbitmq: not connected")

    async def close(self) -> None:
        """Close the connection."""
        await self._reset()
