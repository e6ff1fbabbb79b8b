"""RabbitPublisher without a broker: what fails while sending is an outage, never one
message's rejection (review of issue 9, point 2).

Every check that can fail for one message (encoding, building the message, marshalling its
method and content header frames) runs before anything is sent, so an exception raised
while sending cannot be pinned on one message: the batch is retried as a unit, every
event as it was. A rejection comes only from those checks, so it is the same on every try.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from aio_pika.abc import AbstractExchange, AbstractMessage
from aiormq.exceptions import ChannelInvalidStateError, DeliveryError
from pamqp.commands import Basic

from actors.shard import ConversationShard
from actors.shard_metrics import ShardStats
from adapters.codec import (
    MAX_HEADER_FRAME_BYTES,
    amqp_properties,
    check_amqp_frames,
    encode_event,
)
from adapters.errors import TransientError
from adapters.rabbitmq import RabbitPublisher, amqp_message
from tests.support.configs import shard_config, sqlite_inbox
from tests.support.events import event, inbox_item, store
from tests.support.shards import drain

Sent = tuple[str, int, str | None]  # event_id header, sequence header, AMQP type


class FakeExchange:
    """Records what is sent; `fail(headers)` returns the exception a send raises, if any."""

    def __init__(self, fail: Any = None) -> None:
        self.fail = fail
        self.calls = 0
        self.wire: list[Sent] = []

    async def publish(
        self, message: AbstractMessage, routing_key: str, mandatory: bool = False
    ) -> Basic.Ack:
        self.calls += 1
        headers = message.headers
        error = self.fail(headers) if self.fail is not None else None
        if error is not None:
            raise error
        self.wire.append((str(headers["event_id"]), cast(int, headers["sequence"]), message.type))
        return Basic.Ack()


class FakeBrokerPublisher(RabbitPublisher):
    """RabbitPublisher on a FakeExchange instead of a connection."""

    def __init__(self, exchange: FakeExchange) -> None:
        super().__init__("amqp://unused", "whatsapp.events", confirm_timeout_s=5.0)
        self.fake = exchange

    async def _ensure(self) -> AbstractExchange:
        return cast(AbstractExchange, self.fake)


def failing_first(calls: int, error: BaseException) -> Any:
    """A send failure on the first `calls` sends, then none."""
    count = 0

    def fail(_headers: Any) -> BaseException | None:
        nonlocal count
        count += 1
        return error if count <= calls else None

    return fail


SEND_ERRORS = {
    "closed_writer_runtime_error": RuntimeError("writer is closed"),
    "channel_invalid_state": ChannelInvalidStateError("channel closed"),
    "unexpected_key_error": KeyError(7),
    "unexpected_value_error": ValueError("frame could not be built"),
    "memory_error": MemoryError(),
    "send_cancelled_under_us": asyncio.CancelledError(),
}


@pytest.mark.parametrize("error", SEND_ERRORS.values(), ids=SEND_ERRORS.keys())
async def test_an_exception_on_every_send_is_an_outage_and_the_batch_is_retried_as_it_was(
    error: BaseException,
) -> None:
    """Three sends fail (a dying connection), then the broker is fine: the first publish
    raises TransientError with no rejection, the retry sends the three events unchanged."""
    exchange = FakeExchange(failing_first(3, error))
    publisher = FakeBrokerPublisher(exchange)
    events = [event(n) for n in (1, 2, 3)]
    with pytest.raises(TransientError):
        await publisher.publish(events)
    assert await publisher.publish(events) == []
    assert exchange.wire == [(f"wamid.{n}", n, "message.text") for n in (1, 2, 3)]


async def test_a_send_failure_of_one_message_retries_the_batch_and_rejects_nothing() -> None:
    """The second send fails once: not that event's rejection (which would republish the
    confirmed ones around an `unsupported` one) but an outage; the retry sends 1, 2, 3."""
    fired: list[int] = []

    def fail(headers: Any) -> BaseException | None:
        if headers["event_id"] == "wamid.2" and not fired:
            fired.append(1)
            return ValueError("one send failed")
        return None

    exchange = FakeExchange(fail)
    publisher = FakeBrokerPublisher(exchange)
    events = [event(n) for n in (1, 2, 3)]
    with pytest.raises(TransientError):
        await publisher.publish(events)
    exchange.wire.clear()
    assert await publisher.publish(events) == []
    assert exchange.wire == [(f"wamid.{n}", n, "message.text") for n in (1, 2, 3)]


@pytest.mark.parametrize(
    "error", [RuntimeError("writer is closed"), KeyError(7)], ids=["runtime_error", "key_error"]
)
async def test_a_shard_never_turns_good_events_into_unsupported_on_a_send_failure(
    tmp_path: Path, error: BaseException
) -> None:
    """Through the shard: the outage keeps the batch in hand, nothing is rejected, and
    once the broker answers every event is published as the message it is."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    down = [True]
    exchange = FakeExchange(lambda _headers: error if down else None)  # every send fails
    stats = ShardStats()
    await store(inbox, [inbox_item(n) for n in (1, 2, 3)])
    config = shard_config(block_ms=10, max_item_age_s=None)
    shard = ConversationShard(config, inbox, FakeBrokerPublisher(exchange), stats)
    with pytest.raises(TransientError):
        await shard.run_once()
    down.clear()
    await drain(shard)
    # c1 is new: its `conversation.created` takes sequence 1, the messages 2, 3, 4.
    assert [(sequence, kind) for _, sequence, kind in exchange.wire[:1]] == [
        (1, "conversation.created")
    ]
    assert exchange.wire[1:] == [(f"wamid.{n}", n + 1, "message.text") for n in (1, 2, 3)]
    assert stats.rejected == 0
    assert await inbox.backlog(0) == 0
    await inbox.close()


async def test_a_message_whose_frames_cannot_be_marshalled_is_rejected_before_any_send() -> None:
    """A header integer beyond AMQP's 64-bit signed range encodes as JSON but not as an
    AMQP frame: rejected by index, the same on every try, and nothing of its batch sent."""
    exchange = FakeExchange()
    publisher = FakeBrokerPublisher(exchange)
    bad = event(2).model_copy(update={"sequence": 2**63})
    batch = [event(1), bad, event(3)]
    first = await publisher.publish(batch)
    assert [r.index for r in first] == [1]
    assert await publisher.publish(batch) == first
    assert exchange.calls == 0


async def test_a_nack_is_an_outage_not_a_rejection() -> None:
    """The broker nacking one event fails the batch (retried as a unit), rejects nothing."""

    def fail(headers: Any) -> BaseException | None:
        return DeliveryError(None, Basic.Nack()) if headers["event_id"] == "wamid.2" else None

    publisher = FakeBrokerPublisher(FakeExchange(fail))
    with pytest.raises(TransientError):
        await publisher.publish([event(n) for n in (1, 2, 3)])


def test_the_message_sent_has_the_properties_whose_frames_were_checked() -> None:
    """The codec marshals amqp_properties(wire); aio-pika's message carries equal ones, so
    the publisher marshals each event's frames once (a difference would be marshalled)."""
    for n in (1, 2):
        wire = encode_event(event(n))
        assert amqp_message(wire).properties == amqp_properties(wire)


def test_a_content_header_frame_over_amqps_minimum_frame_size_is_refused() -> None:
    """A header frame cannot be split; one over the negotiated frame_max makes the broker
    close the connection, so the check refuses one over 4096 bytes before any send."""
    wire = encode_event(event(1))
    properties = amqp_properties(wire)
    properties.headers = {**wire.headers, "big": "x" * MAX_HEADER_FRAME_BYTES}
    with pytest.raises(ValueError, match="content header frame"):
        check_amqp_frames("whatsapp.events", wire, properties)
