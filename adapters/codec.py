"""Bytes on the wire and at rest: orjson for speed, pydantic for shape.

Both publishers encode events here, so they accept and reject exactly the same events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from adapters.ports import Rejection
from models.event import NormalizedEvent
from models.event_keys import routing_key, short_string
from models.inbox import InboxItem

MAX_BODY_BYTES = 16 * 1024 * 1024
"""The largest event body published. RabbitMQ refuses a larger message by closing the
channel (its 4.x default `max_message_size` is 16 MiB), which would look like an outage
and be retried forever; such an event is rejected instead, before anything is sent."""

_REASON_CHARS = 300  # of an exception's text, in a rejection's reason


class WireEvent(NamedTuple):
    """An event as both publishers write it: every value here is safe on the wire."""

    routing_key: str
    headers: dict[str, Any]
    body: bytes
    message_id: str  # AMQP short strings: at most 255 bytes
    type: str


def dump_item(item: InboxItem) -> bytes:
    """An inbox item as compact JSON bytes."""
    return orjson.dumps(item.model_dump(mode="json"))


def load_item(data: bytes | str) -> InboxItem:
    """An inbox item from its JSON bytes."""
    return InboxItem.model_validate_json(data)


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
    }


def encode_event(event: NormalizedEvent) -> WireEvent:
    """The event's body, routing key, headers and properties; raises when it has none.

    Raises ValueError for a body over MAX_BODY_BYTES, and whatever pydantic or orjson
    raise for a body that does not serialize (a lone surrogate, an integer beyond 64 bits,
    nesting beyond 255 levels, all possible in a decoded `response_json`).
    """
    body = dump_event(event)
    if len(body) > MAX_BODY_BYTES:
        raise ValueError(f"event body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    return WireEvent(
        routing_key=event.routing_key,
        headers=event_headers(event),
        body=body,
        message_id=short_string(event.event_id),
        type=routing_key(event.category, event.type),
    )


def failure_reason(exc: BaseException) -> str:
    """`<exception type>: <its text>`, bounded: what a rejection or an issue says."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def encode_events(events: Sequence[NormalizedEvent]) -> tuple[list[WireEvent], list[Rejection]]:
    """Every event encoded, or the rejections of those that cannot be (by index)."""
    encoded: list[WireEvent] = []
    rejected: list[Rejection] = []
    for index, event in enumerate(events):
        try:
            encoded.append(encode_event(event))
        except Exception as exc:  # noqa: BLE001 -- any failure to encode is this event's alone
            rejected.append(Rejection(index, failure_reason(exc)))
    return encoded, rejected
