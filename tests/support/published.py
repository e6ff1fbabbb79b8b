"""What a running service published, read from a queue the test binds to its exchange.

The queue is not exclusive: it outlives a dropped connection and a restart of the service
(which re-declares the exchange and leaves its bindings), so a test can read one stream
across a restart. It expires by itself if the test never deletes it (`x-expires`).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import orjson

_QUEUE_EXPIRES_MS = 15 * 60 * 1000  # a queue left behind by a killed test run goes by itself


@dataclass
class Published:
    """One consumed message: its routing key and decoded event JSON."""

    routing_key: str
    event: dict[str, Any]


@dataclass
class PublishedStream:
    """Every event consumed so far from one bound queue, in consume order."""

    queue: aio_pika.abc.AbstractQueue
    consumed: list[Published] = field(default_factory=list)

    @classmethod
    async def bind(
        cls, channel: aio_pika.abc.AbstractChannel, exchange: str, key: str = "#"
    ) -> PublishedStream:
        """A fresh queue bound to `exchange` (which must exist: the service declares it)."""
        queue = await channel.declare_queue(
            f"watest.stream.{uuid.uuid4().hex[:12]}",
            durable=False,
            arguments={"x-expires": _QUEUE_EXPIRES_MS},
        )
        await queue.bind(exchange, routing_key=key)
        return cls(queue)

    async def take(self, n: int, timeout_s: float) -> list[Published]:
        """The next n messages (acknowledged), waiting at most timeout_s in total; fewer
        only when time ran out (the caller asserts the count)."""
        got: list[Published] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(got) < n and loop.time() < deadline:
            message = await self.queue.get(fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            await message.ack()
            got.append(Published(message.routing_key or "", orjson.loads(message.body)))
        self.consumed.extend(got)
        return got

    async def drain(self, quiet_s: float, limit: int = 1000) -> list[Published]:
        """Whatever else arrives until nothing has for `quiet_s` (at most `limit`)."""
        extra: list[Published] = []
        while len(extra) < limit and (batch := await self.take(1, timeout_s=quiet_s)):
            extra.extend(batch)
        return extra

    async def delete(self) -> None:
        """Delete the queue (its binding goes with it)."""
        await self.queue.delete(if_unused=False, if_empty=False)
