"""Behaviours of the contract that the goldens only show: each test states one rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from models.envelope import EnvelopeError
from models.event import NormalizedEvent, UnknownFieldData, UnsupportedData
from models.event_message import (
    FlowReplyData,
    MediaData,
    ReactionData,
    UnknownInteractiveData,
    UnknownMessageData,
)
from models.event_status import StatusData
from tests.support.webhooks import FIXTURES, load, run_pipeline


def events_of(name: str, body: Any = None) -> list[NormalizedEvent]:
    return run_pipeline(body if body is not None else load(FIXTURES / f"{name}.json"))[1]


def one(name: str, body: Any = None) -> NormalizedEvent:
    (event,) = events_of(name, body)
    return event


def test_message_event_id_is_the_wamid_and_status_id_adds_the_state() -> None:
    """Idempotency keys: `<wamid>` for a message, `<wamid>:<status>` for a status."""
    message = load(FIXTURES / "message_text.json")
    wamid = message["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    assert one("message_text").event_id == wamid
    assert one("status_read").event_id == "wamid.TESTOUTBOUND0001=:read"
    assert one("value_errors").event_id.startswith("h:")


def test_string_and_integer_timestamps_mean_the_same_instant() -> None:
    """Meta sends unix seconds as "1767225600" or 1767225600; both normalize alike."""
    assert one("message_text").occurred_at == one("message_text_integer_timestamp").occurred_at


def test_a_non_numeric_timestamp_is_unsupported_not_guessed() -> None:
    """A timestamp we cannot read would corrupt ordering data: the item is unsupported."""
    body = load(FIXTURES / "message_text.json")
    body["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = "yesterday"
    event = one("", body)
    assert event.category == "unsupported"
    assert isinstance(event.data, UnsupportedData)
    assert [i.loc for i in event.data.issues] == ["text.timestamp"]
    assert event.data.raw["timestamp"] == "yesterday"


def test_customer_is_enriched_with_e164_calling_code_and_region() -> None:
    """wa_id 447700900123 -> +447700900123, 44, GB (offline phonenumbers metadata)."""
    customer = one("message_text").customer
    assert customer is not None
    assert (customer.phone_e164, customer.country_code, customer.region) == (
        "+447700900123",
        44,
        "GB",
    )
    assert customer.name == "Ada Lovelace"


def test_username_only_sender_is_named_by_user_id_and_username() -> None:
    """`from: ""` + `from_user_id`: no wa_id, no phone, the profile's country as region."""
    customer = one("message_text_username_only").customer
    assert customer is not None
    assert customer.wa_id is None
    assert customer.phone_e164 is None
    assert (customer.user_id, customer.username, customer.region) == (
        "user.7f3a9c0d11e2b4a5",
        "@grace.h",
        "US",
    )


def test_group_message_is_keyed_by_the_group_not_the_participant() -> None:
    """Two participants of one group share a conversation; the participant is the customer."""
    body = load(FIXTURES / "message_text_group.json")
    other = copy.deepcopy(body)
    other["entry"][0]["changes"][0]["value"]["messages"][0]["from"] = "5511987650000"
    first, second = one("", body), one("", other)
    assert first.group_id == "120363000000000001@g.us"
    assert first.conversation_id == second.conversation_id
    assert first.customer
    assert second.customer
    assert first.customer.wa_id != second.customer.wa_id


def test_reaction_with_empty_emoji_is_a_removal() -> None:
    """Meta removes a reaction by sending emoji ""."""
    added, removed = one("message_reaction").data, one("message_reaction_removed").data
    assert isinstance(added, ReactionData)
    assert isinstance(removed, ReactionData)
    assert (added.removed, removed.removed, removed.emoji) == (False, True, None)


def test_flow_reply_response_json_string_is_decoded() -> None:
    """nfm_reply.response_json arrives as a JSON string; the event carries the object."""
    data = one("message_interactive_nfm_reply").data
    assert isinstance(data, FlowReplyData)
    assert data.response == {"flow_token": "tok-1", "size": "M", "colour": "blue"}


def test_flow_reply_with_invalid_json_is_unsupported_with_the_raw_item() -> None:
    """A response_json that is not a JSON object is not published as garbage."""
    event = one("message_malformed_nfm_json")
    assert event.category == "unsupported"
    assert isinstance(event.data, UnsupportedData)
    assert event.data.raw["interactive"]["nfm_reply"]["response_json"] == "{not json"


def test_unknown_message_type_is_published_with_its_raw_item() -> None:
    """A new Meta type is a `message` event of that type, not an error."""
    event = one("message_unknown_type")
    assert (event.category, event.type) == ("message", "video_note")
    assert isinstance(event.data, UnknownMessageData)
    assert event.data.raw["video_note"]["id"] == "900000000000006"


def test_unknown_interactive_type_keeps_its_raw_content() -> None:
    """An interactive reply of a new type falls to `interactive_unknown`."""
    data = one("message_interactive_unknown_type").data
    assert isinstance(data, UnknownInteractiveData)
    assert data.interactive_type == "carousel_reply"
    assert data.raw["carousel_reply"] == {"id": "card-2"}


def test_unknown_field_is_published_under_other_with_the_raw_value() -> None:
    """A field this version does not know is answered and published, never dropped."""
    event = one("field_unknown")
    assert (event.category, event.type) == ("other", "business_status_moonphase")
    assert isinstance(event.data, UnknownFieldData)
    assert event.data.raw == {"phase": "full"}


def test_voice_note_and_animated_sticker_flags_survive() -> None:
    """audio.voice and sticker.animated are kept as booleans."""
    voice, sticker = one("message_audio_voice").data, one("message_sticker_animated").data
    assert isinstance(voice, MediaData)
    assert voice.voice
    assert isinstance(sticker, MediaData)
    assert sticker.animated


def test_reply_forward_and_referral_context_are_lifted_to_the_event() -> None:
    """`context` and `referral` become reply_to / forwarded / referral."""
    reply = one("message_text_reply").reply_to
    assert reply is not None
    assert reply.message_id == "wamid.TESTPREVIOUS0001="
    forwarded = one("message_text_forwarded").forwarded
    assert forwarded is not None
    assert forwarded.frequently
    referral = one("message_text_referral_ctwa").referral
    assert referral is not None
    assert referral.ctwa_clid == "ARtestclickid0001"
    product = one("message_text_referred_product").reply_to
    assert product is not None
    assert product.referred_product is not None
    assert product.referred_product.product_retailer_id == "sku-blue-42"


def test_status_to_a_group_names_the_group_and_no_customer() -> None:
    """recipient_type group: recipient_id is the group."""
    event = one("status_group")
    assert isinstance(event.data, StatusData)
    assert event.group_id == event.data.group_id == "120363000000000001@g.us"
    assert event.customer is None


def test_status_of_a_username_only_customer_gets_the_contact() -> None:
    """recipient_id "" + recipient_user_id: the contact is matched on user_id."""
    event = one("status_user_id_only")
    assert event.customer is not None
    assert (event.customer.user_id, event.customer.username) == (
        "user.7f3a9c0d11e2b4a5",
        "@grace.h",
    )


def test_batch_yields_one_event_per_item_in_order() -> None:
    """Two entries, three changes, five items: five events, none dropped."""
    items, events = run_pipeline(load(FIXTURES / "batch_mixed.json"))
    assert [e.routing_key for e in events] == [
        "acme.message.text",
        "acme.message.text",
        "acme.status.delivered",
        "acme.status.read",
        "acme.account.account_review_update",
    ]
    assert [e.customer.wa_id if e.customer else None for e in events][:2] == [
        "447700900123",
        "5511987650000",
    ]
    assert len(items) == 5


def test_call_status_is_a_call_event() -> None:
    """`statuses[]` under the `calls` field are call statuses, not message statuses."""
    event = one("field_calls_status")
    assert (event.category, event.type) == ("call", "status")
    assert isinstance(event.data, StatusData)
    assert event.data.status_of == "call"


@pytest.mark.parametrize(
    "name",
    ["quirk_field_on_entry", "quirk_field_and_object_in_value", "quirk_object_missing"],
)
def test_envelope_quirks_in_metas_own_examples_are_accepted(name: str) -> None:
    """`field` on the entry or inside `value`, `object` missing: still an account event."""
    assert one(name).routing_key == "acme.account.account_update"


def test_template_quality_update_labelled_as_status_update_is_a_quality_update() -> None:
    """Meta's example sends a quality change under message_template_status_update."""
    assert one("quirk_template_quality_as_status_update").type == (
        "message_template_quality_update"
    )


def test_an_envelope_of_another_product_is_rejected() -> None:
    """`object: page` is not a WhatsApp webhook (answered 400 by the ingress)."""
    body = load(FIXTURES / "message_text.json")
    body["object"] = "page"
    with pytest.raises(EnvelopeError):
        run_pipeline(body)
