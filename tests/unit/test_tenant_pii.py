"""The PII rule (models/tenant_pii.py) over every published golden event: no clear
customer name or number is left in the JSON, the event still fits the schema, its ids
and sequence are unchanged, and what is not a customer's (the business number, a
location's name) is kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from models.conversation import ConversationCustomer, ConversationRecord
from models.event import NormalizedEvent
from models.tenant import AppSecret, PiiRule, Tenant, TenantRules
from models.tenant_pii import MASK, NAME_KEYS, PHONE_KEYS, mask_event, mask_state, mask_value

GOLDEN = Path(__file__).parents[1] / "golden"
GOLDENS = sorted(GOLDEN.glob("*.json"))


def tenant(customer_name: str = "mask", phone: str = "hash", key: str = "k" * 32) -> Tenant:
    return Tenant(
        id="acme",
        app_secrets=(AppSecret(secret=SecretStr("s")),),
        pii_key=SecretStr(key),
        rules=TenantRules(
            pii=PiiRule.model_validate({"customer_name": customer_name, "phone": phone})
        ),
    )


def clear_values(value: Any, key: str | None = None, parent: str | None = None) -> set[str]:
    """Every name and number the golden JSON carries, found by member name."""
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            found |= clear_values(v, k, key)
    elif isinstance(value, list):
        if key == "participants":
            found |= {v for v in value if isinstance(v, str)}
        for v in value:
            found |= clear_values(v, key, parent)
    elif isinstance(value, str | int) and not isinstance(value, bool) and str(value):
        name = key in NAME_KEYS or (key == "name" and parent in {"customer", "profile", "name"})
        if key in PHONE_KEYS or name:
            found.add(str(value))
    return found


def golden_events() -> list[tuple[str, NormalizedEvent]]:
    events = []
    for path in GOLDENS:
        for index, raw in enumerate(json.loads(path.read_text())):
            events.append((f"{path.stem}[{index}]", NormalizedEvent.model_validate(raw)))
    return events


EVENTS = golden_events()


def test_the_goldens_carry_names_and_numbers() -> None:
    # Guards the test below: it must have clear values to look for.
    found = set().union(*(clear_values(e.model_dump(mode="json")) for _, e in EVENTS))
    assert {"447700900123", "Ada Lovelace", "447700900456", "Charles Babbage"} <= found


@pytest.mark.parametrize(("name", "event"), EVENTS, ids=[n for n, _ in EVENTS])
def test_no_clear_name_or_number_is_published(name: str, event: NormalizedEvent) -> None:
    business = event.business.display_phone_number
    clear = clear_values(event.model_dump(mode="json")) - {business}  # the tenant's own
    masked = mask_event(event, tenant())
    published = masked.model_dump_json()
    left = sorted(v for v in clear if v in published and v != MASK and not v.startswith("h:"))
    assert left == [], f"{name}: clear values in the published JSON: {left}"
    # Still the schema's event, with its ids and numbering.
    again = NormalizedEvent.model_validate_json(published)
    assert (again.conversation_id, again.sequence) == (event.conversation_id, event.sequence)
    # A status's event_id ends in its recipient's number: hashed, the same way every time
    # (the id stays the consumers' idempotency key); any other id is kept.
    if any(v in event.event_id for v in clear):
        assert again.event_id != event.event_id
        assert mask_event(event, tenant()).event_id == again.event_id
    else:
        assert again.event_id == event.event_id
    assert again.business == event.business  # the business's own number is kept


def event_of(stem: str) -> NormalizedEvent:
    return next(e for n, e in EVENTS if n == f"{stem}[0]")


def test_numbers_are_hashed_with_the_tenant_key_and_names_masked() -> None:
    acme = tenant()
    event = mask_event(event_of("message_contacts"), acme)
    assert event.customer is not None
    assert event.customer.wa_id == acme.hash_phone("447700900123")
    assert event.customer.phone_e164 == acme.hash_phone("447700900123")  # one number, one hash
    assert event.customer.name == MASK
    data = event.model_dump(mode="json")["data"]["contacts"][0]
    assert data["formatted_name"] == MASK
    assert data["last_name"] == MASK
    # "+44 7700 900456" as written on the card is the card's wa_id: the same hash.
    phone = data["phones"][0]
    assert phone["phone"] == phone["wa_id"] == acme.hash_phone("447700900456")
    assert data["company"] == "Analytical Engines Ltd"  # not a name or a number: kept
    other = tenant(key="another key, another tenant")
    assert mask_event(event_of("message_contacts"), other).customer.wa_id != event.customer.wa_id  # type: ignore[union-attr]


def test_each_half_of_the_rule_alone() -> None:
    source = event_of("message_text")
    names_only = mask_event(source, tenant(phone="keep"))
    assert names_only.customer is not None
    assert source.customer is not None
    assert names_only.customer.name == MASK
    assert names_only.customer.wa_id == source.customer.wa_id
    numbers_only = mask_event(source, tenant(customer_name="keep"))
    assert numbers_only.customer is not None
    assert numbers_only.customer.name == source.customer.name
    assert numbers_only.customer.wa_id != source.customer.wa_id


def test_a_tenant_that_keeps_everything_publishes_the_event_itself() -> None:
    source = event_of("message_contacts")
    assert mask_event(source, tenant("keep", "keep")) is source
    assert mask_event(source, None) is source


def test_what_is_not_a_customer_is_kept() -> None:
    source = event_of("message_location")
    masked = mask_event(source, tenant())
    assert masked.data == source.data  # a location's name is the place's


def test_a_number_quoted_in_a_text_is_hashed_too() -> None:
    source = event_of("message_text")
    assert source.customer is not None
    assert source.customer.wa_id is not None
    quoted = source.model_copy(
        update={"data": source.data.model_copy(update={"body": f"call {source.customer.wa_id}"})}
    )
    body = str(mask_event(quoted, tenant()).data.body)  # type: ignore[union-attr]
    assert source.customer.wa_id not in body
    assert body.startswith("call h:")


def test_group_participants_and_status_recipients_are_hashed() -> None:
    acme = tenant()
    group = mask_event(event_of("field_group_participants_update"), acme).model_dump(mode="json")
    assert group["data"]["groups"][0]["added_participants"][0]["wa_id"] == acme.hash_phone(
        "447700900123"
    )
    status = mask_event(event_of("status_delivered"), acme)
    assert status.data.recipient_id is not None  # type: ignore[union-attr]
    assert status.data.recipient_id.startswith("h:")  # type: ignore[union-attr]


def test_admin_conversation_state_is_masked() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    record = ConversationRecord(
        conversation_id="c1",
        tenant_id="acme",
        kind="group",
        customer=ConversationCustomer(wa_id="447700900123", name="Ada Lovelace"),
        participants=("447700900123", "447700900456"),
        created_at=at,
    )
    acme = tenant()
    state = mask_state(record.public(at), acme)
    assert state.customer == ConversationCustomer(wa_id=acme.hash_phone("447700900123"), name=MASK)
    assert state.participants == [acme.hash_phone("447700900123"), acme.hash_phone("447700900456")]
    assert "447700900" not in state.model_dump_json()


def test_a_raw_item_is_masked() -> None:
    raw = {"from": "447700900123", "profile": {"name": "Ada"}, "text": {"body": "I am Ada"}}
    masked = mask_value(raw, tenant())
    assert "447700900123" not in json.dumps(masked)
    assert "Ada" not in json.dumps(masked)
