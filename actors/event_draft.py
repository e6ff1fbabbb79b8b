"""An item's event before the shard numbers it, and the ids every handler shares.

`normalize` (actors/normalize.py) makes an EventDraft from a handler's EventParts; the
shard dedupes and quarantines on the draft, then stamps it with the sequence.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from models.conversation import ConversationContext
from models.event import (
    Business,
    Customer,
    EventData,
    Forwarded,
    NormalizedEvent,
    Referral,
    ReplyTo,
)
from models.inbox import InboxItem

_TOKEN = re.compile(r"[^a-z0-9_]+")


def routing_token(value: str) -> str:
    """A routing-key segment: lower case, [a-z0-9_] only, never empty."""
    return _TOKEN.sub("_", value.lower()).strip("_") or "unknown"


def content_id(*parts: Any) -> str:
    """A stable id from content, for items that carry no id of their own."""
    digest = hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"h:{digest[:40]}"


def status_event_id(wamid: str, state: str, participant: str | None) -> str:
    """`<wamid>:<state>`; a group message has one status per participant, who is then
    part of the key (`<wamid>:<state>:<participant>`)."""
    return f"{wamid}:{state}:{participant}" if participant else f"{wamid}:{state}"


def business_of(item: InboxItem) -> Business:
    """The business account and number an item was sent to or from."""
    return Business(
        waba_id=item.waba_id,
        phone_number_id=item.phone_number_id,
        display_phone_number=item.display_phone_number,
    )


@dataclass(frozen=True, slots=True)
class EventParts:
    """What a handler decides about an item; the item itself supplies the envelope facts."""

    category: str
    type: str
    event_id: str
    occurred_at: datetime | None
    data: EventData
    customer: Customer | None = None
    group_id: str | None = None
    reply_to: ReplyTo | None = None
    forwarded: Forwarded | None = None
    referral: Referral | None = None
    # Not published: the error a step raised on this item (its event is then
    # `unsupported`), for the shard's count and log line.
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An item's event before the shard numbers it: what deduplication and quarantine read.

    `stamp` is the event's one validation pass (the shard's per-event CPU is measured, so
    there is no second one). It should not fail for a draft `normalize` made and a
    sequence >= 1: every part comes from a validating model and is typed as the field it
    fills; the one cast, a field model into `data`, is checked by
    tests/unit/test_event_draft.py. The shard still guards it per item.
    """

    item: InboxItem
    parts: EventParts

    @property
    def tenant_id(self) -> str:
        """The tenant the item belongs to."""
        return self.item.tenant_id

    @property
    def event_id(self) -> str:
        """The consumers' idempotency key."""
        return self.parts.event_id

    @property
    def occurred_at(self) -> datetime | None:
        """When it happened by Meta's clock, if Meta said."""
        return self.parts.occurred_at

    def stamp(
        self,
        sequence: int,
        category: str | None = None,
        *,
        context: ConversationContext | None = None,
        late: bool = False,
        reply_to: ReplyTo | None = None,
        data: EventData | None = None,
    ) -> NormalizedEvent:
        """The published event: this draft numbered `sequence`, under `category` if given,
        with what its conversation added (actors/conversation.py): the context, `late`,
        and the reply or status data resolved against the conversation."""
        item, parts = self.item, self.parts
        return NormalizedEvent(
            event_id=parts.event_id,
            tenant_id=item.tenant_id,
            category=parts.category if category is None else category,
            type=parts.type,
            conversation_id=item.conversation_id,
            sequence=sequence,
            occurred_at=parts.occurred_at,
            received_at=item.received_at,
            delivery_id=item.delivery_id,
            business=business_of(item),
            customer=parts.customer,
            group_id=parts.group_id,
            reply_to=parts.reply_to if reply_to is None else reply_to,
            forwarded=parts.forwarded,
            referral=parts.referral,
            context=context,
            late=late,
            replayed=item.replayed,
            data=parts.data if data is None else data,
        )
