"""The logical conversation actor: what one item does to its conversation's record.

Pure and synchronous: `apply` takes the record as it stands (None for a conversation the
service has never seen), the item's draft and the message records the batch loaded, and
returns the new record, the state events to publish before the item's own event, and
what the item's event carries (context, `late`, the status's message state, the reply's
thread). The shard (actors/shard.py) loads, numbers, publishes and commits; nothing here
does I/O, so the rules are unit- and property-tested directly.

Times. "Now" is the item's arrival at the ingress (`received_at`), so a redelivered item
computes exactly what it did the first time. Meta's timestamps are used for ordering and
the service window, but never further ahead of the arrival than `MAX_CLOCK_AHEAD` (a
message stamped in 2100 would otherwise hold the window open for ever and make every later
message `late`); the event itself keeps the time Meta sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from actors.event_draft import EventDraft, business_of, content_id
from models.conversation import (
    MAX_NAME_CHARS,
    MAX_PARTICIPANTS,
    MESSAGE_STATE_RANK,
    SERVICE_WINDOW,
    ConversationContext,
    ConversationCustomer,
    ConversationKind,
    ConversationRecord,
    MessageRecord,
    PricingConversation,
    message_key,
)
from models.event import ConversationEventData, Customer, NormalizedEvent, ReplyTo
from models.event_status import StatusData
from models.inbox import InboxItem
from models.meta.fields_activity import GroupParticipantsUpdate, UserPreferences

MAX_CLOCK_AHEAD = timedelta(minutes=5)
"""How far ahead of its arrival an item's Meta timestamp is believed (clock skew)."""

_CUSTOMER_MEMBERS = ("wa_id", "user_id", "username", "name")

CONVERSATION_CATEGORY = "conversation"
"""The category of the state-manager's events (routing key `<tenant>.conversation.<type>`)."""


def conversation_kind(key: str) -> ConversationKind:
    """The kind of a conversation key (models/routing.py builds them)."""
    if key.endswith("|~tenant"):
        return "tenant"
    return "group" if key.rsplit("|", 1)[-1].startswith("group:") else "customer"


def is_inbound_message(item: InboxItem) -> bool:
    """A customer's message (not an echo, a history item or any other field)."""
    return item.kind == "message" and item.field == "messages"


def _raw_time(item: InboxItem) -> datetime | None:
    """The raw item's own `timestamp`, for an item whose model did not fit (an
    `unsupported` draft has no `occurred_at`); None when it has none that reads."""
    raw = item.item.get("timestamp") if isinstance(item.item, dict) else None
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        return None
    text = str(raw).strip()
    if not text.isdigit() or not 0 < int(text) < 2**33:
        return None
    return datetime.fromtimestamp(int(text), tz=UTC)


def meta_time(draft: EventDraft) -> datetime | None:
    """The item's Meta time, no later than MAX_CLOCK_AHEAD after its arrival; None when
    neither the draft nor the raw item has one."""
    meta = draft.occurred_at or _raw_time(draft.item)
    if meta is None:
        return None
    return min(meta, draft.item.received_at + MAX_CLOCK_AHEAD)


def believed_time(draft: EventDraft) -> datetime:
    """The item's Meta time (meta_time), its arrival when it has none."""
    return meta_time(draft) or draft.item.received_at


def status_key(conversation_id: str, data: StatusData) -> str:
    """The record key of the message a status is about; per participant in a group."""
    message = data.message_id
    if data.recipient_participant_id:
        message = f"{message}|{data.recipient_participant_id}"
    return message_key(conversation_id, message)


def message_keys(draft: EventDraft) -> list[str]:
    """The message records `apply` may read for this item (loaded with the batch)."""
    cid = draft.item.conversation_id
    data = draft.parts.data
    if isinstance(data, StatusData):
        return [status_key(cid, data)] if data.status_of == "message" else []
    keys: list[str] = []
    if is_inbound_message(draft.item) and draft.parts.category != "unsupported":
        keys.append(message_key(cid, draft.event_id))
        parent = draft.parts.reply_to.message_id if draft.parts.reply_to else None
        if parent:
            keys.append(message_key(cid, parent))
    return keys


@dataclass(slots=True)
class Applied:
    """What one item did to its conversation."""

    record: ConversationRecord  # the new record (its last_sequence not yet advanced)
    created: bool = False  # publish `conversation.created` before the item's event
    changes: list[str] = field(default_factory=list)  # publish `conversation.updated`
    context: ConversationContext | None = None
    late: bool = False
    status: StatusData | None = None  # the status data with message_state / stale set
    reply_to: ReplyTo | None = None  # the reply with event_id / thread_root_id set
    messages: dict[str, MessageRecord] = field(default_factory=dict)


def _short(value: str | None) -> str | None:
    return value[:MAX_NAME_CHARS] if value is not None else None


def _merge_customer(
    old: ConversationCustomer | None, seen: Customer | None, changes: list[str]
) -> ConversationCustomer | None:
    """The stored customer with what the item says; a member that changes is named."""
    if seen is None:
        return old
    base = old or ConversationCustomer()
    updates: dict[str, Any] = {}
    for member in _CUSTOMER_MEMBERS:
        value = _short(getattr(seen, member))
        if value is not None and value != getattr(base, member):
            updates[member] = value
            changes.append(f"customer.{member}")
    return base.model_copy(update=updates) if updates else old


def _new_record(draft: EventDraft, kind: ConversationKind, at: datetime) -> ConversationRecord:
    item = draft.item
    group = item.conversation_key.rsplit("|", 1)[-1].removeprefix("group:")
    return ConversationRecord(
        conversation_id=item.conversation_id,
        tenant_id=item.tenant_id,
        kind=kind,
        phone_number_id=item.phone_number_id,
        display_phone_number=item.display_phone_number,
        group_id=group if kind == "group" else None,
        created_at=item.received_at,
        first_seen_at=at,
        participants=() if kind == "group" else None,
    )


def _participant(customer: Customer | None) -> str | None:
    if customer is None:
        return None
    return customer.wa_id or customer.user_id


def _participant_ids(entries: Any) -> list[str]:
    """The ids in one of a group change's participant lists (kept as Meta sent them)."""
    ids: list[str] = []
    for entry in entries if isinstance(entries, list | tuple) else ():
        if isinstance(entry, dict):
            found = entry.get("wa_id") or entry.get("user_id")
            if isinstance(found, str | int) and not isinstance(found, bool):
                ids.append(str(found)[:MAX_NAME_CHARS])
    return ids


def _participants_after(
    current: tuple[str, ...] | None, joined: list[str], left: list[str]
) -> tuple[str, ...]:
    members = set(current or ())
    members.difference_update(left)
    for member in joined:
        if len(members) >= MAX_PARTICIPANTS:
            break
        members.add(member)
    return tuple(sorted(members))


class _Change:
    """The record being changed by one item: updates collected, then one copy."""

    def __init__(self, record: ConversationRecord) -> None:
        self.record = record
        self.updates: dict[str, Any] = {}
        self.changes: list[str] = []

    def get(self, name: str) -> Any:
        return self.updates.get(name, getattr(self.record, name))

    def set(self, name: str, value: Any, change: str | None = None) -> None:
        if value == self.get(name):
            return
        self.updates[name] = value
        if change is not None:
            self.changes.append(change)

    def done(self) -> ConversationRecord:
        return self.record.model_copy(update=self.updates) if self.updates else self.record


def apply(
    record: ConversationRecord | None,
    draft: EventDraft,
    messages: Mapping[str, MessageRecord],
) -> Applied:
    """Apply one item (not a duplicate) to its conversation. Never raises for any item a
    handler produced: unknown parents, unknown messages, odd times are all tolerated."""
    item, parts = draft.item, draft.parts
    kind = conversation_kind(item.conversation_key)
    at = believed_time(draft)
    created = record is None or not record.created
    base = _new_record(draft, kind, at) if created else record
    assert base is not None
    if created and record is not None:  # a legacy sequence: the numbering continues
        base = base.model_copy(update={"last_sequence": record.last_sequence})
    change = _Change(base)
    applied = Applied(record=base, created=created and kind != "tenant")
    change.set("updated_at", item.received_at)

    if kind == "tenant":  # no conversation: the record only numbers the tenant's stream
        applied.record = change.done()
        return applied
    if kind == "customer":  # a group's senders are its participants, not its customer
        change.set(
            "customer", _merge_customer(change.get("customer"), parts.customer, change.changes)
        )

    if is_inbound_message(item):
        _inbound(change, draft, meta_time(draft), kind, applied, messages)
    elif isinstance(parts.data, StatusData):
        _status(change, draft, parts.data, applied, messages)
    elif isinstance(parts.data, UserPreferences):
        _preferences(change, parts.data)
    elif isinstance(parts.data, GroupParticipantsUpdate) and kind == "group":
        _members(change, parts.data)

    applied.record = change.done()
    if not applied.created:
        applied.changes = list(dict.fromkeys(change.changes))
    applied.context = _context(applied.record, applied.created, item.received_at)
    return applied


def _members(change: _Change, data: GroupParticipantsUpdate) -> None:
    joined: list[str] = []
    left: list[str] = []
    for group in data.groups:
        extra = group.model_extra or {}
        joined += _participant_ids(extra.get("added_participants"))
        left += _participant_ids(extra.get("removed_participants"))
    after = _participants_after(change.get("participants"), joined, left)
    change.set("participants", after, "participants")


def _inbound(
    change: _Change,
    draft: EventDraft,
    at: datetime | None,
    kind: ConversationKind,
    applied: Applied,
    messages: Mapping[str, MessageRecord],
) -> None:
    """An inbound message: counted; its Meta time (None: it carries none that reads, so it
    moves no time and is never late) drives the window and the late mark."""
    change.set("message_count", change.get("message_count") + 1)
    last = change.get("last_inbound_at")
    if at is not None:
        applied.late = last is not None and at < last
        expires = change.get("window_expires_at")
        if not applied.created and not applied.late and (expires is None or at >= expires):
            change.changes.append("service_window")  # opened again after it had closed
        if last is None or at > last:
            change.set("last_inbound_at", at)
            change.set("window_expires_at", at + SERVICE_WINDOW)
    if kind == "group":
        sender = _participant(draft.parts.customer)
        if sender is not None:
            after = _participants_after(change.get("participants"), [sender], [])
            change.set("participants", after, "participants")
    if draft.parts.category == "unsupported":
        return
    cid = draft.item.conversation_id
    reply = draft.parts.reply_to
    root: str | None = None
    if reply is not None and reply.message_id:
        parent = messages.get(message_key(cid, reply.message_id))
        root = (parent.root if parent is not None else None) or reply.message_id
        applied.reply_to = reply.model_copy(
            update={
                "event_id": parent.event_id if parent is not None else None,
                "thread_root_id": root,
            }
        )
    own = messages.get(message_key(cid, draft.event_id))
    applied.messages[message_key(cid, draft.event_id)] = MessageRecord.model_construct(
        state=own.state if own is not None else None, root=root, event_id=draft.event_id
    )


def _status(
    change: _Change,
    draft: EventDraft,
    data: StatusData,
    applied: Applied,
    messages: Mapping[str, MessageRecord],
) -> None:
    info = data.conversation
    if info is not None and (info.id or info.expires_at):
        pricing = PricingConversation(
            id=info.id, origin_type=info.origin_type, expires_at=info.expires_at
        )
        change.set("pricing", pricing)
    if data.status_of != "message":
        return
    key = status_key(draft.item.conversation_id, data)
    known = messages.get(key)
    before = known.state if known is not None else None
    state, stale = next_state(before, data.status)
    applied.status = data.model_copy(update={"message_state": state, "stale": stale})
    if state != before or known is None:
        base = known or MessageRecord()
        applied.messages[key] = base.model_copy(update={"state": state})


def next_state(before: str | None, status: str) -> tuple[str | None, bool]:
    """(the message's state after a status, whether the status was stale).

    sent < delivered < read < played; `failed` is applied from any state but itself and
    nothing moves a failed message (a later status is stale). A state outside the machine
    (e.g. Meta's `deleted`, `warning`) changes nothing and is not stale.
    """
    if before == "failed":
        return before, True
    if status == "failed":
        return status, False
    rank = MESSAGE_STATE_RANK.get(status)
    if rank is None:
        return before, False
    if before is not None and rank < MESSAGE_STATE_RANK.get(before, 0):
        return before, True
    return status, False


def _preferences(change: _Change, data: UserPreferences) -> None:
    for pref in data.user_preferences:  # in Meta's order: the last one wins
        if pref.category.lower() != "marketing_messages":
            continue
        value = pref.value.lower()
        if value in ("stop", "resume"):
            change.set("marketing_opt_out", value == "stop", "marketing_opt_out")


def _context(record: ConversationRecord, new: bool, at: datetime) -> ConversationContext:
    # model_construct: every value comes typed from the record (one per event: hot path).
    return ConversationContext.model_construct(
        conversation_id=record.conversation_id,
        new=new,
        message_count=record.message_count,
        first_seen_at=record.first_seen_at,
        last_inbound_at=record.last_inbound_at,
        service_window=record.window(at),
        marketing_opt_out=record.marketing_opt_out,
        participants_count=len(record.participants) if record.participants is not None else None,
    )


def state_event(
    kind: Literal["created", "updated"],
    applied: Applied,
    draft: EventDraft,
    sequence: int,
) -> NormalizedEvent:
    """`conversation.created` / `conversation.updated` for the state-manager, numbered
    `sequence` and published before the item's own event.

    Its id is a hash of the conversation, the kind and the triggering item's event id:
    a redelivery repeats it exactly, and a conversation created again after its record
    expired (retention) gets a new one."""
    item = draft.item
    record = applied.record.model_copy(update={"last_sequence": sequence})
    customer = record.customer
    return NormalizedEvent(
        event_id=content_id("conversation", kind, item.conversation_id, draft.event_id),
        tenant_id=item.tenant_id,
        category=CONVERSATION_CATEGORY,
        type=kind,
        conversation_id=item.conversation_id,
        sequence=sequence,
        occurred_at=draft.occurred_at,
        received_at=item.received_at,
        delivery_id=item.delivery_id,
        business=business_of(item),
        customer=Customer(**customer.model_dump()) if customer is not None else None,
        group_id=record.group_id,
        context=applied.context,
        data=ConversationEventData(
            state=record.public(item.received_at),
            changes=applied.changes if kind == "updated" else [],
        ),
    )
