"""Where the harness reads published events: its own RabbitMQ queue, or the SQLite outbox.

Both start *before* the first POST (the queue is declared and bound, the outbox position
is taken), so nothing published during the run is missed. The callback gets the event
body and the time it was consumed, which is the 'published' time of the report (the
outbox has no publish timestamp; its poll interval bounds the error it adds).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import aio_pika
import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from adapters.outbox import read_outbox

OnEvent = Callable[[dict[str, Any], float], None]


class EventSource(Protocol):
    """A stream of published events."""

    async def start(self, on_event: OnEvent) -> None:
        """Subscribe; events published from now on reach on_event."""
        ...

    async def stop(self) -> None:
        """Unsubscribe and release connections."""
        ...


class RabbitSource:
    """An exclusive, auto-deleted queue bound to the service's topic exchange."""

    def __init__(self, url: str, exchange: str, binding_keys: tuple[str, ...] = ("#",)) -> None:
        self._url = url
        self._exchange = exchange
        self._keys = binding_keys
        self._connection: AbstractRobustConnection | None = None

    async def start(self, on_event: OnEvent) -> None:
        """Declare the exchange as the service does (if absent), then queue, bind, consume."""
        self._connection = await aio_pika.connect_robust(self._url, timeout=10)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=2000)
        try:
            exchange = await channel.get_exchange(self._exchange, ensure=True)
        except aio_pika.exceptions.ChannelClosed:
            # Not declared yet: declare it exactly as adapters.rabbitmq does, so the
            # service's own declaration later is equivalent and succeeds.
            channel = await self._connection.channel()
            await channel.set_qos(prefetch_count=2000)
            unrouted = f"{self._exchange}.unrouted"
            alt = await channel.declare_exchange(
                unrouted, aio_pika.ExchangeType.FANOUT, durable=True
            )
            alt_queue = await channel.declare_queue(unrouted, durable=True)
            await alt_queue.bind(alt)
            exchange = await channel.declare_exchange(
                self._exchange,
                aio_pika.ExchangeType.TOPIC,
                durable=True,
                arguments={"alternate-exchange": unrouted},
            )
        queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        for key in self._keys:
            await queue.bind(exchange, key)

        async def handle(message: AbstractIncomingMessage) -> None:
            on_event(orjson.loads(message.body), time.perf_counter())

        await queue.consume(handle, no_ack=True)

    async def stop(self) -> None:
        """Close the connection (the exclusive queue goes with it)."""
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


class OutboxSource:
    """Tails the embedded publisher's SQLite outbox from its current end."""

    def __init__(self, path: Path, poll_s: float = 0.01, batch: int = 5000) -> None:
        self._path = path
        self._poll_s = poll_s
        self._batch = batch
        self._after = 0
        self._task: asyncio.Task[None] | None = None

    def _end(self) -> int:
        if not self._path.exists():
            return 0
        conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, timeout=30)
        try:
            row = conn.execute("SELECT MAX(seq) FROM outbox").fetchone()
        except sqlite3.OperationalError:  # table not created yet: nothing published
            return 0
        finally:
            conn.close()
        return int(row[0] or 0)

    async def start(self, on_event: OnEvent) -> None:
        """Remember the outbox's end; rows after it are this run's."""
        self._after = await asyncio.to_thread(self._end)
        self._task = asyncio.create_task(self._tail(on_event))

    async def _tail(self, on_event: OnEvent) -> None:
        while True:
            rows = await asyncio.to_thread(
                lambda: list(read_outbox(self._path, after=self._after, limit=self._batch))
            )
            now = time.perf_counter()
            for row in rows:
                self._after = int(row["seq"])
                on_event(row["event"], now)
            if len(rows) < self._batch:
                await asyncio.sleep(self._poll_s)

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
