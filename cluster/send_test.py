"""`python -m cluster send-test`: sign a sample webhook with the default tenant's secret.

With `--media FILE`, the message is a real media message: FILE is first uploaded to the
Graph API (`WA_GRAPH_API_URL`, in development the simulator `python -m loadtest graph-sim`)
through Meta's documented upload endpoint, `POST /{version}/{phone-number-id}/media`, and
the webhook then carries the returned media id, the file's MIME type and its sha256, shaped
as Meta's webhooks shape them, so the service fetches the file back as it would from Meta.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from cluster.settings import Settings
from ingress.signature import sign

# The sample's ids (Meta's documentation examples). The default tenant owns the number:
# it owns every number no other tenant claims.
SAMPLE_WABA_ID = "102290129340398"
SAMPLE_PHONE_NUMBER_ID = "106540352242922"
SAMPLE_DISPLAY_NUMBER = "15550783881"
SAMPLE_CUSTOMER = "16505551234"

MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
# Meta's supported media types by extension (its "Supported media types" table), checked
# before the platform's guess, which differs between machines (.3gp as audio, .amr's case).
_MIME_BY_SUFFIX = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".mp4": "video/mp4",
    ".3gp": "video/3gpp",
    ".aac": "audio/aac",
    ".amr": "audio/amr",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".txt": "text/plain",
    ".pdf": "application/pdf",
}
# Meta sends a caption only with these (audio and stickers have none).
_CAPTIONED = ("image", "video", "document")


@dataclass(frozen=True, slots=True)
class MediaSend:
    """What `send-test --media` sends: the file, how to upload it, how to describe it."""

    file: Path
    kind: str | None = None  # image | video | audio | document | sticker; None: from MIME
    mime_type: str | None = None  # None: guessed from the file name
    graph_url: str | None = None  # None: WA_GRAPH_API_URL
    token: str | None = None  # None: the default tenant's WA_ACCESS_TOKEN
    phone_number_id: str = SAMPLE_PHONE_NUMBER_ID
    caption: str | None = None
    voice: bool = False


def _envelope(
    message: dict[str, Any],
    phone_number_id: str = SAMPLE_PHONE_NUMBER_ID,
    statuses: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A `messages` webhook of one customer's message (and statuses), as Meta shapes it."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": SAMPLE_DISPLAY_NUMBER,
            "phone_number_id": phone_number_id,
        },
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": SAMPLE_CUSTOMER}],
        "messages": [message],
    }
    if statuses is not None:
        value["statuses"] = statuses
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": SAMPLE_WABA_ID, "changes": [{"field": "messages", "value": value}]}],
    }


def sample_body(now: int | None = None) -> dict[str, Any]:
    """A text message from one customer plus a read status to another, in one delivery."""
    ts = str(now if now is not None else int(time.time()))
    message = {
        "from": SAMPLE_CUSTOMER,
        "id": f"wamid.TEST{ts}",
        "timestamp": ts,
        "text": {"body": "Does it come in another color?"},
        "type": "text",
    }
    status = {
        "id": f"wamid.OUT{ts}",
        "status": "read",
        "timestamp": ts,
        "recipient_id": "16505550000",
    }
    return _envelope(message, statuses=[status])


def guess_mime_type(path: Path) -> str | None:
    """The file's MIME type from its name (Meta's table first), None if unknown."""
    return _MIME_BY_SUFFIX.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]


def message_type_for(mime_type: str) -> str:
    """The message type a customer's app sends a file of this MIME type as."""
    base = mime_type.split(";")[0].strip().lower()
    if base == "image/webp":  # WebP is a sticker's format only (Meta's table)
        return "sticker"
    top = base.split("/")[0]
    return top if top in ("image", "video", "audio") else "document"


def is_animated_webp(content: bytes) -> bool:
    """A WebP with the VP8X header's animation flag (what makes a sticker `animated`)."""
    return content[:4] == b"RIFF" and content[12:16] == b"VP8X" and bool(content[20] & 0x02)


def media_body(
    kind: str,
    media_id: str,
    mime_type: str,
    content: bytes,
    *,
    file_name: str,
    phone_number_id: str = SAMPLE_PHONE_NUMBER_ID,
    caption: str | None = None,
    voice: bool = False,
    now: int | None = None,
) -> dict[str, Any]:
    """A webhook of one `kind` message of the uploaded media, as Meta's webhook references
    show it: the sha256 base64 (the media lookup's is hex), caption with image, video and
    document, filename with document, voice with audio, animated with sticker."""
    ts = str(now if now is not None else int(time.time()))
    media: dict[str, Any] = {
        "mime_type": mime_type,
        "sha256": base64.b64encode(hashlib.sha256(content).digest()).decode(),
        "id": media_id,
    }
    if caption is not None and kind in _CAPTIONED:
        media = {"caption": caption, **media}
    if kind == "document":
        media = {"filename": file_name, **media}
    if kind == "audio":
        media["voice"] = voice
    if kind == "sticker":
        media["animated"] = is_animated_webp(content)
    message = {
        "from": SAMPLE_CUSTOMER,
        "id": f"wamid.MEDIA{media_id}",  # one per upload: a second send is not a duplicate
        "timestamp": ts,
        "type": kind,
        kind: media,
    }
    return _envelope(message, phone_number_id)


def upload_media(
    graph_url: str,
    version: str,
    token: str,
    phone_number_id: str,
    file_name: str,
    content: bytes,
    mime_type: str,
) -> httpx.Response:
    """Meta's media upload: multipart `file` (with its type), `type`, `messaging_product`."""
    return httpx.post(
        f"{graph_url.rstrip('/')}/{version}/{phone_number_id}/media",
        headers={"Authorization": f"Bearer {token}"},
        data={"messaging_product": "whatsapp", "type": mime_type},
        files={"file": (file_name, content, mime_type)},
        timeout=60,
    )


def _media_webhook(settings: Settings, token: str | None, media: MediaSend) -> bytes | str:
    """Upload the file; the webhook body to send, or what went wrong (for the user)."""
    if not media.file.is_file():
        return f"no such file: {media.file}"
    mime_type = media.mime_type or guess_mime_type(media.file)
    if mime_type is None:
        return f"cannot tell the MIME type of {media.file.name}: give --mime"
    kind = media.kind or message_type_for(mime_type)
    if kind == "audio" and mime_type == "audio/ogg" and media.mime_type is None:
        mime_type = "audio/ogg; codecs=opus"  # Meta takes only Opus in OGG, and says so
    if media.caption is not None and kind not in _CAPTIONED:
        return f"Meta sends no caption with {kind} messages"
    if token is None:
        return "no Graph API token: give --token or set WA_ACCESS_TOKEN"
    graph_url = media.graph_url or settings.graph_api_url
    content = media.file.read_bytes()
    answer = upload_media(
        graph_url,
        settings.graph_api_version,
        token,
        media.phone_number_id,
        media.file.name,
        content,
        mime_type,
    )
    if answer.status_code != 200:
        return f"upload to {graph_url} refused: {answer.status_code} {answer.text}"
    media_id = str(answer.json()["id"])
    print(
        f"uploaded {media.file.name} ({mime_type}, {len(content)} bytes, sha256 "
        f"{hashlib.sha256(content).hexdigest()}) to {graph_url}: media id {media_id}"
    )
    body = media_body(
        kind,
        media_id,
        mime_type,
        content,
        file_name=media.file.name,
        phone_number_id=media.phone_number_id,
        caption=media.caption,
        voice=media.voice,
    )
    return orjson.dumps(body)


def send_test(
    settings: Settings, url: str | None, file: str | None, media: MediaSend | None = None
) -> int:
    """POST the body signed with the first secret of the default tenant; print the answer.

    The body is `file`'s bytes, else a media message of `media` (uploaded first), else the
    text sample."""
    tenants = settings.tenants()
    tenant = next((t for t in tenants if t.default), tenants[0])
    if file:
        body = Path(file).read_bytes()
    elif media is not None:
        own = tenant.access_token or settings.access_token
        token = media.token or (own.get_secret_value() if own is not None else None)
        webhook = _media_webhook(settings, token, media)
        if isinstance(webhook, str):
            print(webhook)
            return 1
        body = webhook
    else:
        body = orjson.dumps(sample_body())
    secret = tenant.app_secrets[0].get_secret_value().encode()
    target = url or f"http://{settings.host}:{settings.port}/webhook"
    response = httpx.post(
        target,
        content=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(secret, body)},
        timeout=10,
    )
    print(response.status_code, response.text)
    return 0 if response.status_code == 200 else 1
