"""What one signed body may expand into (issue 9, point 3): items per delivery, JSON values
per body, the stored size of one item and of the whole delivery relative to its body.
Every refusal is a JSON error and stores nothing; Meta-shaped deliveries are far inside."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.app import ingress_client, signed, stored_count
from tests.support.bodies import envelope, messages_value, text_message

SENDER = "16505550123"


def contact_amplifier(messages: int, name_bytes: int) -> dict[str, Any]:
    """One change: one contact with a `name_bytes` name, `messages` tiny messages from it.

    Before the caps every message stored its own copy of the contact: messages x name_bytes.
    """
    contact = {"profile": {"name": "x" * name_bytes}, "wa_id": SENDER}
    tiny = [{"from": SENDER, "id": f"m{n}"} for n in range(messages)]
    return envelope(("messages", messages_value(tiny, contacts=[contact])))


def many_statuses(count: int, per_change: int = 10_000) -> dict[str, Any]:
    """`count` minimal statuses spread over changes of at most `per_change` each."""
    sizes = [min(per_change, count - start) for start in range(0, count, per_change)]
    return envelope(*(("messages", {"statuses": [{}] * size}) for size in sizes))


async def test_a_contact_shared_by_many_messages_cannot_multiply_the_stored_bytes(
    tmp_path: Path,
) -> None:
    """A 91 KB body (one 20 KB contact, 2,000 tiny messages) used to store 41 MB (450x):
    now 413 delivery_too_large, nothing stored."""
    raw, headers = signed(contact_amplifier(2_000, 20_000))
    assert len(raw) < 100_000
    async with ingress_client(tmp_path) as (client, inbox):
        reply = await client.post("/webhook", content=raw, headers=headers)
        assert reply.status_code == 413, reply.text[:200]
        assert reply.json()["error"]["code"] == "delivery_too_large"
        assert await stored_count(inbox) == 0


async def test_more_items_than_the_cap_is_413(tmp_path: Path) -> None:
    """5,001 items (the default cap is 5,000): 413 too_many_items, nothing stored; 5,000 pass."""
    async with ingress_client(tmp_path) as (client, inbox):
        raw, headers = signed(many_statuses(5_001))
        reply = await client.post("/webhook", content=raw, headers=headers)
        assert reply.status_code == 413, reply.text[:200]
        assert reply.json()["error"] == {
            "code": "too_many_items",
            "message": "the delivery holds more than 5000 items",
        }
        assert await stored_count(inbox) == 0
        raw, headers = signed(many_statuses(5_000))
        assert (await client.post("/webhook", content=raw, headers=headers)).status_code == 200


async def test_more_json_values_than_the_cap_is_400(tmp_path: Path) -> None:
    """600,000 values in a 1.2 MB body (the default cap is 500,000): 400 body_out_of_bounds."""
    data = envelope(("messages", messages_value([text_message("wamid.N", SENDER)])))
    data["entry"][0]["changes"][0]["value"]["messages"][0]["extra"] = [[0] * 10_000] * 60
    raw, headers = signed(data)
    async with ingress_client(tmp_path) as (client, inbox):
        reply = await client.post("/webhook", content=raw, headers=headers)
        assert reply.status_code == 400, reply.text[:200]
        assert reply.json()["error"] == {
            "code": "body_out_of_bounds",
            "message": "the body holds more than 500000 JSON values",
        }
        assert await stored_count(inbox) == 0
