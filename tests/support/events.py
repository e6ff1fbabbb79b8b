"""Inbox items and normalized events for tests, made through the real normalizer; and the
checks of a published stream that state events (`conversation.created` / `.updated`,
actors/conversation.py) take part in."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from actors.conversation import CONVERSATION_CATEGORY, conversation_kind
from actors.normalize import normalize
from adapters.ports import Inbox
from models.conversation import ConversationKind
from models.event import NormalizedEvent
from models.inbox import InboxItem, ItemKind

Event = TypeVar("Event", bound=Mapping[str, Any] | NormalizedEvent)


def inbox_item(
    n: int,
    partition: int = 0,
    conversation: str = "c1",
    kind: ItemKind = "message",
    raw: Any = None,
) -> InboxItem:
    """Item n: by default a text message with wamid `wamid.<n>`."""
    if raw is None:
        raw = (
            {
                "from": "16505550001",
                "id": f"wamid.{n}",
                "timestamp": "1750000000",
                "type": "text",
                "text": {"body": f"message {n}"},
            }
            if kind == "message"
            else {
                "id": f"wamid.{n}",
                "status": "read",
                "timestamp": "1750000000",
                "recipient_id": "16505550001",
            }
        )
    return InboxItem(
        tenant_id="acme",
        delivery_id=f"d{n}",
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        kind=kind,
        field="messages",
        position=(0, 0, n),
        phone_number_id="106540352242922",
        conversation_key=conversation,
        conversation_id=conversation,
        partition=partition,
        item=raw,
    )


def event(
    n: int, conversation: str = "c1", kind: ItemKind = "message", sequence: int | None = None
) -> NormalizedEvent:
    """The normalized event of inbox_item(n)."""
    return normalize(inbox_item(n, conversation=conversation, kind=kind)).stamp(sequence or n)


async def store(inbox: Inbox, items: Sequence[InboxItem]) -> None:
    """Append items as one fresh delivery, through the path the ingress uses."""
    (stored,) = await inbox.append_deliveries([(f"d:{uuid.uuid4().hex}", items)])
    assert stored


def is_state_event(event: Mapping[str, Any] | NormalizedEvent) -> bool:
    """A state-manager event (`conversation.created` / `.updated`), not an item's own."""
    category = event.category if isinstance(event, NormalizedEvent) else event["category"]
    return bool(category == CONVERSATION_CATEGORY)


def item_events(events: Iterable[Event]) -> list[Event]:
    """The items' own events of a published stream (event JSON or models), state events
    left out."""
    return [e for e in events if not is_state_event(e)]


def conversation_kinds(items: Iterable[InboxItem]) -> dict[str, ConversationKind]:
    """Each item's conversation id with the kind its key names (customer, group, tenant)."""
    return {item.conversation_id: conversation_kind(item.conversation_key) for item in items}


def check_streams(
    events: Sequence[Mapping[str, Any]], kinds: Mapping[str, ConversationKind]
) -> None:
    """The stream (event JSON, publish order) of conversations new to the store: each
    conversation's sequences are 1..n, state events included; a customer or group
    conversation's first event is its one `conversation.created` (of its own record),
    followed by the event of the item that created it; a tenant conversation has no
    state events. `kinds`: every conversation id published, with its kind."""
    streams: dict[str, list[Mapping[str, Any]]] = {}
    for event in events:
        streams.setdefault(event["conversation_id"], []).append(event)
    assert set(streams) <= set(kinds), set(streams) - set(kinds)
    for cid, stream in streams.items():
        assert [e["sequence"] for e in stream] == list(range(1, len(stream) + 1)), cid
        created = [i for i, e in enumerate(stream) if is_state_event(e) and e["type"] == "created"]
        if kinds[cid] == "tenant":
            assert not any(is_state_event(e) for e in stream), cid
            continue
        assert created == [0], (cid, [(e["category"], e["type"]) for e in stream])
        first = stream[0]
        assert first["data"]["kind"] == "conversation", first
        assert first["data"]["state"]["conversation_id"] == cid, first
        assert first["data"]["state"]["kind"] == kinds[cid], first
        assert len(stream) > 1, cid
        assert not is_state_event(stream[1]), cid
        assert stream[1]["delivery_id"] == first["delivery_id"], cid
        if stream[1]["context"] is not None:  # None only for an event that failed a step
            assert stream[1]["context"]["new"] is True, stream[1]
        later = [e for e in stream[2:] if not is_state_event(e) and e["context"] is not None]
        assert not any(e["context"]["new"] for e in later), cid
