"""Media files (issue 12): what a media message's event says about its file, and the job
that fetches it.

A media message (image, video, audio, document, sticker) names a Meta `media_id`; the
media pool (actors/media_pool.py) resolves it through the Graph API, downloads it from an
allowed host, verifies Meta's sha256, detects its real type, scans, sanitizes, describes
and stores it, and answers with a MediaFile, which the event carries as `data.file`
(docs/media.md). The shard waits for it, holding only that conversation.

Reasons are machine codes (REASONS), with a human `detail` beside them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MediaStatus = Literal["stored", "rejected", "failed", "skipped"]
"""`stored`: fetched, checked and stored (the object and its URL are in the event);
`rejected`: fetched but refused (quarantined, never reachable through a URL);
`failed`: could not be fetched or stored within the retry budget (a replay tries again);
`skipped`: not fetched on purpose (media download off for the tenant or the type)."""

# Why a file was rejected (status "rejected"): the file's own fault, never retried.
REJECT_REASONS = (
    "sha256_mismatch",  # the bytes' sha256 is not what Meta sent
    "size_mismatch",  # not the file_size the Graph API announced
    "too_large",  # over the cap for its message type
    "type_mismatch",  # the detected type is not the declared MIME type
    "type_not_allowed",  # the detected type is not allowed for the message type
    "unrecognized",  # no known file signature
    "malware",  # the scanner found a signature (detail: its name)
    "executable",  # a program (PE, ELF, Mach-O, script with a shebang, ...)
    "macro",  # a macro-enabled Office document
    "archive_bomb",  # an archive whose members expand far beyond its size or count
    "pixel_bomb",  # an image whose pixel count is over the limit
    "corrupt",  # the detected type's decoder refuses it
    "host_not_allowed",  # the download URL (or a redirect) leaves WA_MEDIA_ALLOWED_HOSTS
)
# Why a file could not be had (status "failed"): retried within the budget, then published.
FAIL_REASONS = (
    "lookup_failed",  # GET /{media-id} kept failing (5xx, network, throttled)
    "not_found",  # Meta says the media id does not exist (deleted, expired after 30 days)
    "unauthorized",  # the tenant's token was refused (revoked, expired)
    "no_token",  # the tenant has no access token configured
    "download_failed",  # the download kept failing (5xx, network, expired URLs)
    "scanner_unavailable",  # clamd did not answer
    "store_unavailable",  # the media store (S3) did not answer
    "timeout",  # WA_MEDIA_WAIT_S passed before the file was ready
    "worker_lost",  # the media worker process died on this file
    "internal_error",  # an unexpected error in the pipeline (detail: its type)
)
SKIP_REASONS = (
    "disabled",  # media download is off (WA_MEDIA_ENABLED; the tenant's `media.download`)
    "type_disabled",  # off for this message type (WA_MEDIA_TYPES; the tenant's `media.types`)
)
REASONS = REJECT_REASONS + FAIL_REASONS + SKIP_REASONS


class _Closed(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MediaMetadata(_Closed):
    """What the stored file is, read by kept libraries from the bytes themselves (never
    from what the sender claimed): only the fields its type has are set."""

    width: int | None = None
    height: int | None = None
    duration_s: float | None = None
    pages: int | None = None
    frames: int | None = None  # an animated image's frame count
    video_codec: str | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    bitrate: int | None = None
    exif_removed: bool = False  # EXIF (GPS included) was stripped before storing
    recompressed: bool = False  # a large image was re-encoded smaller


class MediaFile(_Closed):
    """`data.file` of a media message's event (docs/media.md)."""

    status: MediaStatus
    reason: str | None = None  # one of REASONS when status is not "stored"
    detail: str | None = None  # a human word on the reason
    object_key: str | None = None  # where the stored (or quarantined) object lies
    url: str | None = None  # presigned / signed URL of the stored object, never a rejected one
    url_expires_at: datetime | None = None
    size: int | None = None  # bytes downloaded (what Meta sent)
    sha256: str | None = None  # hex sha256 of what Meta sent, verified against its own
    stored_sha256: str | None = None  # hex sha256 of the stored, sanitized object
    stored_size: int | None = None
    mime_type: str | None = None  # the detected type
    metadata: MediaMetadata | None = None
    thumbnail_key: str | None = None
    thumbnail_url: str | None = None
    attempts: int = Field(default=0, ge=0)  # pipeline runs it took (1 when first time right)


class MediaJob(_Closed):
    """One file to fetch: the media message's facts the pipeline needs, nothing else."""

    tenant_id: str
    event_id: str  # the message's wamid (logs, the quarantine's metadata)
    media_id: str
    media_type: Literal["image", "video", "audio", "document", "sticker"]
    declared_mime: str | None = None
    declared_sha256: str | None = None  # as Meta sent it in the webhook (base64 or hex)
    filename: str | None = None
    animated: bool = False
    voice: bool = False
    sent_at: datetime  # the message's timestamp: the object key's <yyyy>/<mm>
    # The tenant's media policy (docs/tenants.md): its cap for this type (the service's
    # applies when lower) and its file URLs' lifetime (None: the service's).
    max_bytes: int | None = Field(default=None, ge=1)
    url_ttl_s: int | None = Field(default=None, ge=1)


def media_key(tenant_id: str, sent_at: datetime, media_id: str) -> str:
    """`<tenant>/<yyyy>/<mm>/<media_id>`: one object per media id, the same on every try.

    A logical key: the media store puts stored objects under its media prefix (`media/`)
    and rejected ones under `quarantine/`, which no URL ever serves (adapters/ports.py).
    """
    return f"{tenant_id}/{sent_at.year:04d}/{sent_at.month:02d}/{media_id}"


def thumbnail_key(key: str) -> str:
    """The thumbnail's key beside its object's."""
    return f"{key}.thumb.jpg"


# media_key's shape (a tenant id of models/tenant.py, <yyyy>/<mm>, then the media id with
# an optional suffix such as thumbnail_key's): no segment starts with a dot, so no `..`,
# no hidden name, no absolute path and nothing a URL or a file system would reinterpret.
_KEY = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}/[0-9]{4}/[0-9]{2}/[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")


def is_tenant_id(value: str) -> bool:
    """Whether `value` is a tenant id (a media key's first segment): safe as a folder
    or an object prefix."""
    return _TENANT.fullmatch(value) is not None


_TENANT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def is_media_key(key: str) -> bool:
    """Whether `key` has media_key's (or thumbnail_key's) shape; stores refuse any other."""
    return _KEY.fullmatch(key) is not None
