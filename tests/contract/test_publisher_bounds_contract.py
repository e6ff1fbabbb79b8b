"""One suite, both Publisher adapters: values from the body never break a publish (issue 9,
point 2). Routing keys, AMQP properties and headers are short strings (255 bytes) built
from body data; an over-long or odd value is bounded, and an event that cannot be encoded
is that event's rejection, never the batch's exception."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest

from adapters.outbox import OutboxPublisher, read_outbox
from adapters.ports import Publisher
from models.event import NormalizedEvent
from models.event_message import FlowReplyData, TextData
from tests.conftest import RABBITMQ_URL
from tests.support.configs import rabbit_publisher
from tests.support.events import event

Consumed = list[dict[str, Any]]  # per message: routing_key, headers, body, properties
_SEGMENT = re.compile(r"[a-z0-9_-]+")
BROKER_MAX_BODY = 16 * 1024 * 1024  # RabbitMQ 4's default max_message_size


class Harness:
    """A publisher plus a way to read back the next `n` messages it published."""

    def __init__(self, publisher: Publisher, consume: Callable[[int], Awaitable[Consumed]]) -> None:
        self.publisher = publisher
        self.consume = consume


async def _outbox(tmp_path: Path) -> AsyncIterator[Harness]:
    path = tmp_path / "outbox.db"
    publisher = OutboxPublisher(path)
    read = 0

    async def consume(n: int) -> Consumed:
        nonlocal read
        rows = list(read_outbox(path, after=read, limit=n))
        read = rows[-1]["seq"] if rows else read
        return [
            {"routing_key": r["routing_key"], "headers": r["headers"], "body": r["event"]}
            for r in rows
        ]

    yield Harness(publisher, consume)
    await publisher.close()


async def _rabbitmq(exchange: str) -> AsyncIterator[Harness]:
    publisher = rabbit_publisher(exchange)
    await publisher.ping()  # declares the exchange before the test queue binds to it
    connection = await aio_pika.connect(RABBITMQ_URL)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key="#")

    async def consume(n: int) -> Consumed:
        got: Consumed = []
        async with queue.iterator(timeout=5) as messages:
            async for message in messages:
                async with message.process():
                    got.append(
                        {
                            "routing_key": message.routing_key or "",
                            "headers": dict(message.headers),
                            "body": orjson.loads(message.body),
                            "message_id": message.message_id,
                            "type": message.type,
                        }
                    )
                if len(got) >= n:
                    break
        return got

    yield Harness(publisher, consume)
    await publisher.close()
    await connection.close()


@pytest.fixture(params=["outbox", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    if request.param == "outbox":
        backend = _outbox(tmp_path)
    else:
        backend = _rabbitmq(request.getfixturevalue("exchange_name"))
    yield await anext(backend)
    await anext(backend, None)


def odd(n: int, **fields: Any) -> NormalizedEvent:
    """event(n) with body-derived fields replaced (not re-validated: any str goes)."""
    return event(n).model_copy(update=fields)


ODD_EVENTS = [
    odd(1, type="x" * 300),  # the routing key alone would be > 255 bytes
    odd(2, type="x" * 299 + "y"),  # bounded differently from the one above
    odd(3, event_id="wamid." + "é" * 200),  # 406 bytes: message_id and the header
    odd(4, tenant_id="acme.eu#*", type="a.b*#"),  # would add segments and wildcards
    odd(5, tenant_id="ÄCME", type="\x00\x1f\n\x7f"),  # non-ASCII, control characters
    odd(6, event_id="x" * 70_000),  # a header value that alone nears AMQP's frame size
]


def _short(value: Any) -> bool:
    return isinstance(value, str) and len(value.encode()) <= 255


async def test_body_values_are_bounded_in_routing_keys_and_headers(harness: Harness) -> None:
    """Every event is published, in order; each key is three segments of [a-z0-9_-]
    within 255 bytes, distinct values stay distinct, headers are short strings or
    integers, and the body keeps every full value."""
    assert await harness.publisher.publish(ODD_EVENTS) == []
    got = await harness.consume(len(ODD_EVENTS))
    assert [m["body"]["event_id"] for m in got] == [e.event_id for e in ODD_EVENTS]
    assert [m["body"]["type"] for m in got] == [e.type for e in ODD_EVENTS]
    keys = [m["routing_key"] for m in got]
    for key in keys:
        segments = key.split(".")
        assert len(key.encode()) <= 255
        assert len(segments) == 3
        assert all(_SEGMENT.fullmatch(s) for s in segments), key
    assert keys[0] != keys[1]
    for message in got:
        assert all(isinstance(v, int) or _short(v) for v in message["headers"].values())
    assert got[0]["headers"]["event_id"] == "wamid.1"  # a short value is kept as it is


@pytest.mark.rabbitmq
async def test_amqp_properties_are_bounded_short_strings(exchange_name: str) -> None:
    """`message_id` and `type` are AMQP short strings: bounded, short values unchanged."""
    backend = _rabbitmq(exchange_name)
    harness = await anext(backend)
    assert await harness.publisher.publish(ODD_EVENTS) == []
    got = await harness.consume(len(ODD_EVENTS))
    assert all(_short(m["message_id"]) and _short(m["type"]) for m in got)
    assert got[3]["message_id"] == "wamid.4"
    assert got[2]["message_id"] != got[5]["message_id"]
    await anext(backend, None)


UNENCODABLE = {
    "lone_surrogate": odd(2, data=FlowReplyData(response={"a": "\ud800"})),
    "integer_beyond_64_bits": odd(2, data=FlowReplyData(response={"n": 2**70})),
    "body_over_the_limit": odd(2, data=TextData(body="x" * BROKER_MAX_BODY)),
    # JSON takes an unsigned 64-bit integer; an AMQP header integer is signed: the content
    # header frame cannot be marshalled, which the publisher must find before sending.
    "header_integer_beyond_63_bits": odd(2, sequence=2**63),
}


@pytest.mark.parametrize("bad", UNENCODABLE.values(), ids=UNENCODABLE.keys())
async def test_an_event_that_cannot_be_encoded_is_rejected_and_its_batch_not_sent(
    harness: Harness, bad: NormalizedEvent
) -> None:
    """The bad event is reported by index with a reason, nothing of its batch is sent
    (so the caller can replace it in place), and the publisher keeps working."""
    rejected = await harness.publisher.publish([event(1), bad, event(3)])
    assert [r.index for r in rejected] == [1]
    assert rejected[0].reason
    assert await harness.publisher.publish([event(4)]) == []
    (first,) = await harness.consume(1)
    assert first["body"]["event_id"] == "wamid.4"
