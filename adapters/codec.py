"""Bytes on the wire and at rest: orjson for speed, pydantic for shape.

Both publishers encode events here, so they accept and reject exactly the same events;
both inbox adapters store items and conversation and message records in the encodings
defined here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson
import pamqp.frame
from pamqp import commands
from pamqp.constants import FRAME_MIN_SIZE
from pamqp.header import ContentHeader

from adapters.ports import Rejection, Routes
from models.conversation import ConversationRecord, MessageRecord
from models.dead_letter import DeadLetter
from models.event import NormalizedEvent
from models.event_keys import routing_key, short_string
from models.inbox import InboxItem
from models.tenant import RoutingRule

MAX_BODY_BYTES = 16 * 1024 * 1024
"""The largest event body published. RabbitMQ refuses a larger message by closing the
channel (its 4.x default `max_message_size` is 16 MiB), which would look like an outage
and be retried forever; such an event is rejected instead, before anything is sent."""

_REASON_CHARS = 300  # of an exception's text, in a rejection's reason

CONTENT_TYPE = "application/json"
PERSISTENT = 2  # AMQP delivery mode

MAX_HEADER_FRAME_BYTES = FRAME_MIN_SIZE
"""The largest content header frame (properties and headers) published. A header frame
cannot be split, and one over the connection's negotiated frame_max makes the broker
close the connection, which would look like an outage; AMQP's minimum frame_max (4096)
is accepted by every broker. Bounded headers are far below it (about 1 KiB)."""


class WireEvent(NamedTuple):
    """An event as both publishers write it: every value here is safe on the wire."""

    routing_key: str
    headers: dict[str, Any]
    body: bytes
    message_id: str  # AMQP short strings: at most 255 bytes
    type: str
    # The tenant's routing rule's exchange and vhost (None: the service's).
    exchange: str | None = None
    vhost: str | None = None


def dump_item(item: InboxItem) -> bytes:
    """An inbox item as compact JSON bytes."""
    return orjson.dumps(item.model_dump(mode="json"))


def load_item(data: bytes | str) -> InboxItem:
    """An inbox item from its JSON bytes."""
    return InboxItem.model_validate_json(data)


def dump_conversation(record: ConversationRecord) -> bytes:
    """A conversation record as compact JSON bytes: fields at their default are left out
    (every commit rewrites the record, so its size is paid per write and per byte at rest;
    docs/redis.md), except the version `v`, so a later default cannot reinterpret it."""
    return orjson.dumps({"v": record.v, **record.model_dump(mode="json", exclude_defaults=True)})


def load_conversation(data: bytes | str) -> ConversationRecord:
    """A conversation record from its JSON bytes (datetimes, tuples and all)."""
    return ConversationRecord.model_validate_json(data)


def dump_message(record: MessageRecord) -> bytes:
    """A message record as compact JSON bytes, fields at their default left out."""
    return orjson.dumps(record.model_dump(mode="json", exclude_defaults=True))


def load_message(data: bytes | str) -> MessageRecord:
    """A message record from its JSON bytes."""
    return MessageRecord.model_validate_json(data)


def dump_dead_letter(letter: DeadLetter) -> bytes:
    """A dead letter as the JSON both the failed store and the dead-letter exchange hold."""
    return orjson.dumps(letter.model_dump(mode="json"))


def load_dead_letter(data: bytes | str) -> DeadLetter:
    """A dead letter from its JSON bytes."""
    return DeadLetter.model_validate_json(data)


def dead_letter_wire(
    letter: DeadLetter,
    exchange: str = "",
    max_body: int = MAX_BODY_BYTES,
    *,
    omit_item: bool = False,
) -> WireEvent:
    """A dead letter as published to the dead-letter exchange: key
    `<tenant>.dead.<category>.<type>` (segments bounded like an event's), the dead letter's
    id as message id, the same headers as an event plus `dead_letter_id` and `step`.

    `omit_item`: the body without the raw item (`"item": null, "item_omitted": true`), for
    a letter too large for the broker (the raw item is what made the event too large);
    the failed store keeps it whole. Raises what `encode_event` raises for a message that
    cannot be sent: the caller tries it without the item, then counts it as refused.
    """
    if omit_item:
        body = orjson.dumps({**letter.model_dump(mode="json"), "item": None, "item_omitted": True})
    else:
        body = dump_dead_letter(letter)
    if len(body) > max_body:
        raise ValueError(f"dead letter of {len(body)} bytes exceeds {max_body}")
    wire = WireEvent(
        routing_key=routing_key(letter.tenant_id, "dead", letter.category, letter.type),
        headers={
            "dead_letter_id": short_string(letter.dead_letter_id),
            "event_id": short_string(letter.event_id),
            "tenant_id": short_string(letter.tenant_id),
            "conversation_id": short_string(letter.conversation_id),
            "step": letter.step,
            "attempts": len(letter.attempts),
        },
        body=body,
        message_id=short_string(letter.dead_letter_id),
        type=routing_key("dead", letter.category, letter.type),
    )
    check_amqp_frames(exchange, wire, amqp_properties(wire))
    return wire


def dump_event(event: NormalizedEvent) -> bytes:
    """A normalized event as the JSON body consumers receive (raises if it cannot be)."""
    return orjson.dumps(event.model_dump(mode="json"))


def event_headers(event: NormalizedEvent) -> dict[str, Any]:
    """The message headers every published event carries: short strings and integers.

    The ids are bounded like `message_id` (models/event_keys.py): a header value is part
    of the content header frame, and one near AMQP's frame size (128 KiB) makes RabbitMQ
    close the connection, which would look like an outage.
    """
    return {
        "event_id": short_string(event.event_id),
        "tenant_id": short_string(event.tenant_id),
        "conversation_id": short_string(event.conversation_id),
        "schema_version": event.schema_version,
        "sequence": event.sequence,
        **({"replayed": True} if event.replayed else {}),
    }


def encode_event(
    event: NormalizedEvent,
    exchange: str = "",
    max_body: int = MAX_BODY_BYTES,
    route: RoutingRule | None = None,
) -> WireEvent:
    """The event's body, routing key, headers and properties; raises when it has none.

    Raises ValueError for a body over MAX_BODY_BYTES, and whatever pydantic or orjson
    raise for a body that does not serialize (a lone surrogate, an integer beyond 64 bits,
    nesting beyond 255 levels, all possible in a decoded `response_json`); then whatever
    marshalling its AMQP frames raises (check_amqp_frames), so that nothing that fails for
    this event alone can fail later, while it is sent.

    `route`: the tenant's routing rule: its prefix goes in front of the routing key
    (`<prefix>.<tenant>.<category>.<type>`), its exchange and vhost are the wire's.
    """
    body = dump_event(event)
    if len(body) > max_body:
        raise ValueError(f"event body of {len(body)} bytes exceeds {max_body}")
    key = event.routing_key
    if route is not None and route.routing_key_prefix:
        key = f"{route.routing_key_prefix}.{key}"
    wire = WireEvent(
        routing_key=key,
        headers=event_headers(event),
        body=body,
        message_id=short_string(event.event_id),
        type=routing_key(event.category, event.type),
        exchange=route.exchange if route is not None else None,
        vhost=route.vhost if route is not None else None,
    )
    check_amqp_frames(wire.exchange or exchange, wire, amqp_properties(wire))
    return wire


def amqp_properties(wire: WireEvent) -> commands.Basic.Properties:
    """The AMQP properties RabbitPublisher's message carries (aio-pika builds the same
    from the same values at send time; tests/unit/test_rabbit_send_outcome.py checks it)."""
    return commands.Basic.Properties(
        content_type=CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        headers=wire.headers,
        message_id=wire.message_id,
        message_type=wire.type,
        priority=0,
    )


def check_amqp_frames(
    exchange: str, wire: WireEvent, properties: commands.Basic.Properties
) -> None:
    """Marshal the event's Basic.Publish method frame and its content header frame as
    aiormq does when it sends them; raises what that raises (a header value AMQP cannot
    encode, a short string over 255 bytes), or ValueError for a header frame over
    MAX_HEADER_FRAME_BYTES. The body frames are the body's bytes cut to the frame size,
    which cannot fail, so they are not built here."""
    if len(wire.routing_key) > 255:  # aiormq's own check, before it builds the frames
        raise ValueError("routing key too long (max 255 bytes)")
    publish = commands.Basic.Publish(exchange=exchange, routing_key=wire.routing_key)
    pamqp.frame.marshal(publish, 1)
    header = pamqp.frame.marshal(ContentHeader(0, len(wire.body), properties), 1)
    if len(header) > MAX_HEADER_FRAME_BYTES:
        raise ValueError(
            f"content header frame of {len(header)} bytes exceeds {MAX_HEADER_FRAME_BYTES}"
        )


def failure_reason(exc: BaseException) -> str:
    """`<exception type>: <its text>`, bounded: what a rejection or an issue says."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def encode_events(
    events: Sequence[NormalizedEvent],
    exchange: str = "",
    max_body: int = MAX_BODY_BYTES,
    routes: Routes | None = None,
) -> tuple[list[WireEvent], list[Rejection]]:
    """Every event encoded (under its tenant's routing rule, `routes`), or the rejections
    of those that cannot be (by index).

    Deterministic: the same events are rejected with the same reasons on every call. A
    MemoryError is not the event's fault (the next try may have the memory): it is raised,
    and the caller retries the batch.
    """
    encoded: list[WireEvent] = []
    rejected: list[Rejection] = []
    for index, event in enumerate(events):
        route = routes(event.tenant_id) if routes is not None else None  # not the event's
        try:
            encoded.append(encode_event(event, exchange, max_body, route))
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 -- any failure to encode is this event's alone
            rejected.append(Rejection(index, failure_reason(exc)))
    return encoded, rejected
