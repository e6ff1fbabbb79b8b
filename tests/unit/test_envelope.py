"""Splitting webhook bodies: every entry, change and item, with the right conversation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from models.envelope import (
    DeliveryContext,
    EnvelopeError,
    UnknownNumberError,
    customer_of,
    split_delivery,
)
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
    assert customer_of(kind, item) == expected


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
