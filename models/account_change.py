"""Changes to a tenant's account snapshot, and the one function that applies them.

Two kinds, applied by the store atomically per tenant (adapters/ports.py AccountStore):

- a webhook's change (`target` phone_number, waba or template): a few fields of one
  record, set as the webhook's. A change received before the record's last fetch is not
  applied: the Graph API's answer already reflects it (or something newer), so a late or
  replayed webhook never undoes a refresh.
- a refresh (`target` "refresh", `refreshed` the snapshot read from the Graph API, `at`
  when the reads started): merged into what is stored, not written over it, so a webhook
  applied while the refresh was reading is not lost. Per record, the Graph fields replace
  the stored ones, except a field a webhook set after `at` (the webhook is newer than
  the read); fields only webhooks tell are kept; an object whose read failed keeps its
  stored record (with the error beside it); numbers and WABAs the tenant no longer owns
  are dropped, with their templates; a WABA's templates are replaced by its listing
  when that succeeded (`unlisted_wabas`: kept as stored when it failed).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from models.account import (
    AccountSnapshot,
    PhoneNumberState,
    Source,
    TemplateState,
    WabaState,
    digits,
    template_key,
)

ChangeValue = str | bool | None
ChangeTarget = Literal["phone_number", "waba", "template", "refresh"]

PHONE_GRAPH_FIELDS = (
    "display_phone_number",
    "verified_name",
    "name_status",
    "code_verification_status",
    "quality_rating",
    "platform_type",
    "throughput_level",
    "status",
    "messaging_limit",
)
WABA_GRAPH_FIELDS = (
    "name",
    "currency",
    "timezone_id",
    "message_template_namespace",
    "account_review_status",
    "business_verification_status",
    "country",
    "ownership_type",
)
TEMPLATE_GRAPH_FIELDS = ("name", "language", "status", "category", "quality_score")


class AccountChange(BaseModel):
    """One change to a tenant's snapshot: a webhook's (actors/account_changes.py) or a
    refresh's (actors/accounts.py).

    `object_id` is the phone number id or the template id; a phone-number webhook names its
    number only by `display_phone_number` (Meta sends no id in those), matched by digits.
    `values` are the record's fields to set; `at` is when the webhook was received, or
    when the refresh started reading.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str
    target: ChangeTarget
    at: datetime
    waba_id: str | None = None
    object_id: str | None = None
    display_phone_number: str | None = None
    values: dict[str, ChangeValue] = {}
    event_type: str | None = None
    event_id: str | None = None
    refreshed: AccountSnapshot | None = None
    unlisted_wabas: tuple[str, ...] = ()  # a refresh's WABAs whose template listing failed


_M = TypeVar("_M", PhoneNumberState, WabaState, TemplateState)


def _changed(record: _M, change: AccountChange) -> _M | None:
    """The record with the change's values (marked as the webhook's), or None when the
    change is older than the record's last fetch or changes nothing."""
    if record.fetched_at is not None and change.at < record.fetched_at:
        return None
    fields = type(record).model_fields
    values = {k: v for k, v in change.values.items() if k in fields}
    if all(getattr(record, k) == v for k, v in values.items()):
        return None
    sources: dict[str, Source] = {**record.sources, **dict.fromkeys(values, "webhook")}
    return record.model_copy(update={**values, "sources": sources, "updated_at": change.at})


def _merged(stored: _M | None, fetched: _M, graph_fields: tuple[str, ...], at: datetime) -> _M:
    """The fetched record over the stored one (the module docstring's rules)."""
    if stored is None:
        return fetched
    if fetched.fetched_at is None:  # its read failed: keep what is known, note the error
        error = getattr(fetched, "fetch_error", None)
        return stored.model_copy(update={"fetch_error": error} if error else {})
    newer = stored.updated_at is not None and stored.updated_at > at
    update: dict[str, object] = {}
    sources: dict[str, Source] = {**stored.sources}
    for name in graph_fields:
        if newer and stored.sources.get(name) == "webhook":
            continue  # a webhook set it after the read started
        update[name] = getattr(fetched, name)
        sources[name] = "graph"
    changed = any(getattr(stored, k) != v for k, v in update.items())
    update |= {"sources": sources, "fetched_at": fetched.fetched_at}
    if "fetch_error" in type(stored).model_fields:
        update["fetch_error"] = None
    if changed:
        update["updated_at"] = fetched.fetched_at
    return stored.model_copy(update=update)


def _refreshed(snap: AccountSnapshot, change: AccountChange) -> AccountSnapshot:
    new = change.refreshed
    if new is None:
        return snap
    at = change.at
    numbers = {
        pid: _merged(snap.phone_numbers.get(pid), fetched, PHONE_GRAPH_FIELDS, at)
        for pid, fetched in new.phone_numbers.items()
    }
    wabas = {
        wid: _merged(snap.wabas.get(wid), fetched, WABA_GRAPH_FIELDS, at)
        for wid, fetched in new.wabas.items()
    }
    unlisted = set(change.unlisted_wabas)
    listed = set(wabas) - unlisted
    templates = {key: t for key, t in snap.templates.items() if t.waba_id in unlisted}
    for key, fetched_t in new.templates.items():
        templates[key] = _merged(snap.templates.get(key), fetched_t, TEMPLATE_GRAPH_FIELDS, at)
    # Templates a webhook added after the read started are kept until the next refresh.
    for key, t in snap.templates.items():
        if key not in templates and t.waba_id in listed and t.updated_at and t.updated_at > at:
            templates[key] = t
    return snap.model_copy(
        update={
            "phone_numbers": numbers,
            "wabas": wabas,
            "templates": templates,
            "fetched_at": new.fetched_at,
            "refresh_error": new.refresh_error,
            "updated_at": new.fetched_at,
        }
    )


def _phone_of(snapshot: AccountSnapshot, change: AccountChange) -> PhoneNumberState | None:
    if change.object_id is not None and change.object_id in snapshot.phone_numbers:
        return snapshot.phone_numbers[change.object_id]
    wanted = digits(change.display_phone_number)
    for number in snapshot.phone_numbers.values():
        if wanted and digits(number.display_phone_number) == wanted:
            return number
    return None


def apply_change(snapshot: AccountSnapshot | None, change: AccountChange) -> AccountSnapshot:
    """The snapshot with the change applied (a new one when there was none).

    A template or WABA not seen before is added with what the webhook says; a phone number
    not seen before is not (its webhooks carry no id: the next refresh reads it whole).
    """
    snap = snapshot or AccountSnapshot(tenant_id=change.tenant_id)
    if change.target == "refresh":
        return _refreshed(snap, change)
    if change.target == "phone_number":
        number = _phone_of(snap, change)
        new = _changed(number, change) if number is not None else None
        if new is None:
            return snap
        numbers = {**snap.phone_numbers, new.phone_number_id: new}
        return snap.model_copy(update={"phone_numbers": numbers, "updated_at": change.at})
    if change.waba_id is None:
        return snap
    if change.target == "waba":
        waba = snap.wabas.get(change.waba_id) or WabaState(waba_id=change.waba_id)
        new_waba = _changed(waba, change)
        if new_waba is None:
            return snap
        wabas = {**snap.wabas, change.waba_id: new_waba}
        return snap.model_copy(update={"wabas": wabas, "updated_at": change.at})
    if change.object_id is None:
        return snap
    key = template_key(change.waba_id, change.object_id)
    template = snap.templates.get(key) or TemplateState(
        waba_id=change.waba_id, template_id=change.object_id
    )
    new_template = _changed(template, change)
    if new_template is None:
        return snap
    templates = {**snap.templates, key: new_template}
    return snap.model_copy(update={"templates": templates, "updated_at": change.at})
