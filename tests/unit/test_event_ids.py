"""Idempotency keys: a retry repeats them, a distinct real event never shares one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from actors.normalize import normalize
from models.envelope import DeliveryContext, split_delivery
from tests.support.bodies import envelope

CTX = DeliveryContext("d", datetime(2026, 1, 1, tzinfo=UTC), partitions=4)


def event_ids(body: dict[str, Any]) -> list[str]:
    items = split_delivery(body, CTX, lambda _p, _w: "acme")
    return [normalize(item).event_id for item in items]


def quality(event: str, time: int) -> dict[str, Any]:
    body = envelope(
        ("phone_number_quality_update", {"display_phone_number": "15550001111", "event": event})
    )
    body["entry"][0]["time"] = time
    return body


def test_a_recurring_account_event_is_not_taken_for_a_retry() -> None:
    """DOWNGRADE, UPGRADE, DOWNGRADE: the second DOWNGRADE has its own id (entry time);
    Meta's retry of the same body repeats the id exactly."""
    first = event_ids(quality("DOWNGRADE", 1_767_225_600))
    again = event_ids(quality("DOWNGRADE", 1_767_312_000))
    retry = event_ids(quality("DOWNGRADE", 1_767_225_600))
    assert first != again
    assert first == retry


def test_each_group_participant_status_has_its_own_id() -> None:
    """One group message is read by two participants: two statuses, two ids."""

    def group_read(participant: str) -> dict[str, Any]:
        status = {
            "id": "wamid.G1",
            "status": "read",
            "timestamp": "1767225600",
            "recipient_id": "120363000000000001",
            "recipient_type": "group",
            "recipient_participant_id": participant,
        }
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"phone_number_id": "1", "display_phone_number": "1"},
            "statuses": [status],
        }
        return envelope(("messages", value))

    (alice,) = event_ids(group_read("16505550001"))
    (bob,) = event_ids(group_read("16505550002"))
    assert alice != bob
    assert alice.startswith("wamid.G1:read")
