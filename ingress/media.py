"""`GET /media/{key}`: the stored media files of the embedded store, at signed URLs.

The folder media store (adapters/media_local.py) signs `url`s for the service's own public
base URL; this route checks them (through the MediaFiles port) and streams the file. With
S3 the store presigns URLs of its own and the app gets no MediaFiles: every path here is a
404, like a quarantined file, an unknown key or one of another shape (`..` included), so
the route tells nothing about what exists. A bad or missing signature is a 403 whether or
not the URL has expired too; only a good signature past its expiry says `url_expired`.

A served file is private to whoever holds the URL: cached privately until the URL expires
(`Cache-Control: private, max-age=<remaining>`), never sniffed into another type, never
allowed to run script in the service's origin (a sandboxing CSP), and downloaded rather
than displayed unless it is an image, audio or video.
"""

from __future__ import annotations

import math
import time

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from adapters.errors import TransientError
from adapters.ports import MediaFiles
from ingress.rejection import RequestRejected
from models.media import is_media_key

_INLINE = ("image/", "audio/", "video/")
_NEVER_INLINE = frozenset({"image/svg+xml"})  # script in an image: never shown in our origin


class MediaNotFound(RequestRejected):
    """No stored file by that key (or a quarantined one, or no such key shape)."""

    status, code, default_message = 404, "not_found", "no such media file"


class MediaSignatureInvalid(RequestRejected):
    """The URL's signature is missing or was not made by this service for this key."""

    status, code, default_message = 403, "signature_mismatch", "the URL's signature is not valid"


class MediaUrlExpired(RequestRejected):
    """A URL this service signed, past its expiry."""

    status, code, default_message = 403, "url_expired", "the URL has expired"


class MediaStoreUnavailable(RequestRejected):
    """The media folder could not be read; the same URL may be tried again."""

    status, code, default_message = 503, "store_unavailable", "the media store did not answer"


def media_router(files: MediaFiles | None) -> APIRouter:
    """The `GET /media/{key}` route over `files` (None: every path answers 404)."""
    router = APIRouter()

    @router.get(
        "/media/{key:path}",
        response_model=None,
        summary="A stored media file, at the signed URL an event carries",
    )
    async def media(
        key: str,
        expires: str | None = Query(None),
        signature: str | None = Query(None),
    ) -> FileResponse:
        if files is None or not is_media_key(key):
            raise MediaNotFound
        verdict = files.check(key, expires, signature)
        if verdict == "invalid":
            raise MediaSignatureInvalid
        if verdict == "expired":
            raise MediaUrlExpired
        assert expires is not None  # checked "ok"
        try:
            found = await files.open(key)
        except TransientError as exc:
            raise MediaStoreUnavailable from exc
        if found is None:
            raise MediaNotFound
        remaining = max(0, math.floor(int(expires) - time.time()))
        kind = found.content_type.split(";", 1)[0].strip().lower()
        inline = kind.startswith(_INLINE) and kind not in _NEVER_INLINE
        name = key.rsplit("/", 1)[-1]
        headers = {
            "Cache-Control": f"private, max-age={remaining}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{name}"',
        }
        return FileResponse(found.path, media_type=found.content_type, headers=headers)

    return router
