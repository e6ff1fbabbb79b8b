"""Inbox items and normalized events for tests, made through the real normalizer."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from actors.normalize import normalize
from adapters.ports import Inbox
from models.event import NormalizedEvent
from models.inbox import InboxItem, ItemKind


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
