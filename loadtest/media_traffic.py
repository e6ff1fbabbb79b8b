"""The media stream of a load test: one real file uploaded under many media ids, and one
signed media message per id.

Each message needs its own media id: the service's media store is idempotent per media id
(a second message naming a stored id costs one HEAD and no work), so a burst of one id
would measure nothing. The file is uploaded once per id through the Graph API's documented
upload endpoint (`POST /{version}/{phone-number-id}/media`, the simulator's or Meta's),
before the run starts, and the webhook carries what Meta's would: the id, the MIME type
and the sha256 base64-encoded. Every message comes from its own customer unless told
otherwise, so a media message holds only its own conversation and the text stream's
conversations are never the same ones.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from ingress.signature import sign
from loadtest.payloads import media_message, message_key
from loadtest.traffic import Delivery

MEDIA_STREAM = "media"
MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")

# The ids of `python -m cluster send-test`'s sample webhook (Meta's documentation examples),
# which the service's default tenant owns (it owns every number no other tenant claims),
# and which `python -m loadtest graph-sim --token ...` gives its one tenant by default.
SAMPLE_PHONE_NUMBER_ID = "106540352242922"
SAMPLE_DISPLAY_NUMBER = "15550783881"
SAMPLE_WABA_ID = "102290129340398"

# Meta's supported media types by extension (its "Supported media types" table).
_MIME_BY_SUFFIX = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".mp4": "video/mp4",
    ".3gp": "video/3gpp",
    ".aac": "audio/aac",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".ogg": "audio/ogg; codecs=opus",
    ".opus": "audio/ogg; codecs=opus",
    ".txt": "text/plain",
    ".pdf": "application/pdf",
}


class MediaUploadFailed(Exception):
    """The Graph API refused an upload (the run cannot start without its media ids)."""


@dataclass(frozen=True, slots=True)
class MediaSpec:
    """The file every media message of the run carries, and how the messages name it."""

    kind: str  # image | video | audio | document | sticker
    content: bytes
    mime_type: str
    file_name: str

    @property
    def sha256(self) -> bytes:
        """The content's SHA-256 digest (raw bytes)."""
        return hashlib.sha256(self.content).digest()


def mime_for(path: Path) -> str:
    """The file's MIME type as Meta names it, from its extension."""
    mime = _MIME_BY_SUFFIX.get(path.suffix.lower())
    if mime is None:
        raise ValueError(
            f"unknown media type for {path.name}: use one of {sorted(_MIME_BY_SUFFIX)}"
        )
    return mime


def kind_for(mime_type: str) -> str:
    """The message type a customer's app sends a file of this MIME type as."""
    base = mime_type.split(";")[0].strip().lower()
    if base == "image/webp":  # WebP is a sticker's format only (Meta's table)
        return "sticker"
    top = base.split("/")[0]
    return top if top in ("image", "video", "audio") else "document"


def load_spec(path: Path, kind: str | None = None, mime_type: str | None = None) -> MediaSpec:
    """The spec of a file on disk (MIME type from the extension, message type from the
    MIME type, unless given)."""
    mime = mime_type or mime_for(path)
    return MediaSpec(kind or kind_for(mime), path.read_bytes(), mime, path.name)


@dataclass(frozen=True, slots=True)
class GraphTarget:
    """Where and as whom to upload: the Graph API, its version, token and business number."""

    url: str
    token: str
    phone_number_id: str
    version: str = "v23.0"


async def upload_many(
    target: GraphTarget,
    spec: MediaSpec,
    count: int,
    concurrency: int = 4,
    client: httpx.AsyncClient | None = None,
) -> list[str]:
    """Upload the file `count` times (through `client`, else a client of its own); the
    media ids, in upload order."""
    if client is None:
        async with httpx.AsyncClient(timeout=120) as own:
            return await upload_many(target, spec, count, concurrency, own)
    endpoint = f"{target.url.rstrip('/')}/{target.version}/{target.phone_number_id}/media"
    headers = {"Authorization": f"Bearer {target.token}"}
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one() -> str:
        async with slots:
            answer = await client.post(
                endpoint,
                headers=headers,
                data={"messaging_product": "whatsapp", "type": spec.mime_type},
                files={"file": (spec.file_name, spec.content, spec.mime_type)},
            )
        if answer.status_code != 200:
            raise MediaUploadFailed(f"{endpoint}: {answer.status_code} {answer.text[:300]}")
        return str(answer.json()["id"])

    return list(await asyncio.gather(*(one() for _ in range(count))))


@dataclass(frozen=True, slots=True)
class MediaSender:
    """Who the media messages are addressed to and how they are signed."""

    tenant_id: str
    secret: bytes
    phone_number_id: str
    display_phone_number: str
    waba_id: str


def media_deliveries(
    spec: MediaSpec,
    media_ids: list[str],
    sender: MediaSender,
    *,
    nonce: str,
    ts: int,
    conversations: int = 0,
) -> list[Delivery]:
    """One signed POST per media id, each a single media message; message i comes from
    customer i (or i mod `conversations` when that is set, to hold conversations on
    purpose)."""
    out: list[Delivery] = []
    for i, upload_id in enumerate(media_ids):
        customer = f"99{(i % conversations if conversations else i):010d}"
        message = media_message(
            spec.kind,
            upload_id,
            spec.mime_type,
            spec.sha256,
            wamid=f"wamid.LTM{nonce}{i:08d}",
            customer=customer,
            ts=ts,
            file_name=spec.file_name,
        )
        body = orjson.dumps(_envelope(sender, customer, message))
        out.append(
            Delivery(
                sender.tenant_id,
                body,
                sign(sender.secret, body),
                (message_key(message),),
                "new",
                MEDIA_STREAM,
            )
        )
    return out


def _envelope(sender: MediaSender, customer: str, message: dict[str, Any]) -> dict[str, Any]:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": sender.display_phone_number,
            "phone_number_id": sender.phone_number_id,
        },
        "contacts": [{"profile": {"name": f"Media {customer[-4:]}"}, "wa_id": customer}],
        "messages": [message],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": sender.waba_id, "changes": [{"field": "messages", "value": value}]}],
    }
