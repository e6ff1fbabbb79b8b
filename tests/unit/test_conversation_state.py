"""The conversation actor's rules (actors/conversation.py), one rule per test, on drafts
made by the real normalizer from Meta-shaped items."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.conversation import Applied, apply, next_state, state_event
from actors.event_draft import EventDraft
from actors.normalize import normalize
from models.conversation import MAX_NAME_CHARS, ConversationRecord, MessageRecord, message_key
from models.event_status import StatusData
from models.inbox import InboxItem, ItemKind
from models.routing import conversation_id, conversation_key

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CUSTOMER = "16505550001"
KEY = conversation_key("acme", "106540352242922", CUSTOMER)
CID = conversation_id(KEY)
GROUP_KEY = conversation_key("acme", "106540352242922", "group:120363000000000001@g.us")


def _item(
    raw: Any,
    kind: ItemKind = "message",
    field: str = "messages",
    key: str = KEY,
    received: datetime = T0,
    contact: dict[str, Any] | None = None,
) -> EventDraft:
    return normalize(
        InboxItem(
            tenant_id="acme",
            delivery_id="d1",
            received_at=received,
            kind=kind,
            field=field,
            position=(0, 0, 0),
            phone_number_id="106540352242922",
            conversation_key=key,
            conversation_id=conversation_id(key),
            partition=0,
            contact=contact,
            item=raw,
        )
    )


def text(
    n: int,
    at: datetime = T0,
    reply_to: str | None = None,
    name: str | None = None,
    sender: str = CUSTOMER,
    key: str = KEY,
    group: str | None = None,
) -> EventDraft:
    raw: dict[str, Any] = {
        "from": sender,
        "id": f"wamid.{n}",
        "timestamp": str(int(at.timestamp())),
        "type": "text",
        "text": {"body": f"message {n}"},
    }
    if reply_to is not None:
        raw["context"] = {"from": "15550100001", "id": reply_to}
    if group is not None:
        raw["group_id"] = group
    contact = {"wa_id": sender, "profile": {"name": name}} if name is not None else None
    return _item(raw, key=key, received=at + timedelta(seconds=1), contact=contact)


def status(wamid: str, state: str, at: datetime = T0, **extra: Any) -> EventDraft:
    raw = {
        "id": wamid,
        "status": state,
        "timestamp": str(int(at.timestamp())),
        "recipient_id": CUSTOMER,
        **extra,
    }
    return _item(raw, kind="status", received=at + timedelta(seconds=1))


def run(drafts: list[EventDraft], record: ConversationRecord | None = None) -> list[Applied]:
    """Apply drafts in order as the shard does: the record and the message records carried."""
    messages: dict[str, MessageRecord] = {}
    out: list[Applied] = []
    for draft in drafts:
        applied = apply(record, draft, messages)
        messages.update(applied.messages)
        record = applied.record
        out.append(applied)
    return out


def test_a_new_customer_s_first_message_creates_the_record_with_an_open_window() -> None:
    (first,) = run([text(1, name="Ann")])
    assert first.created
    assert first.changes == []
    record = first.record
    assert record.kind == "customer"
    assert record.message_count == 1
    assert record.customer is not None
    assert record.customer.name == "Ann"
    assert record.customer.wa_id == CUSTOMER
    assert record.last_inbound_at == T0
    assert record.first_seen_at == T0
    assert record.window_expires_at == T0 + timedelta(hours=24)
    assert first.context is not None
    assert first.context.new
    assert first.context.service_window.open
    assert first.context.message_count == 1


def test_later_messages_count_and_only_record_changes_publish_updates() -> None:
    applied = run([text(1, name="Ann"), text(2, T0 + timedelta(minutes=1), name="Ann")])
    assert not applied[1].created
    assert applied[1].changes == []
    assert applied[1].record.message_count == 2
    renamed = run([text(3, T0 + timedelta(minutes=2), name="Ann B")], applied[1].record)
    assert renamed[0].changes == ["customer.name"]


def test_a_window_that_had_closed_opening_again_is_a_change() -> None:
    day_later = T0 + timedelta(hours=25)
    applied = run([text(1), text(2, day_later)])
    assert applied[1].changes == ["service_window"]
    assert applied[1].record.window_expires_at == day_later + timedelta(hours=24)


def test_a_message_older_than_the_latest_is_late_and_moves_no_time_back() -> None:
    applied = run([text(2, T0 + timedelta(seconds=10)), text(1, T0)])
    assert applied[1].late
    assert not applied[0].late
    assert applied[1].record.last_inbound_at == T0 + timedelta(seconds=10)
    assert applied[1].record.message_count == 2


def test_a_timestamp_far_in_the_future_is_believed_only_up_to_the_arrival_plus_skew() -> None:
    far = text(1, T0)
    raw = dict(far.item.item, timestamp=str(int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())))
    future = _item(raw, received=T0)
    (applied,) = run([future])
    assert applied.record.last_inbound_at is not None
    assert applied.record.last_inbound_at <= T0 + timedelta(minutes=5)
    following = run([text(2, T0 + timedelta(minutes=10))], applied.record)
    assert not following[0].late  # the far-future stamp did not poison the order


def test_a_huge_profile_name_is_stored_truncated() -> None:
    (applied,) = run([text(1, name="x" * 10_000)])
    assert applied.record.customer is not None
    assert applied.record.customer.name == "x" * MAX_NAME_CHARS


@pytest.mark.parametrize(
    ("before", "status", "after", "stale"),
    [
        (None, "sent", "sent", False),
        ("sent", "delivered", "delivered", False),
        ("read", "delivered", "read", True),
        ("delivered", "read", "read", False),
        ("read", "played", "played", False),
        ("played", "read", "played", True),
        ("read", "failed", "failed", False),
        ("failed", "read", "failed", True),
        ("failed", "failed", "failed", True),
        ("delivered", "deleted", "delivered", False),
        (None, "warning", None, False),
    ],
)
def test_the_message_state_machine(
    before: str | None, status: str, after: str | None, stale: bool
) -> None:
    assert next_state(before, status) == (after, stale)


@given(st.lists(st.sampled_from(["sent", "delivered", "read", "played", "failed"]), max_size=8))
def test_the_state_never_moves_back_whatever_order_statuses_arrive_in(order: list[str]) -> None:
    rank = {"sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 9}
    state: str | None = None
    for status in order:
        state, _ = next_state(state, status)
        assert state is not None
    if order:
        assert state == ("failed" if "failed" in order else max(order, key=rank.__getitem__))


def test_read_then_a_late_delivered_is_stale_and_keeps_read() -> None:
    applied = run([status("wamid.out1", "read"), status("wamid.out1", "delivered")])
    first, late = applied[0].status, applied[1].status
    assert isinstance(first, StatusData)
    assert isinstance(late, StatusData)
    assert (first.message_state, first.stale) == ("read", False)
    assert (late.message_state, late.stale) == ("read", True)
    assert late.status == "delivered"  # published as Meta sent it


def test_a_status_of_a_message_never_seen_starts_its_machine_and_creates_the_conversation() -> None:
    (applied,) = run([status("wamid.unknown", "delivered")])
    assert applied.created  # a business-initiated conversation starts with a status
    assert isinstance(applied.status, StatusData)
    assert applied.status.message_state == "delivered"
    assert applied.record.message_count == 0
    assert applied.record.last_inbound_at is None
    assert applied.context is not None
    assert not applied.context.service_window.open


def test_a_status_with_a_pricing_conversation_records_its_expiry() -> None:
    expiry = int((T0 + timedelta(hours=24)).timestamp())
    draft = status(
        "wamid.out1",
        "sent",
        conversation={
            "id": "conv1",
            "expiration_timestamp": str(expiry),
            "origin": {"type": "service"},
        },
    )
    (applied,) = run([draft])
    assert applied.record.pricing is not None
    assert applied.record.pricing.id == "conv1"
    assert applied.record.pricing.expires_at == T0 + timedelta(hours=24)


def test_a_reply_chain_resolves_its_root_through_the_parents_seen() -> None:
    applied = run(
        [
            status("wamid.biz", "delivered"),
            text(1, reply_to="wamid.biz"),
            text(2, T0 + timedelta(seconds=1), reply_to="wamid.1"),
            text(3, T0 + timedelta(seconds=2), reply_to="wamid.2"),
        ]
    )
    replies = [a.reply_to for a in applied[1:]]
    assert all(r is not None for r in replies)
    assert [r.thread_root_id for r in replies if r] == ["wamid.biz"] * 3
    assert [r.event_id for r in replies if r] == [None, "wamid.1", "wamid.2"]


def test_a_reply_to_an_unknown_parent_roots_at_the_parent() -> None:
    (applied,) = run([text(1, reply_to="wamid.never")])
    assert applied.reply_to is not None
    assert applied.reply_to.thread_root_id == "wamid.never"
    assert applied.reply_to.event_id is None


def test_a_marketing_stop_and_resume_change_the_opt_out() -> None:
    def pref(value: str) -> EventDraft:
        raw = {
            "messaging_product": "whatsapp",
            "contacts": [{"wa_id": CUSTOMER}],
            "user_preferences": [
                {
                    "wa_id": CUSTOMER,
                    "category": "marketing_messages",
                    "value": value,
                    "timestamp": int(T0.timestamp()),
                }
            ],
        }
        return _item(raw, kind="field", field="user_preferences")

    applied = run([text(1), pref("stop"), pref("resume")])
    assert applied[1].record.marketing_opt_out is True
    assert applied[1].changes == ["marketing_opt_out"]
    assert applied[2].record.marketing_opt_out is False
    assert applied[2].context is not None
    assert applied[2].context.marketing_opt_out is False


def test_a_group_collects_participants_from_messages_and_participant_webhooks() -> None:
    group = "120363000000000001@g.us"

    def members(kind: str, *ids: str) -> EventDraft:
        change: dict[str, Any] = {
            "group_id": group,
            "type": f"group_participants_{kind}",
            "timestamp": "1767225600",
        }
        change["added_participants" if kind == "add" else "removed_participants"] = [
            {"wa_id": i} for i in ids
        ]
        raw = {"messaging_product": "whatsapp", "groups": [change]}
        return _item(raw, kind="field", field="group_participants_update", key=GROUP_KEY)

    applied = run(
        [
            text(1, sender="447700900001", key=GROUP_KEY, group=group),
            members("add", "447700900002", "447700900003"),
            text(2, sender="447700900002", key=GROUP_KEY, group=group),
            members("remove", "447700900001"),
        ]
    )
    assert applied[0].created
    assert applied[0].record.kind == "group"
    assert applied[0].record.group_id == group
    assert applied[1].changes == ["participants"]
    assert applied[2].changes == []  # already a participant
    assert applied[3].record.participants == ("447700900002", "447700900003")
    assert applied[3].context is not None
    assert applied[3].context.participants_count == 2
    assert applied[0].record.customer is None  # a group has participants, not a customer


def test_tenant_items_keep_a_record_for_their_sequence_but_no_state_events() -> None:
    key = conversation_key("acme", None, None)
    raw = {"phone_number": "15550100001", "event": "VERIFIED_ACCOUNT"}
    (applied,) = run([_item(raw, kind="field", field="account_update", key=key)])
    assert not applied.created
    assert applied.changes == []
    assert applied.context is None
    assert applied.record.kind == "tenant"


def test_a_legacy_sequence_continues_and_the_conversation_is_created() -> None:
    (applied,) = run([text(1)], ConversationRecord.legacy(CID, 41))
    assert applied.created
    assert applied.record.last_sequence == 41


def test_state_events_have_ids_stable_across_a_redelivery() -> None:
    draft = text(1, name="Ann")
    one, two = run([draft])[0], run([draft])[0]
    first, again = state_event("created", one, draft, 1), state_event("created", two, draft, 1)
    assert first == again
    assert first.routing_key == "acme.conversation.created"
    assert first.data.kind == "conversation"
    assert first.data.state.customer is not None
    assert first.data.state.customer.name == "Ann"
    assert first.data.state.last_sequence == 1


def test_message_records_are_scoped_to_the_conversation() -> None:
    (applied,) = run([text(1)])
    assert set(applied.messages) == {message_key(CID, "wamid.1")}


def test_a_message_or_preference_on_the_tenant_stream_changes_no_state() -> None:
    """A message naming no customer (no `from`) and a preference change naming several
    customers are keyed by the tenant: numbered, never a state event or a record change."""
    key = conversation_key("acme", None, None)
    raw = {"id": "wamid.x", "timestamp": str(int(T0.timestamp())), "type": "text", "text": {}}
    prefs = {
        "messaging_product": "whatsapp",
        "user_preferences": [
            {"wa_id": w, "category": "marketing_messages", "value": "stop"} for w in ("1", "2")
        ],
    }
    applied = run(
        [
            _item(raw, key=key),
            _item(raw | {"id": "wamid.y"}, key=key, received=T0 + timedelta(days=2)),
            _item(prefs, kind="field", field="user_preferences", key=key),
        ]
    )
    assert [(a.created, a.changes, a.context) for a in applied] == [(False, [], None)] * 3
    record = applied[-1].record
    assert record.message_count == 0
    assert record.window_expires_at is None
    assert record.marketing_opt_out is None


def test_an_unsupported_message_is_timed_by_its_raw_timestamp() -> None:
    """A message whose model does not fit keeps its raw `timestamp` for ordering: it does
    not move the conversation's time to its arrival and make its neighbours late."""
    good = text(1, T0)
    broken = _item(
        {
            "from": CUSTOMER,
            "id": "wamid.2",
            "timestamp": str(int(T0.timestamp())),
            "type": "location",
            "location": {"latitude": "north"},
        },
        received=T0 + timedelta(minutes=3),
    )
    assert broken.parts.category == "unsupported"
    applied = run([good, broken, text(3, T0)])
    assert applied[1].record.last_inbound_at == T0
    assert applied[1].changes == []
    assert not applied[2].late
