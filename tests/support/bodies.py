"""Webhook bodies for tests, built the way Meta shapes them (the project's own fixtures)."""

from __future__ import annotations

import time
from typing import Any

WABA = "102290129340398"
PHONE_ID = "106540352242922"
DISPLAY = "15550783881"


def text_message(
    wamid: str, sender: str, body: str = "hi", ts: int | None = None
) -> dict[str, Any]:
    """A text message as it appears in value.messages[]."""
    return {
        "from": sender,
        "id": wamid,
        "timestamp": str(ts if ts is not None else int(time.time())),
        "type": "text",
        "text": {"body": body},
    }


def status(
    wamid: str, recipient: str, state: str = "delivered", ts: int | None = None
) -> dict[str, Any]:
    """A status as it appears in value.statuses[]."""
    return {
        "id": wamid,
        "status": state,
        "timestamp": str(ts if ts is not None else int(time.time())),
        "recipient_id": recipient,
    }


def messages_value(
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    phone_number_id: str = PHONE_ID,
    contacts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The `value` of a `messages` change."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY, "phone_number_id": phone_number_id},
    }
    if messages is not None:
        value["messages"] = messages
        value["contacts"] = (
            contacts
            if contacts is not None
            else [
                {"profile": {"name": f"Customer {m['from']}"}, "wa_id": m["from"]} for m in messages
            ]
        )
    if statuses is not None:
        value["statuses"] = statuses
    return value


def envelope(*changes: tuple[str, dict[str, Any]], waba: str = WABA) -> dict[str, Any]:
    """A full webhook body with one entry holding the given (field, value) changes."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba, "changes": [{"field": f, "value": v} for f, v in changes]}],
    }


def two_customers_and_a_status() -> dict[str, Any]:
    """The end-to-end body: two messages from two customers and one status, one POST."""
    return envelope(
        (
            "messages",
            messages_value(
                messages=[
                    text_message("wamid.A1", "16505550001", "first"),
                    text_message("wamid.B1", "16505550002", "second"),
                ],
            ),
        ),
        (
            "messages",
            messages_value(statuses=[status("wamid.OUT1", "16505550001", "read")]),
        ),
    )
