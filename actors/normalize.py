"""Turning one inbox item into one normalized event (the minimum of schema v1).

Total by construction: whatever Meta sent, the result is an event; an item we cannot
make sense of is published as category `unsupported` with the raw item, never dropped.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from models.event import Business, Customer, NormalizedEvent
from models.inbox import InboxItem

# Non-message webhook fields, by the category their events are published under.
FIELD_CATEGORIES: dict[str, str] = {
    "account_update": "account",
    "account_review_update": "account",
    "account_alerts": "account",
    "account_settings_update": "account",
    "business_capability_update": "account",
    "business_status_update": "account",
    "phone_number_quality_update": "account",
    "phone_number_name_update": "account",
    "security": "account",
    "partner_solutions": "account",
    "payment_configuration_update": "account",
    "message_template_status_update": "template",
    "message_template_quality_update": "template",
    "message_template_components_update": "template",
    "template_category_update": "template",
    "template_correct_category_detection": "template",
    "user_preferences": "customer",
    "calls": "call",
    "flows": "flow",
    "smb_message_echoes": "echo",
    "smb_app_state_sync": "sync",
    "history": "sync",
    "automatic_events": "automatic",
    "group_lifecycle_update": "group",
    "group_participants_update": "group",
    "group_settings_update": "group",
    "group_status_update": "group",
}

_TOKEN = re.compile(r"[^a-z0-9_]+")


def routing_token(value: str) -> str:
    """A routing-key segment: lower case, [a-z0-9_] only, never empty."""
    return _TOKEN.sub("_", value.lower()).strip("_") or "unknown"


def content_id(*parts: Any) -> str:
    """A stable id from content, for items that carry no id of their own."""
    digest = hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"h:{digest[:40]}"


def meta_timestamp(value: Any) -> datetime | None:
    """Meta's unix timestamps arrive as strings or integers; anything else is None."""
    if isinstance(value, bool):
        return None
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return None
    if not 0 < seconds < 2**33:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC)


def _customer(item: InboxItem) -> Customer | None:
    raw = item.item if isinstance(item.item, dict) else {}
    contact = item.contact or {}
    profile = contact.get("profile") if isinstance(contact.get("profile"), dict) else {}
    if item.kind == "message":
        wa_id = raw.get("from") or contact.get("wa_id")
        user_id = raw.get("from_user_id") or contact.get("user_id")
    elif item.kind == "status":
        wa_id, user_id = raw.get("recipient_id"), raw.get("recipient_user_id")
    else:
        return None
    name = profile.get("name") if isinstance(profile, dict) else None
    if not (wa_id or user_id or name):
        return None
    return Customer(
        wa_id=str(wa_id) if wa_id else None,
        user_id=str(user_id) if user_id else None,
        name=str(name) if name else None,
    )


def classify(item: InboxItem) -> tuple[str, str, str, datetime | None]:
    """(category, type, event_id, occurred_at) of an inbox item."""
    raw = item.item
    if item.kind in ("message", "status"):
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
            return "unsupported", item.kind, content_id(item.tenant_id, item.kind, raw), None
        occurred = meta_timestamp(raw.get("timestamp"))
        if item.kind == "message":
            kind = raw.get("type")
            msg_type = routing_token(kind) if isinstance(kind, str) else "unknown"
            return "message", msg_type, raw["id"], occurred
        status = raw.get("status")
        status_type = routing_token(status) if isinstance(status, str) else "unknown"
        return "status", status_type, f"{raw['id']}:{status_type}", occurred
    if item.kind == "error":
        return "error", "error", content_id(item.tenant_id, item.phone_number_id, raw), None
    category = FIELD_CATEGORIES.get(item.field, "other")
    occurred = meta_timestamp(raw.get("timestamp")) if isinstance(raw, dict) else None
    return (
        category,
        routing_token(item.field),
        content_id(item.tenant_id, item.field, item.waba_id, raw),
        occurred,
    )


def normalize(item: InboxItem, sequence: int) -> NormalizedEvent:
    """The normalized event of an inbox item, with its conversation sequence number."""
    category, event_type, event_id, occurred = classify(item)
    return NormalizedEvent(
        event_id=event_id,
        tenant_id=item.tenant_id,
        category=category,
        type=event_type,
        conversation_id=item.conversation_id,
        sequence=sequence,
        occurred_at=occurred,
        received_at=item.received_at,
        business=Business(
            waba_id=item.waba_id,
            phone_number_id=item.phone_number_id,
            display_phone_number=item.display_phone_number,
        ),
        customer=_customer(item),
        delivery_id=item.delivery_id,
        data=item.item,
    )
