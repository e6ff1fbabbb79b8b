"""Who an item is about: the customer side of its conversation, and the `contacts[]` entry
that describes the sender of a message or the recipient of a status."""

from __future__ import annotations

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


def customer_of(kind: ItemKind, item: Any) -> str | None:
    """The customer side of a conversation: wa_id first, business-scoped user id second.

    Group messages and group statuses are keyed by the group, which is the conversation.
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
    return None


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
