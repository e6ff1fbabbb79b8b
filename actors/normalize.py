"""Turning one inbox item into one normalized event (schema v1).

`normalize` makes the event's draft; the shard stamps it with the conversation sequence.
Total by construction: whatever Meta sent, the result is exactly one event. An item that
does not fit its model is published as category `unsupported` with the raw item and the
validation issues, never dropped and never raised. Dispatch is an explicit table from
the item's kind to its handler.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

from actors.enrich import build_customer
from actors.event_draft import EventDraft, EventParts, content_id, routing_token, status_event_id
from actors.normalize_field import category_of, field_customer, field_time, parse_field
from actors.normalize_message import error_info, forwarded, message_data, referral, reply_to
from actors.unsupported import failed_parts, unsupported_parts, validation_issues
from models.event import ErrorEventData, UnknownFieldData
from models.event_status import ConversationInfo, PricingInfo, StatusData
from models.inbox import InboxItem, ItemKind
from models.meta.common import Contact
from models.meta.messages import parse_message
from models.meta.statuses import parse_error, parse_status

__all__ = ["HANDLERS", "EventDraft", "EventParts", "normalize", "routing_token"]


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


def normalize(item: InboxItem) -> EventDraft:
    """The event of an inbox item, still without its conversation sequence number.

    Never raises for any item content: what does not fit becomes category `unsupported`
    with the validation issues; an item on which a handler raises anything else (a
    poison item: e.g. a `response_json` nested too deep for the JSON decoder, which
    raises RecursionError, not ValueError, and does so every time) becomes `unsupported`
    with that error. MemoryError is raised: it says nothing about the item, and the shard
    retries the batch.
    """
    try:
        return EventDraft(item, HANDLERS[item.kind](item))
    except ValidationError as exc:
        return EventDraft(item, unsupported_parts(item, validation_issues(exc)))
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 -- a poison item must not stop its partition
        return EventDraft(item, failed_parts(item, "normalize", exc))
