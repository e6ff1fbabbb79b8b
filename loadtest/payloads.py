"""Webhook items as Meta shapes them: every inbound message type, statuses, field events.

Builders return plain dicts exactly as they appear inside `entry[].changes[].value`;
the traffic generator decides which to send, to whom and in what order.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Callable
from typing import Any

import orjson

Item = dict[str, Any]

MEDIA_TYPES: dict[str, str] = {
    "image": "image/jpeg",
    "audio": "audio/ogg; codecs=opus",
    "video": "video/mp4",
    "document": "application/pdf",
    "sticker": "image/webp",
}
STATUS_FLOW = ("sent", "delivered", "read")
_WORDS = [
    "hello",
    "order",
    "price",
    "when",
    "delivery",
    "thanks",
    "size",
    "colour",
    "return",
    "refund",
    "ok",
    "¿dónde",
    "está?",
    "👍",
]


def message_key(message: Item) -> str:
    """A message's tracking key: its wamid, which the service publishes as event_id."""
    return str(message["id"])


def status_key(status: Item) -> str:
    """A status's tracking key: `<wamid>:<status>`, the service's status event_id."""
    return f"{status['id']}:{status['status']}"


def media_id(rng: random.Random) -> str:
    """A Graph media id (digits only, like Meta's)."""
    return str(rng.randrange(10**15, 10**16))


def media_message(
    kind: str,
    media_id: str,
    mime_type: str,
    content_sha256: bytes,
    *,
    wamid: str,
    customer: str,
    ts: int,
    file_name: str = "file",
) -> Item:
    """A customer's media message naming an uploaded file, as Meta's webhook references
    show it: the sha256 base64-encoded (the media lookup's is hex), a filename with a
    document, `voice` with audio, `animated` with a sticker (a static one here)."""
    media: Item = {
        "mime_type": mime_type,
        "sha256": base64.b64encode(content_sha256).decode(),
        "id": media_id,
    }
    if kind == "document":
        media["filename"] = file_name
    if kind == "audio":
        media["voice"] = False
    if kind == "sticker":
        media["animated"] = False
    return {"from": customer, "id": wamid, "timestamp": str(ts), "type": kind, kind: media}


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 12)))


def _media(kind: str, rng: random.Random) -> Item:
    body: Item = {
        "mime_type": MEDIA_TYPES[kind],
        "sha256": hashlib.sha256(rng.randbytes(16)).hexdigest(),
        "id": media_id(rng),
    }
    if kind in ("image", "video", "document") and rng.random() < 0.5:
        body["caption"] = _text(rng)
    if kind == "document":
        body["filename"] = f"invoice-{rng.randrange(10**6)}.pdf"
    if kind == "audio":
        body["voice"] = rng.random() < 0.7
    if kind == "sticker":
        body["animated"] = rng.random() < 0.2
    return body


def _interactive(rng: random.Random) -> Item:
    choice = rng.choice(("button_reply", "list_reply", "nfm_reply"))
    if choice == "button_reply":
        return {"type": choice, "button_reply": {"id": f"btn-{rng.randrange(9)}", "title": "Yes"}}
    if choice == "list_reply":
        return {
            "type": choice,
            "list_reply": {"id": f"row-{rng.randrange(9)}", "title": "Size M", "description": "M"},
        }
    return {
        "type": choice,
        "nfm_reply": {
            "name": "flow",
            "body": "Sent",
            "response_json": orjson.dumps({"flow_token": rng.randrange(10**6)}).decode(),
        },
    }


# A message type's content builder: (rng, wamid it replies/reacts to) -> body fields.
_BodyBuilder = Callable[[random.Random, str | None], Item]


def _text_body(rng: random.Random, _context_wamid: str | None) -> Item:
    return {"text": {"body": _text(rng)}}


def _media_body(kind: str) -> _BodyBuilder:
    def build(rng: random.Random, _context_wamid: str | None) -> Item:
        return {kind: _media(kind, rng)}

    return build


def _location_body(rng: random.Random, _context_wamid: str | None) -> Item:
    return {
        "location": {
            "latitude": round(rng.uniform(-60, 60), 6),
            "longitude": round(rng.uniform(-170, 170), 6),
            "name": "Shop",
            "address": "1 Main St",
        }
    }


def _contacts_body(_rng: random.Random, _context_wamid: str | None) -> Item:
    return {
        "contacts": [
            {
                "name": {"formatted_name": "Ana Ruiz", "first_name": "Ana"},
                "phones": [{"phone": "+1 555 0100", "type": "CELL", "wa_id": "15550100"}],
            }
        ]
    }


def _interactive_body(rng: random.Random, _context_wamid: str | None) -> Item:
    return {"interactive": _interactive(rng)}


def _button_body(_rng: random.Random, _context_wamid: str | None) -> Item:
    return {"button": {"payload": "STOP", "text": "Stop promotions"}}


def _reaction_body(_rng: random.Random, context_wamid: str | None) -> Item:
    return {"reaction": {"message_id": context_wamid or "wamid.none", "emoji": "👍"}}


def _order_body(_rng: random.Random, _context_wamid: str | None) -> Item:
    return {
        "order": {
            "catalog_id": "310000000000001",
            "text": "please",
            "product_items": [
                {
                    "product_retailer_id": "sku-1",
                    "quantity": 2,
                    "item_price": 9.5,
                    "currency": "USD",
                }
            ],
        }
    }


def _system_body(_rng: random.Random, _context_wamid: str | None) -> Item:
    return {"system": {"body": "User changed number", "type": "user_changed_number"}}


def _request_welcome_body(_rng: random.Random, _context_wamid: str | None) -> Item:
    return {}


def _unsupported_body(_rng: random.Random, _context_wamid: str | None) -> Item:
    # Meta sends the type with an errors array instead of content.
    return {
        "errors": [
            {
                "code": 131051,
                "title": "Message type unknown",
                "message": "Message type unknown",
                "error_data": {"details": "Message type is currently not supported."},
            }
        ]
    }


# Content builder per message type; any type not listed ('unsupported' included) gets
# the unsupported body. Builders return fresh dicts, so callers may mutate them.
_BODY_BUILDERS: dict[str, _BodyBuilder] = {
    "text": _text_body,
    **{kind: _media_body(kind) for kind in MEDIA_TYPES},
    "location": _location_body,
    "contacts": _contacts_body,
    "interactive": _interactive_body,
    "button": _button_body,
    "reaction": _reaction_body,
    "order": _order_body,
    "system": _system_body,
    "request_welcome": _request_welcome_body,
}


def _body_of(kind: str, rng: random.Random, context_wamid: str | None) -> Item:
    """The type-specific fields of an inbound message of the given type."""
    return _BODY_BUILDERS.get(kind, _unsupported_body)(rng, context_wamid)


# Relative frequency of inbound message types (text dominates real traffic).
MESSAGE_WEIGHTS: dict[str, int] = {
    "text": 50,
    "image": 8,
    "audio": 6,
    "video": 3,
    "document": 3,
    "sticker": 3,
    "location": 2,
    "contacts": 1,
    "interactive": 6,
    "button": 3,
    "reaction": 4,
    "order": 1,
    "system": 1,
    "request_welcome": 1,
    "unsupported": 1,
}


def inbound_message(
    rng: random.Random,
    wamid: str,
    customer: str,
    ts: int,
    kind: str,
    context_wamid: str | None = None,
) -> Item:
    """A message a customer sent, of the given type."""
    message: Item = {"from": customer, "id": wamid, "timestamp": str(ts), "type": kind}
    message.update(_body_of(kind, rng, context_wamid))
    if context_wamid is not None and kind not in ("reaction", "system"):
        message["context"] = {"from": "15550000000", "id": context_wamid}
    if kind == "text" and rng.random() < 0.02:
        message["referral"] = {
            "source_url": "https://fb.me/ad",
            "source_type": "ad",
            "source_id": "1200",
            "headline": "Sale",
            "body": "50% off",
            "media_type": "image",
        }
    return message


def status_item(wamid: str, status: str, customer: str, ts: int, conv_id: str) -> Item:
    """A status of an outbound message; `sent`/`delivered` carry conversation and pricing."""
    item: Item = {
        "id": wamid,
        "status": status,
        "timestamp": str(ts),
        "recipient_id": customer,
    }
    if status in ("sent", "delivered"):
        item["conversation"] = {"id": conv_id, "origin": {"type": "service"}}
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
    if status == "failed":
        item["errors"] = [
            {
                "code": 131026,
                "title": "Message undeliverable",
                "message": "Message undeliverable",
                "error_data": {"details": "Receiver is incapable of receiving this message"},
            }
        ]
    return item


def _template_status(rng: random.Random, ts: int) -> Item:
    return {
        "event": rng.choice(("APPROVED", "REJECTED", "PAUSED")),
        "message_template_id": rng.randrange(10**15, 10**16),
        "message_template_name": f"promo_{rng.randrange(100)}",
        "message_template_language": "en_US",
        "reason": "NONE",
        "timestamp": ts,
    }


def _template_quality(rng: random.Random, ts: int) -> Item:
    return {
        "message_template_id": rng.randrange(10**15, 10**16),
        "message_template_name": f"promo_{rng.randrange(100)}",
        "message_template_language": "en_US",
        "previous_quality_score": "GREEN",
        "new_quality_score": rng.choice(("YELLOW", "RED")),
        "timestamp": ts,
    }


def _template_category(rng: random.Random, ts: int) -> Item:
    return {
        "message_template_id": rng.randrange(10**15, 10**16),
        "message_template_name": f"promo_{rng.randrange(100)}",
        "message_template_language": "en_US",
        "previous_category": "UTILITY",
        "new_category": "MARKETING",
        "timestamp": ts,
    }


# Non-message fields the generator sends. Each carries a fresh `message_template_id`, the
# one id Meta gives these events, so a published event can be matched to what was sent
# however the service reshapes the rest (see field_key).
FIELD_BUILDERS: dict[str, Callable[[random.Random, int], Item]] = {
    "message_template_status_update": _template_status,
    "message_template_quality_update": _template_quality,
    "template_category_update": _template_category,
}


def field_key(field: str, template_id: object) -> str:
    """The tracking key of a template field event: `<field>:<message_template_id>`."""
    return f"{field}:{template_id}"
