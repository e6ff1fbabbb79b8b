"""Turning one inbox item into one normalized event (schema v1).

`normalize` makes the event's draft; the shard stamps it with the conversation sequence.
Total by construction: whatever Meta sent, the result is exactly one event. An item that
does not fit its model is published as category `unsupported` with the raw item and the
validation issues, never dropped and never raised. Dispatch is an explicit table from
the item's kind to its handler.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from actors.enrich import build_customer
from actors.normalize_field import category_of, field_customer, field_time, parse_field
from actors.normalize_message import error_info, forwarded, message_data, referral, reply_to
from models.event import (
    Business,
    Customer,
    ErrorEventData,
    EventData,
    Forwarded,
    NormalizedEvent,
    Referral,
    ReplyTo,
    UnknownFieldData,
    UnsupportedData,
    ValidationIssue,
)
from models.event_status import ConversationInfo, PricingInfo, StatusData
from models.inbox import InboxItem, ItemKind
from models.meta.common import Contact
from models.meta.messages import parse_message
from models.meta.statuses import parse_error, parse_status

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


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An item's event before the shard numbers it: what deduplication and quarantine read.

    `stamp` is the event's one validation pass (the shard's per-event CPU is measured, so
    there is no second one). It cannot fail for a draft `normalize` made and a sequence
    >= 1: every part comes from a validating model and is typed as the field it fills;
    the one cast, a field model into `data`, is checked by tests/unit/test_event_draft.py.
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

    def stamp(self, sequence: int, category: str | None = None) -> NormalizedEvent:
        """The published event: this draft numbered `sequence`, under `category` if given."""
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
            business=Business(
                waba_id=item.waba_id,
                phone_number_id=item.phone_number_id,
                display_phone_number=item.display_phone_number,
            ),
            customer=parts.customer,
            group_id=parts.group_id,
            reply_to=parts.reply_to,
            forwarded=parts.forwarded,
            referral=parts.referral,
            data=parts.data,
        )


def _contact(item: InboxItem) -> Contact | None:
    if item.contact is None:
        return None
    try:
        return Contact.model_validate(item.contact)
    except ValidationError:
        # Why not unsupported: the contact only enriches; a malformed one must not cost
        # the customer's message its typed form.
        return None


def _message(item: InboxItem) -> EventParts:
    message = parse_message(item.item)
    category = "message" if item.field == "messages" else category_of(item.field)
    return EventParts(
        category=category,
        type=routing_token(message.type) if message.type else "unknown",
        event_id=message.id,
        occurred_at=message.timestamp,
        data=message_data(message),
        customer=build_customer(message.from_, message.from_user_id, _contact(item)),
        group_id=message.group_id,
        reply_to=reply_to(message),
        forwarded=forwarded(message),
        referral=referral(message),
    )


def _status(item: InboxItem) -> EventParts:
    status = parse_status(item.item)
    state = routing_token(status.status)
    to_group = status.recipient_type == "group"
    conversation = status.conversation
    pricing = status.pricing
    data = StatusData(
        message_id=status.id,
        status=state,
        status_of=status.type or "message",
        recipient_id=None if to_group else status.recipient_id,
        recipient_user_id=status.recipient_user_id,
        recipient_participant_id=status.recipient_participant_id,
        group_id=status.recipient_id if to_group else None,
        conversation=ConversationInfo(
            id=conversation.id,
            origin_type=conversation.origin.type if conversation.origin else None,
            expires_at=conversation.expiration_timestamp,
        )
        if conversation
        else None,
        pricing=PricingInfo.model_validate(
            pricing.model_dump(include=set(PricingInfo.model_fields))
        )
        if pricing
        else None,
        errors=[error_info(e) for e in status.errors],
        biz_opaque_callback_data=status.biz_opaque_callback_data,
    )
    customer = None
    if not to_group:
        customer = build_customer(status.recipient_id, status.recipient_user_id, _contact(item))
    return EventParts(
        category="status" if item.field == "messages" else category_of(item.field),
        type=state if item.field == "messages" else "status",
        event_id=status_event_id(status.id, state, status.recipient_participant_id),
        occurred_at=status.timestamp,
        data=data,
        customer=customer,
        group_id=data.group_id,
    )


def _error(item: InboxItem) -> EventParts:
    error = parse_error(item.item)
    return EventParts(
        category="error",
        type="error",
        event_id=content_id(item.tenant_id, item.phone_number_id, item.entry_time, item.item),
        occurred_at=None,
        data=ErrorEventData(error=error_info(error)),
    )


def _field(item: InboxItem) -> EventParts:
    value = parse_field(item.field, item.item)
    event_id = content_id(item.tenant_id, item.field, item.waba_id, item.entry_time, item.item)
    if isinstance(value, UnknownFieldData):
        return EventParts(category_of(item.field), routing_token(item.field), event_id, None, value)
    return EventParts(
        category=category_of(value.kind),
        type=routing_token(value.kind),
        event_id=event_id,
        occurred_at=field_time(value),
        data=value,  # type: ignore[arg-type]  # every FieldValue subclass is in the union
        customer=field_customer(value),
    )


HANDLERS: dict[ItemKind, Callable[[InboxItem], EventParts]] = {
    "message": _message,
    "status": _status,
    "error": _error,
    "field": _field,
}
"""Item kind -> handler. Each handler raises ValidationError when the item does not fit."""


def _unsupported(item: InboxItem, exc: ValidationError) -> EventParts:
    raw = item.item
    raw_id = raw.get("id") if isinstance(raw, dict) else None
    if item.kind == "message" and isinstance(raw_id, str) and raw_id:
        event_id = raw_id
    elif item.kind == "status" and isinstance(raw_id, str) and raw_id:
        state = raw.get("status")
        participant = raw.get("recipient_participant_id")
        event_id = status_event_id(
            raw_id,
            routing_token(state) if isinstance(state, str) else "unknown",
            participant if isinstance(participant, str) else None,
        )
    else:
        event_id = content_id(
            item.tenant_id, item.kind, item.field, item.waba_id, item.entry_time, raw
        )
    issues = [
        ValidationIssue(
            loc=".".join(str(part) for part in error["loc"]), msg=error["msg"], type=error["type"]
        )
        for error in exc.errors(include_url=False, include_input=False)
    ]
    label = item.field if item.kind == "field" else item.kind
    return EventParts(
        category="unsupported",
        type=routing_token(label),
        event_id=event_id,
        occurred_at=None,
        data=UnsupportedData(item_kind=item.kind, field=item.field, issues=issues, raw=raw),
    )


def normalize(item: InboxItem) -> EventDraft:
    """The event of an inbox item, still without its conversation sequence number.

    Never raises for any item content: what does not fit becomes category `unsupported`.
    """
    try:
        return EventDraft(item, HANDLERS[item.kind](item))
    except ValidationError as exc:
        return EventDraft(item, _unsupported(item, exc))
