"""Splitting a webhook body into items: every entry, every change, every item.

Meta batches several entries, changes and items into one POST; the peers' most reported
bug is keeping only the first. Nothing here drops an item: anything that is not a
message, status or error list becomes one `field` item carrying the whole change value.

A change whose business number no tenant owns is kept whole, as one held entry of the
unowned partition (models/routing.py), so that a signed delivery's other items are not
refused with it. What one delivery may store is bounded (models/delivery_size.py): every
item carries its own copy of its change's shared parts (the matching contact, the
metadata), so without bounds a small body could expand into gigabytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from models.delivery_size import DeliveryLimits, DeliverySizer
from models.inbox import InboxItem, ItemKind
from models.parties import NO_CONTACTS, Contacts, customer_of, str_or_none
from models.routing import UNOWNED_PARTITION, conversation_id, conversation_key, partition_of

WHATSAPP_OBJECT = "whatsapp_business_account"
_LISTS: tuple[tuple[str, ItemKind], ...] = (
    ("messages", "message"),
    ("statuses", "status"),
    ("errors", "error"),
)


class EnvelopeError(ValueError):
    """The body is not a WhatsApp webhook envelope at all (answered 400)."""


class UnknownNumberError(LookupError):
    """A phone_number_id / WABA id in the body that no tenant owns (split_delivery only)."""


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """Facts about the POST the items came from."""

    delivery_id: str
    received_at: datetime
    partitions: int
    registry_version: int | None = None  # the tenant registry's, when the body was split


TenantResolver = Callable[[str | None, str | None], str | None]
"""(phone_number_id, waba_id) -> tenant id, or None when nobody owns them."""

Found = tuple[ItemKind, int, Any, dict[str, Any] | None]
"""(kind, index in its list, the raw item, its contact) of one item of a change."""


@dataclass(frozen=True, slots=True)
class Split:
    """A signed delivery split: the items for the shards, and the changes kept aside."""

    items: list[InboxItem] = field(default_factory=list)
    held: list[InboxItem] = field(default_factory=list)  # one per change, UNOWNED_PARTITION
    stored_bytes: int = 0  # the estimate of what they store (0 when not measured)

    @property
    def held_items(self) -> int:
        """How many items the held changes hold."""
        return sum(count_items(entry.item) for entry in self.held)

    @property
    def entries(self) -> list[InboxItem]:
        """Everything to append, in one atomic step: the items, then the held changes."""
        return [*self.items, *self.held]


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~1 us more
class _Change:
    """One change and what it shares with each of its items."""

    position: tuple[int, int]
    field: str
    raw: dict[str, Any]
    waba_id: str | None
    entry_time: int | str | None
    phone_number_id: str | None
    display_phone_number: str | None
    tenant_id: str | None  # None: nobody owns the number

    def shared(self) -> tuple[Any, ...]:
        """The values every item of this change stores a copy of (besides its contact)."""
        return (
            self.field,
            self.waba_id,
            self.entry_time,
            self.phone_number_id,
            self.display_phone_number,
            self.tenant_id or "",
        )


def _field_of(entry: dict[str, Any], change: dict[str, Any]) -> str | None:
    """The change's `field`. Quirk: some of Meta's documented payloads put it on the entry,
    or inside `value`, instead of on the change."""
    value = change.get("value")
    for holder in (change, entry, value if isinstance(value, dict) else {}):
        found = holder.get("field")
        if isinstance(found, str) and found:
            return found
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


def _changes(body: Any, resolve_tenant: TenantResolver) -> list[_Change]:
    """Every change of the body with its shared parts and its tenant, in Meta's order."""
    changes: list[_Change] = []
    for e_idx, entry in enumerate(validate_envelope(body)):
        waba_id = str_or_none(entry.get("id"))
        entry_time = entry.get("time")
        if not isinstance(entry_time, int | str) or isinstance(entry_time, bool):
            entry_time = None
        for c_idx, change in enumerate(entry["changes"]):
            value = change.get("value")
            metadata = value.get("metadata") if isinstance(value, dict) else None
            metadata = metadata if isinstance(metadata, dict) else {}
            phone_number_id = str_or_none(metadata.get("phone_number_id"))
            changes.append(
                _Change(
                    position=(e_idx, c_idx),
                    field=_field_of(entry, change) or "",
                    raw=change,
                    waba_id=waba_id,
                    entry_time=entry_time,
                    phone_number_id=phone_number_id,
                    display_phone_number=str_or_none(metadata.get("display_phone_number")),
                    tenant_id=resolve_tenant(phone_number_id, waba_id),
                )
            )
    return changes


def count_items(change: dict[str, Any]) -> int:
    """How many items a (raw) change splits into, counted without building them."""
    value = change.get("value")
    if not isinstance(value, dict):
        return 1
    count = 0
    for name, _ in _LISTS:
        listed = value.get(name)
        if isinstance(listed, list):
            count += len(listed)
    return count or 1


def _found(change: _Change) -> Iterator[Found]:
    """Every item of the change, in order; a change with no message/status/error list (or
    only empty ones) is one `field` item carrying the whole value."""
    value = change.raw.get("value")
    found = False
    if isinstance(value, dict):
        listed_contacts = value.get("contacts")
        contacts = Contacts(listed_contacts) if listed_contacts else NO_CONTACTS
        for list_name, kind in _LISTS:
            listed = value.get(list_name)
            for i_idx, raw in enumerate(listed if isinstance(listed, list) else ()):
                found = True
                yield kind, i_idx, raw, contacts.describing(kind, raw)
    if not found:
        yield "field", 0, value, None


def _owned(change: _Change, ctx: DeliveryContext, sizer: DeliverySizer | None) -> list[InboxItem]:
    """The items of a change whose number a (verified) tenant owns."""
    tenant_id = change.tenant_id or ""
    shared = sizer.shared(change.shared()) if sizer is not None else 0
    items: list[InboxItem] = []
    for kind, i_idx, raw, contact in _found(change):
        key = conversation_key(
            tenant_id, change.phone_number_id, customer_of(kind, change.field, raw)
        )
        if sizer is not None:
            sizer.charge(shared, key, contact, raw)
        items.append(
            InboxItem(
                tenant_id=tenant_id,
                delivery_id=ctx.delivery_id,
                received_at=ctx.received_at,
                kind=kind,
                field=change.field,
                position=(*change.position, i_idx),
                waba_id=change.waba_id,
                entry_time=change.entry_time,
                phone_number_id=change.phone_number_id,
                display_phone_number=change.display_phone_number,
                conversation_key=key,
                conversation_id=conversation_id(key),
                partition=partition_of(key, ctx.partitions),
                contact=contact,
                item=raw,
                registry_version=ctx.registry_version,
            )
        )
    return items


def _held(
    change: _Change,
    ctx: DeliveryContext,
    sizer: DeliverySizer | None,
    signed_by: tuple[str, ...] = (),
) -> InboxItem:
    """The whole change of a number nobody owns, as one entry of the unowned partition,
    with the ids of the tenants that signed it."""
    key = f"~unowned|{change.phone_number_id or '-'}"
    if sizer is not None:
        sizer.charge(sizer.shared((*change.shared(), signed_by)), key, None, change.raw)
    return InboxItem(
        tenant_id="",
        delivery_id=ctx.delivery_id,
        received_at=ctx.received_at,
        kind="field",
        field=change.field,
        position=(*change.position, 0),
        waba_id=change.waba_id,
        entry_time=change.entry_time,
        phone_number_id=change.phone_number_id,
        display_phone_number=change.display_phone_number,
        conversation_key=key,
        conversation_id=conversation_id(key),
        partition=UNOWNED_PARTITION,
        item=change.raw,
        held="unowned_number",
        signed_by=signed_by,
    )


def split_signed(
    body: Any,
    ctx: DeliveryContext,
    resolve_tenant: TenantResolver,
    limits: DeliveryLimits | None = None,
    body_bytes: int = 0,
    signed_by: frozenset[str] | set[str] = frozenset(),
) -> Split:
    """Every item of a verified body in Meta's order, the changes of numbers nobody owns
    held aside (recording `signed_by`, the tenants whose secret verified the body, sorted);
    within `limits` (TooManyItemsError / DeliveryTooLargeError) when given, checked before
    the items are built. `resolve_tenant` may raise to refuse a number."""
    changes = _changes(body, resolve_tenant)
    sizer = None
    if limits is not None:
        count = sum(count_items(change.raw) for change in changes)
        limits.check_count(count)
        sizer = DeliverySizer(limits, ctx.delivery_id, body_bytes, count)
    signers = tuple(sorted(signed_by))
    items: list[InboxItem] = []
    held: list[InboxItem] = []
    for change in changes:
        if change.tenant_id is None:
            held.append(_held(change, ctx, sizer, signers))
        else:
            items.extend(_owned(change, ctx, sizer))
    return Split(items, held, sizer.stored_bytes if sizer is not None else 0)


def split_delivery(
    body: Any, ctx: DeliveryContext, resolve_tenant: TenantResolver
) -> list[InboxItem]:
    """Every item of a webhook body as inbox items, in the order Meta sent them;
    UnknownNumberError if a number belongs to no tenant (no holding, no limits)."""
    split = split_signed(body, ctx, resolve_tenant)
    if split.held:
        raise UnknownNumberError("the business number is not configured for any tenant")
    return split.items
