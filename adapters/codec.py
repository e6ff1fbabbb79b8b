"""Bytes on the wire and at rest: orjson for speed, pydantic for shape."""

from __future__ import annotations

from typing import Any

import orjson

from models.event import NormalizedEvent
from models.inbox import InboxItem


def dump_item(item: InboxItem) -> bytes:
    """An inbox item as compact JSON bytes."""
    return orjson.dumps(item.model_dump(mode="json"))


def load_item(data: bytes | str) -> InboxItem:
    """An inbox item from its JSON bytes."""
    return InboxItem.model_validate_json(data)


def dump_event(event: NormalizedEvent) -> bytes:
    """A normalized event as the JSON body consumers receive."""
    return orjson.dumps(event.model_dump(mode="json"))


def event_headers(event: NormalizedEvent) -> dict[str, Any]:
    """The message headers every published event carries."""
    return {
        "event_id": event.event_id,
        "tenant_id": event.tenant_id,
        "conversation_id": event.conversation_id,
        "schema_version": event.schema_version,
        "sequence": event.sequence,
    }
