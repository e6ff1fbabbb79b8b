"""Splitting webhook bodies: every entry, change and item, with the right conversation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.envelope import (
    DeliveryContext,
    EnvelopeError,
    UnknownNumberError,
    split_delivery,
)
from models.meta.fields import FIELD_MODELS
from models.parties import customer_of
from models.routing import conversation_id, conversation_key, partition_of
from tests.support.bodies import (
    PHONE_ID,
    envelope,
    messages_value,
    status,
    text_message,
    two_customers_and_a_status,
)

CTX = DeliveryContext("d1", datetime(2026, 1, 1, tzinfo=UTC), partitions=8)


def everyone_is_acme(phone_number_id: str | None, waba_id: str | None) -> str | None:
    return "acme"


def test_every_entry_change_and_item_becomes_an_item() -> None:
    """Two entries x two changes x several items: nothing is dropped, order is kept."""
    body = envelope(
        ("messages", messages_value(messages=[text_message("m1", "1"), text_message("m2", "2")])),
        ("messages", messages_value(statuses=[status("s1", "1"), status("s2", "3", "read")])),
    )
    body["entry"].append(envelope(("account_update", {"event": "VERIFIED_ACCOUNT"}))["entry"][0])
    items = split_delivery(body, CTX, everyone_is_acme)
    assert [(i.kind, i.position) for i in items] == [
        ("message", (0, 0, 0)),
        ("message", (0, 0, 1)),
        ("status", (0, 1, 0)),
        ("status", (0, 1, 1)),
        ("field", (1, 0, 0)),
    ]
    assert [i.item.get("id") for i in items[:4]] == ["m1", "m2", "s1", "s2"]
    assert items[4].item == {"event": "VERIFIED_ACCOUNT"}


def test_a_customer_keeps_one_conversation_across_messages_and_statuses() -> None:
    """A message from X and a status to X share a conversation; Y has another."""
    items = split_delivery(two_customers_and_a_status(), CTX, everyone_is_acme)
    by_id = {i.item["id"]: i for i in items}
    assert by_id["wamid.A1"].conversation_id == by_id["wamid.OUT1"].conversation_id
    assert by_id["wamid.A1"].conversation_id != by_id["wamid.B1"].conversation_id
    assert by_id["wamid.A1"].partition == by_id["wamid.OUT1"].partition


def test_the_matching_contact_is_attached_to_each_message() -> None:
    """contacts[] is matched to the sender by wa_id, not by position."""
    value = messages_value(
        messages=[text_message("m1", "111"), text_message("m2", "222")],
        contacts=[
            {"profile": {"name": "Two"}, "wa_id": "222"},
            {"profile": {"name": "One"}, "wa_id": "111"},
        ],
    )
    items = split_delivery(envelope(("messages", value)), CTX, everyone_is_acme)
    assert [i.contact["profile"]["name"] for i in items if i.contact] == ["One", "Two"]


def test_value_level_errors_and_unknown_fields_are_items() -> None:
    """value.errors[] entries and fields we do not know are kept, one item each."""
    errors_value = {
        "messaging_product": "whatsapp",
        "metadata": {"phone_number_id": PHONE_ID},
        "errors": [{"code": 131000, "title": "Something went wrong"}],
    }
    body = envelope(("messages", errors_value), ("brand_new_field", {"x": 1}))
    items = split_delivery(body, CTX, everyone_is_acme)
    assert [(i.kind, i.field) for i in items] == [
        ("error", "messages"),
        ("field", "brand_new_field"),
    ]


@pytest.mark.parametrize(
    ("kind", "item", "expected"),
    [
        ("message", {"from": "1", "from_user_id": "US.1"}, "1"),
        ("message", {"from_user_id": "US.1"}, "US.1"),
        ("message", {"from": "1", "group_id": "G1"}, "group:G1"),
        ("status", {"recipient_id": "2"}, "2"),
        ("status", {"recipient_user_id": "US.2"}, "US.2"),
        ("status", {"recipient_id": "G2", "recipient_type": "group"}, "group:G2"),
        ("error", {"code": 1}, None),
    ],
)
def test_customer_key_prefers_wa_id_then_user_id(
    kind: Any, item: dict[str, Any], expected: str | None
) -> None:
    """wa_id first, business-scoped user id second, groups by group id."""
    assert customer_of(kind, "messages", item) == expected


GROUP_FIELDS = sorted(f for f, model in FIELD_MODELS.items() if "groups" in model.model_fields)


def _preferences(*entries: Any) -> dict[str, Any]:
    return {"metadata": {"phone_number_id": PHONE_ID}, "user_preferences": list(entries)}


def _groups(*entries: Any) -> dict[str, Any]:
    return {"metadata": {"phone_number_id": PHONE_ID}, "groups": list(entries)}


def _stop(**ids: Any) -> dict[str, Any]:
    return {**ids, "category": "marketing_messages", "value": "stop"}


def _key_of(field: str, value: dict[str, Any]) -> str:
    (item,) = split_delivery(envelope((field, value)), CTX, everyone_is_acme)
    assert item.kind == "field"
    assert item.conversation_id == conversation_id(item.conversation_key)
    assert item.partition == partition_of(item.conversation_key, CTX.partitions)
    return item.conversation_key


def _message_key(message: dict[str, Any]) -> str:
    value = messages_value(messages=[message], contacts=[])
    (item,) = split_delivery(envelope(("messages", value)), CTX, everyone_is_acme)
    return item.conversation_key


TENANT_KEY = conversation_key("acme", PHONE_ID, None)


def test_the_group_fields_are_the_models_with_a_groups_list() -> None:
    """The table's group fields are Meta's typed group fields: a new one is noticed."""
    assert GROUP_FIELDS == [
        "group_lifecycle_update",
        "group_participants_update",
        "group_settings_update",
        "group_status_update",
    ]


@pytest.mark.parametrize(
    ("entries", "sender"),
    [
        ([_stop(wa_id="447700900123")], {"from": "447700900123"}),
        ([_stop(user_id="US.9")], {"from_user_id": "US.9"}),
        ([_stop(wa_id="1", user_id="US.1"), _stop(wa_id="1")], {"from": "1"}),
        ([_stop(wa_id="", user_id="US.2")], {"from": "", "from_user_id": "US.2"}),
        ([_stop(wa_id=447700900123)], {"from": "447700900123"}),
    ],
)
def test_one_customers_preferences_join_that_customers_conversation(
    entries: list[dict[str, Any]], sender: dict[str, Any]
) -> None:
    """user_preferences naming one customer (wa_id, else user_id, in every entry) gets the
    key, id and partition a message from that customer gets: the opt-out is part of the
    customer's conversation."""
    message = {"id": "wamid.P", "timestamp": "1", "type": "text", **sender}
    assert _key_of("user_preferences", _preferences(*entries)) == _message_key(message)


@pytest.mark.parametrize("field", GROUP_FIELDS)
def test_one_groups_changes_join_that_groups_conversation(field: str) -> None:
    """A group field whose groups[] all name one group is keyed like the group's messages."""
    value = _groups({"group_id": "G1@g.us", "type": "a"}, {"group_id": "G1@g.us", "type": "b"})
    group_message = {"from": "1", "group_id": "G1@g.us", "id": "wamid.G", "type": "text"}
    assert _key_of(field, value) == _message_key(group_message)
    assert _key_of(field, value) == conversation_key("acme", PHONE_ID, "group:G1@g.us")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user_preferences", _preferences(_stop(wa_id="1"), _stop(wa_id="2"))),
        ("user_preferences", _preferences(_stop(wa_id="1"), _stop(user_id="US.1"))),
        ("user_preferences", _preferences(_stop(wa_id="1"), _stop())),
        ("user_preferences", _preferences(_stop(wa_id=""))),
        ("user_preferences", _preferences(_stop(wa_id={"x": 1}))),
        ("user_preferences", _preferences(_stop(wa_id="1"), "stop")),
        ("user_preferences", _preferences()),
        ("user_preferences", {"metadata": {"phone_number_id": PHONE_ID}}),
        ("user_preferences", {"user_preferences": {"wa_id": "1"}}),
        ("group_participants_update", _groups({"group_id": "G1"}, {"group_id": "G2"})),
        ("group_participants_update", _groups({"group_id": "G1"}, {"type": "x"})),
        ("group_settings_update", _groups({"group_id": ""})),
        ("group_status_update", _groups({"group_id": ["G1"]})),
        ("group_lifecycle_update", _groups()),
        # The right list under another field's name is no party of that field.
        ("account_update", _preferences(_stop(wa_id="1"))),
        ("history", _groups({"group_id": "G1"})),
        ("brand_new_field", _groups({"group_id": "G1"})),
    ],
)
def test_a_change_naming_no_single_party_keeps_the_tenant_key(
    field: str, value: dict[str, Any]
) -> None:
    """Several customers or groups, one that names nobody, a malformed list or another
    field: the tenant's non-conversation key, as before."""
    assert _key_of(field, value) == TENANT_KEY


def test_a_non_object_field_value_keeps_the_tenant_key() -> None:
    """A change value that is not an object is one field item on the tenant's key."""
    for field in ("user_preferences", *GROUP_FIELDS):
        assert customer_of("field", field, ["not", "an", "object"]) is None
        assert customer_of("field", field, None) is None


_customers = st.sampled_from(["1", "2", "US.1"])


@given(st.lists(_customers, min_size=1, max_size=6))
def test_preferences_are_keyed_by_a_customer_only_when_all_entries_agree(
    customers: list[str],
) -> None:
    """Whatever the entries: one distinct customer gives its key, two or more the tenant's."""
    entries = [_stop(user_id=c) if c.startswith("US.") else _stop(wa_id=c) for c in customers]
    expected = customers[0] if len(set(customers)) == 1 else None
    assert customer_of("field", "user_preferences", _preferences(*entries)) == expected


@pytest.mark.parametrize(
    "body",
    [
        [],
        "text",
        {"object": "page", "entry": []},
        {"object": "whatsapp_business_account"},
        {"object": "whatsapp_business_account", "entry": []},
        {"object": "whatsapp_business_account", "entry": [{"id": "1"}]},
        {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"value": {}}]}]},
    ],
)
def test_not_a_whatsapp_envelope_is_rejected(body: Any) -> None:
    """Bodies that are not WhatsApp webhooks raise EnvelopeError (answered 400)."""
    with pytest.raises(EnvelopeError):
        split_delivery(body, CTX, everyone_is_acme)


def test_a_number_nobody_owns_is_refused() -> None:
    """The resolver returning None means no tenant owns the number (answered 403)."""
    with pytest.raises(UnknownNumberError):
        split_delivery(two_customers_and_a_status(), CTX, lambda p, w: None)


def _scanned_contact(kind: Any, contacts: Any, item: Any) -> Any:
    """The contact matching as it was before the index (a scan of contacts[] per item)."""
    if not isinstance(contacts, list) or not isinstance(item, dict):
        return None
    keys = ("from", "from_user_id") if kind == "message" else ("recipient_id", "recipient_user_id")

    def text(value: Any) -> str | None:
        return None if value is None or isinstance(value, dict | list) else str(value)

    ids = {text(item.get(key)) for key in keys} - {None, ""}
    candidates = [c for c in contacts if isinstance(c, dict)]
    for contact in candidates:
        if {text(contact.get("wa_id")), text(contact.get("user_id"))} & ids:
            return contact
    if kind == "message" and len(candidates) == 1:
        return candidates[0]
    return None


_ids = st.none() | st.sampled_from(["", "1", "2", "3", "US.1"]) | st.integers(1, 3)
_contacts = st.lists(
    st.fixed_dictionaries({}, optional={"wa_id": _ids, "user_id": _ids, "n": st.integers()})
    | st.integers(),
    max_size=5,
)
_parties = st.fixed_dictionaries(
    {},
    optional={
        "from": _ids,
        "from_user_id": _ids,
        "recipient_id": _ids,
        "recipient_user_id": _ids,
    },
)


@given(_contacts, st.lists(_parties, max_size=4), st.lists(_parties, max_size=4))
def test_each_item_gets_the_contact_a_scan_would_have_found(
    contacts: list[Any], messages: list[Any], statuses: list[Any]
) -> None:
    """The per-change index finds, for every message and status, the same contact (each is
    tagged with its position) as scanning contacts[] in order: the first match on wa_id /
    user_id, else a message's only contact."""
    contacts = [{**c, "pos": n} if isinstance(c, dict) else c for n, c in enumerate(contacts)]
    value = {"contacts": contacts, "messages": messages, "statuses": statuses}
    items = split_delivery(envelope(("messages", value)), CTX, everyone_is_acme)
    expected = [_scanned_contact("message", contacts, m) for m in messages]
    expected += [_scanned_contact("status", contacts, s) for s in statuses]
    assert [i.contact for i in items if i.kind != "field"] == expected
