"""Non-message fields to schema v1: category, typed data, and who the event is about."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from actors.enrich import build_customer
from models.event import Customer, UnknownFieldData
from models.meta.common import Contact, FieldValue
from models.meta.fields import FIELD_CATEGORIES, model_for
from models.meta.fields_activity import Calls, UserPreferences


def category_of(field: str) -> str:
    """The event category of a webhook field (`other` for a field we do not know)."""
    return FIELD_CATEGORIES.get(field, "other")


def parse_field(field: str, value: Any) -> FieldValue | UnknownFieldData:
    """The typed value of a field, or `unknown_field` data keeping the raw value.

    Raises pydantic.ValidationError when a known field's value does not fit its model.
    """
    model = model_for(field, value)
    if model is None:
        return UnknownFieldData(field=field, raw=value)
    return model.model_validate(value)


def field_time(value: FieldValue) -> datetime | None:
    """When it happened: the first item's timestamp of the model's `timed_list` (fields
    carry no other time); None for a field without one."""
    items = getattr(value, value.timed_list, None) if value.timed_list else None
    if items:
        stamp = getattr(items[0], "timestamp", None)
        if isinstance(stamp, datetime):
            return stamp
    return None


def _one(contacts: tuple[Contact, ...]) -> Contact | None:
    return contacts[0] if len(contacts) == 1 else None


def field_customer(value: FieldValue) -> Customer | None:
    """The customer of a call or preference change that concerns exactly one customer."""
    if isinstance(value, Calls) and len(value.calls) == 1:
        call = value.calls[0]
        if (call.direction or "").upper() == "BUSINESS_INITIATED":
            return build_customer(call.to, call.to_user_id, _one(value.contacts))
        return build_customer(call.from_, call.from_user_id, _one(value.contacts))
    if isinstance(value, UserPreferences) and len(value.user_preferences) == 1:
        pref = value.user_preferences[0]
        return build_customer(pref.wa_id, pref.user_id, _one(value.contacts))
    return None
