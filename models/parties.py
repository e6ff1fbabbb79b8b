"""Who an item is about: the customer side of its conversation, and the `contacts[]` entry
that describes the sender of a message or the recipient of a status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from models.inbox import ItemKind

_CONTACT_IDS: dict[ItemKind, tuple[str, str]] = {
    "message": ("from", "from_user_id"),
    "status": ("recipient_id", "recipient_user_id"),
}


def str_or_none(value: Any) -> str | None:
    """A scalar as text; None for null, objects and arrays."""
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def customer_of(kind: ItemKind, field: str, item: Any) -> str | None:
    """The customer side of a conversation: wa_id first, business-scoped user id second.

    Group messages and group statuses are keyed by the group, which is the conversation.
    A field change (`field` item) joins a conversation only when its field is one of
    `_FIELD_PARTIES` and all of its entries name the same party; any other (several
    customers or groups, malformed, no conversation at all) gives None: the tenant's key.
    """
    if not isinstance(item, dict):
        return None
    if kind == "message":
        if item.get("group_id"):
            return f"group:{item['group_id']}"
        return str_or_none(item.get("from")) or str_or_none(item.get("from_user_id"))
    if kind == "status":
        recipient = str_or_none(item.get("recipient_id"))
        if item.get("recipient_type") == "group" and recipient:
            return f"group:{recipient}"
        return recipient or str_or_none(item.get("recipient_user_id"))
    if kind == "field":
        party = _FIELD_PARTIES.get(field)
        return _one_party(item, *party) if party is not None else None
    return None


def _preference_customer(entry: dict[str, Any]) -> str | None:
    """A `user_preferences[]` entry's customer, keyed like that customer's messages."""
    return str_or_none(entry.get("wa_id")) or str_or_none(entry.get("user_id"))


def _group_party(entry: dict[str, Any]) -> str | None:
    """A `groups[]` entry's group, keyed like that group's messages."""
    group_id = str_or_none(entry.get("group_id"))
    return f"group:{group_id}" if group_id else None


def _one_party(
    value: dict[str, Any], list_name: str, party_of: Callable[[dict[str, Any]], str | None]
) -> str | None:
    """The party every entry of `value[list_name]` names, None unless there is exactly one.

    A change naming two customers (or groups) cannot be ordered with both conversations,
    so it stays on the tenant's key, as does an entry that names nobody or is not an object.
    """
    entries = value.get(list_name)
    if not isinstance(entries, list) or not entries:
        return None
    found: str | None = None
    for entry in entries:
        party = party_of(entry) if isinstance(entry, dict) else None
        if party is None or (found is not None and party != found):
            return None
        found = party
    return found


_FIELD_PARTIES: dict[str, tuple[str, Callable[[dict[str, Any]], str | None]]] = {
    "user_preferences": ("user_preferences", _preference_customer),
    "group_lifecycle_update": ("groups", _group_party),
    "group_participants_update": ("groups", _group_party),
    "group_settings_update": ("groups", _group_party),
    "group_status_update": ("groups", _group_party),
}
"""The fields whose change belongs to one conversation: field -> (the list in its value,
the party one entry names). The conversation state of issue 10 needs them there: a
customer's marketing opt-out is part of the customer's record, a group's participants
part of the group's, and only the shard owning that conversation holds its record."""


def _ids_of(contact: dict[str, Any]) -> tuple[str | None, str | None]:
    return str_or_none(contact.get("wa_id")), str_or_none(contact.get("user_id"))


class Contacts:
    """A change's `contacts[]`, matched to each message's sender or status's recipient.

    Past a few contacts they are indexed once by wa_id and user_id, so each item is matched
    in constant time: scanning the list per item made a signed body of 3,000 messages and
    3,000 contacts (145 KB) take 7.6 s of the event loop. Meta sends one contact per sender,
    so a short list is scanned (cheaper than building the index for one or two items).
    """

    _SCAN_UP_TO = 8

    def __init__(self, contacts: Any) -> None:
        listed = contacts if isinstance(contacts, list) else ()
        self._candidates = [c for c in listed if isinstance(c, dict)]
        self._first: dict[str, int] | None = None
        if len(self._candidates) > self._SCAN_UP_TO:
            self._first = {}
            for index, contact in enumerate(self._candidates):
                for found in _ids_of(contact):
                    if found is not None:
                        self._first.setdefault(found, index)

    def _matching(self, ids: set[str]) -> dict[str, Any] | None:
        if self._first is None:
            for contact in self._candidates:
                if not ids.isdisjoint(_ids_of(contact)):
                    return contact
            return None
        matches = [self._first[i] for i in ids if i in self._first]
        return self._candidates[min(matches)] if matches else None

    def describing(self, kind: ItemKind, item: Any) -> dict[str, Any] | None:
        """The first contact whose wa_id / user_id is the item's sender (message) or
        recipient (status); "" is Meta's empty id and matches nothing. A message with no
        match takes the change's only contact, if there is exactly one."""
        keys = _CONTACT_IDS.get(kind)
        if keys is None or not isinstance(item, dict):
            return None
        ids = {found for key in keys if (found := str_or_none(item.get(key)))}
        matched = self._matching(ids) if ids else None
        if matched is not None:
            return matched
        if kind == "message" and len(self._candidates) == 1:
            return self._candidates[0]
        return None


NO_CONTACTS = Contacts(())
