"""Splitting a webhook body into items: every entry, every change, every item.

Meta batches several entries, changes and items into one POST; the peers' most reported
bug is keeping only the first. Nothing here drops an item: anything that is not a
message, status or error list becomes one `field` item carrying the whole change value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models.inbox import InboxItem, ItemKind
from models.routing import conversation_id, conversation_key, partition_of

WHATSAPP_OBJECT = "whatsapp_business_account"
_LISTS: tuple[tuple[str, ItemKind], ...] = (
    ("messages", "message"),
    ("statuses", "status"),
    ("errors", "error"),
)


class EnvelopeError(ValueError):
    """The body is not a WhatsApp webhook envelope at all (answered 400)."""


class UnknownNumberError(LookupError):
    """A phone_number_id / WABA id in the body that no tenant owns (answered 403)."""


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """Facts about the POST the items came from."""

    delivery_id: str
    received_at: datetime
    partitions: int


TenantResolver = Callable[[str | None, str | None], str | None]
"""(phone_number_id, waba_id) -> tenant id, or None when nobody owns them."""


def _str_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def customer_of(kind: ItemKind, item: Any) -> str | None:
    """The customer side of a conversation: wa_id first, business-scoped user id second.

    Group messages and group statuses are keyed by the group, which is the conversation.
    """
    if not isinstance(item, dict):
        return None
    if kind == "message":
        if item.get("group_id"):
            return f"group:{item['group_id']}"
        return _str_or_none(item.get("from")) or _str_or_none(item.get("from_user_id"))
    if kind == "status":
        recipient = _str_or_none(item.get("recipient_id"))
        if item.get("recipient_type") == "group" and recipient:
            return f"group:{recipient}"
        return recipient or _str_or_none(item.get("recipient_user_id"))
    return None


def _contact_for(kind: ItemKind, contacts: Any, item: Any) -> dict[str, Any] | None:
    """The `contacts[]` object that describes the sender of a message or the recipient of
    a status (matched on wa_id / user_id; "" is Meta's empty id and matches nothing)."""
    if not isinstance(contacts, list) or not isinstance(item, dict):
        return None
    keys = ("from", "from_user_id") if kind == "message" else ("recipient_id", "recipient_user_id")
    ids = {_str_or_none(item.get(key)) for key in keys} - {None, ""}
    candidates = [c for c in contacts if isinstance(c, dict)]
    for contact in candidates:
        if {_str_or_none(contact.get("wa_id")), _str_or_none(contact.get("user_id"))} & ids:
            return contact
    if kind == "message" and len(candidates) == 1:
        return candidates[0]
    return None


def _field_of(entry: dict[str, Any], change: dict[str, Any]) -> str | None:
    """The change's `field`. Quirk: some of Meta's documented payloads put it on the entry,
    or inside `value`, instead of on the change."""
    value = change.get("value")
    for holder in (change, entry, value if isinstance(value, dict) else {}):
        field = holder.get("field")
        if isinstance(field, str) and field:
            return field
    return None


def validate_envelope(body: Any) -> list[Any]:
    """Return the `entry` list of a WhatsApp webhook body, or raise EnvelopeError.

    Quirk: Meta's documented payloads sometimes omit `object` or put it on the entry; a
    body without it is accepted when its shape is a WhatsApp one, while an `object` that
    names another product (page, instagram, ...) is rejected.
    """
    if not isinstance(body, dict):
        raise EnvelopeError("body must be a JSON object")
    entries = body.get("entry")
    if not isinstance(entries, list) or not entries:
        raise EnvelopeError("'entry' must be a non-empty list")
    objects = [body.get("object")] + [e.get("object") for e in entries if isinstance(e, dict)]
    if any(obj not in (None, WHATSAPP_OBJECT) for obj in objects):
        raise EnvelopeError(f"'object' must be {WHATSAPP_OBJECT!r}")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            raise EnvelopeError("every entry must be an object with a 'changes' list")
        for change in entry["changes"]:
            if not isinstance(change, dict) or _field_of(entry, change) is None:
                raise EnvelopeError("every change must be an object with a string 'field'")
    return entries


def split_delivery(
    body: Any, ctx: DeliveryContext, resolve_tenant: TenantResolver
) -> list[InboxItem]:
    """Every item of a webhook body as inbox items, in the order Meta sent them."""
    items: list[InboxItem] = []
    for e_idx, entry in enumerate(validate_envelope(body)):
        waba_id = _str_or_none(entry.get("id"))
        entry_time = entry.get("time")
        if not isinstance(entry_time, int | str) or isinstance(entry_time, bool):
            entry_time = None
        for c_idx, change in enumerate(entry["changes"]):
            field = _field_of(entry, change) or ""
            value = change.get("value")
            metadata = value.get("metadata") if isinstance(value, dict) else None
            metadata = metadata if isinstance(metadata, dict) else {}
            phone_number_id = _str_or_none(metadata.get("phone_number_id"))
            tenant_id = resolve_tenant(phone_number_id, waba_id)
            if tenant_id is None:
                raise UnknownNumberError("the business number is not configured for any tenant")

            # (kind, index, raw item, contact) for every item of the change, in order;
            # a change with no message/status/error list is one `field` item.
            found: list[tuple[ItemKind, int, Any, dict[str, Any] | None]] = []
            if isinstance(value, dict):
                for list_name, kind in _LISTS:
                    listed = value.get(list_name)
                    if not isinstance(listed, list):
                        continue
                    for i_idx, raw in enumerate(listed):
                        contact = (
                            _contact_for(kind, value.get("contacts"), raw)
                            if kind in ("message", "status")
                            else None
                        )
                        found.append((kind, i_idx, raw, contact))
            if not found:
                found.append(("field", 0, value, None))
            display = _str_or_none(metadata.get("display_phone_number"))
            for kind, i_idx, raw, contact in found:
                key = conversation_key(tenant_id, phone_number_id, customer_of(kind, raw))
                items.append(
                    InboxItem(
                        tenant_id=tenant_id,
                        delivery_id=ctx.delivery_id,
                        received_at=ctx.received_at,
                        kind=kind,
                        field=field,
                        position=(e_idx, c_idx, i_idx),
                        waba_id=waba_id,
                        entry_time=entry_time,
                        phone_number_id=phone_number_id,
                        display_phone_number=display,
                        conversation_key=key,
                        conversation_id=conversation_id(key),
                        partition=partition_of(key, ctx.partitions),
                        contact=contact,
                        item=raw,
                    )
                )
    return items
