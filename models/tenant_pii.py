"""A tenant's PII rule applied to what leaves the service: published events and the admin
API's answers (docs/tenants.md "Processing rules").

Pure functions. The state store keeps every value in clear (conversations are found by
clear wa_id, statuses are matched to messages): masking happens on the way out, after
sequencing, so masked and clear events carry the same ids and sequences.

Two passes over an event. The first walks every model, list and dict (the `raw` of
unknown and unsupported items included) and replaces the values of the members that hold
a customer's or participant's number (PHONE_KEYS; `participants` lists) with
`Tenant.hash_phone`, and of those that hold a person's name (NAME_KEYS; `name` inside a
customer, a profile or a contact card) with MASK. The second replaces every clear value
the first found wherever else it appears inside a string (a text body quoting the number,
an unknown item's free text), so that no clear name or number is left anywhere. The
business's own number (`display_phone_number`, `phone_number_id`) is the tenant's, not a
customer's: kept. So are the values derived from a number that do not identify it
(`country_code`, `region`, `time_zones`, `line_type`) and Meta's business-scoped
`user_id` (not a phone number).

Models are rebuilt with `model_copy(update=...)`: no validation, so a hash or the mask
fits any string member (a Meta id type included) and the walk cannot fail on a value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from models.conversation import ConversationState
from models.event import NormalizedEvent
from models.tenant import PiiRule, Tenant

MASK = "[masked]"
"""What a masked name reads (`customer.name`, profile and contact-card names)."""

PHONE_KEYS: frozenset[str] = frozenset(
    {
        "wa_id",  # customer, contacts, shared contact phones, system, user preferences
        "phone_e164",  # customer (derived from wa_id)
        "from",  # the sender of a message, a call, a reply's parent (Meta's `context.from`)
        "to",  # a call's callee
        "sender",  # reply_to.sender
        "recipient_id",  # a status's recipient
        "recipient_participant_id",  # a group status's participant
        "new_wa_id",  # a system message: the customer's new number
        "phone",  # a shared contact card's numbers
        "phone_number",  # the business app's address book (smb_app_state_sync)
    }
)
"""Members whose string value is a customer's or participant's phone number."""

NAME_KEYS: frozenset[str] = frozenset(
    {"username", "formatted_name", "first_name", "last_name", "middle_name", "full_name"}
)
"""Members whose value is a person's name wherever they appear; `name` is one only inside
a customer, a profile or a contact card (_NAME_PARENTS), not a location's or a flow's."""

_NAME_PARENTS = frozenset({"customer", "profile", "name", "contacts", "contact"})
_PARTICIPANTS = "participants"
_ID_KEYS = frozenset({"id", "sha256", "kind", "type", "category", "status", "url"})
_FORMATTED = re.compile(r"\+?[\d\s().-]*\d[\d\s().-]*")  # a number as people write it
# Shorter clear names and numbers are not searched for inside other strings.
_MIN_FOUND_CHARS = 3
_MIN_NUMBER_CHARS = 6

M = TypeVar("M", bound=BaseModel)


class _Masker:
    """One pass's replacements, and the clear values it replaced (for the second pass)."""

    def __init__(
        self, rule: PiiRule, hash_phone: Callable[[str], str], business: str | None = None
    ) -> None:
        self.rule = rule
        self.hash_phone = hash_phone
        # The business's own number (a call's or an echo's `from`): the tenant's, kept.
        self.business = re.sub(r"\D", "", business) if business else None
        self.found: dict[str, str] = {}  # clear value -> what replaced it

    def phone(self, value: str) -> str:
        if not value or value.startswith("h:"):
            return value
        # "+1 650-555-1234" and "16505551234" are one number: hashed as its digits.
        digits = re.sub(r"\D", "", value) if _FORMATTED.fullmatch(value) else value
        if digits == self.business:
            return value
        hashed = self.hash_phone(digits)
        self.found[value] = hashed
        self.found[digits] = hashed
        return hashed

    def name(self, value: str) -> str:
        if not value or value == MASK:
            return value
        self.found[value] = MASK
        return MASK

    def value(self, key: str | None, parent: str | None, value: Any) -> Any:
        """The value of member `key` (inside member `parent`) after the first pass."""
        if isinstance(value, str):
            if self.rule.phone == "hash" and key in PHONE_KEYS:
                return self.phone(value)
            if self.rule.customer_name == "mask" and (
                key in NAME_KEYS or (key == "name" and parent in _NAME_PARENTS)
            ):
                return self.name(value)
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            if self.rule.phone == "hash" and key in PHONE_KEYS:
                return self.phone(str(value))  # a raw item may carry a number unquoted
            return value
        if isinstance(value, BaseModel):
            return self.model(value, key)
        if isinstance(value, dict):
            return {
                k: self.value(k if isinstance(k, str) else None, key, v) for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            if key == _PARTICIPANTS and self.rule.phone == "hash":
                items = [self.phone(v) if isinstance(v, str) else v for v in value]
            else:
                items = [self.value(key, parent, v) for v in value]
            return type(value)(items) if isinstance(value, tuple) else items
        return value

    def model(self, model: M, key: str | None) -> M:
        """The model with its members replaced (the unchanged ones kept as they are)."""
        update: dict[str, Any] = {}
        for name, info in type(model).model_fields.items():
            current = getattr(model, name)
            alias = info.serialization_alias or info.alias or name
            new = self.value(alias, key, current)
            if new is not current:
                update[name] = new
        for name, current in (model.__pydantic_extra__ or {}).items():
            new = self.value(name, key, current)
            if new is not current:
                update[name] = new
        return model.model_copy(update=update) if update else model

    def text(self, value: str, key: str | None) -> str:
        """A string with every clear value found replaced.

        An id is no text: only numbers are searched in it (a history thread's id, a
        status's event_id end in the customer's number), never names (a short one could
        be a hash's substring). Deterministic: the same id masks the same way."""
        is_id = key is not None and (key in _ID_KEYS or key.endswith("_id"))
        for clear, replaced in self._search:
            if clear in value and (not is_id or replaced.startswith("h:")):
                value = value.replace(clear, replaced)
        return value

    def scrub(self, value: Any, key: str | None = None) -> Any:
        """Second pass: every clear value found replaced inside any string."""
        if isinstance(value, str):
            return self.text(value, key)
        if isinstance(value, BaseModel):
            update: dict[str, Any] = {}
            for name, info in type(value).model_fields.items():
                current = getattr(value, name)
                new = self.scrub(current, info.serialization_alias or info.alias or name)
                if new != current:
                    update[name] = new
            for name, current in (value.__pydantic_extra__ or {}).items():
                new = self.scrub(current, name)
                if new != current:
                    update[name] = new
            return value.model_copy(update=update) if update else value
        if isinstance(value, dict):
            return {k: self.scrub(v, k if isinstance(k, str) else None) for k, v in value.items()}
        if isinstance(value, list | tuple):
            items = [self.scrub(v, key) for v in value]
            return type(value)(items) if isinstance(value, tuple) else items
        return value

    @property
    def _search(self) -> list[tuple[str, str]]:
        # Longest first: "+1650..." is replaced before its digits would be.
        found = [
            (c, r)
            for c, r in self.found.items()
            if len(c) >= (_MIN_NUMBER_CHARS if r.startswith("h:") else _MIN_FOUND_CHARS)
        ]
        return sorted(found, key=lambda cr: -len(cr[0]))


def mask_event(event: NormalizedEvent, tenant: Tenant | None) -> NormalizedEvent:
    """The event as the tenant's PII rule publishes it (itself when nothing is masked)."""
    if tenant is None or not tenant.rules.pii.active:
        return event
    masker = _Masker(tenant.rules.pii, tenant.hash_phone, event.business.display_phone_number)
    masked = masker.model(event, None)
    if masker.found:
        masked = masker.scrub(masked)
    return masked


def mask_state(state: ConversationState, tenant: Tenant | None) -> ConversationState:
    """A conversation's state as the admin API shows it under the tenant's PII rule."""
    if tenant is None or not tenant.rules.pii.active:
        return state
    masker = _Masker(tenant.rules.pii, tenant.hash_phone)
    return masker.model(state, None)


def mask_value(value: Any, tenant: Tenant | None) -> Any:
    """Any JSON-like value (a dead letter's raw item) under the tenant's PII rule."""
    if tenant is None or not tenant.rules.pii.active:
        return value
    masker = _Masker(tenant.rules.pii, tenant.hash_phone)
    masked = masker.value(None, None, value)
    return masker.scrub(masked) if masker.found else masked
