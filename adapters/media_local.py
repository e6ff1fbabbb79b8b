"""Embedded media store: files under the data folder, served by the service itself at
signed, expiring URLs (`GET /media/<key>?expires=<unix>&signature=<hex>`, ingress/media.py).

Layout below the root (`WA_DATA_DIR`): `media/<key>` for stored files, `quarantine/<key>`
for rejected ones (never served), each with a sidecar `.<name>.json` beside it holding the
content type and the user metadata (a sidecar rather than xattrs, which tmpfs, overlay and
some volume drivers refuse). Keys have models/media.py's shape, whose segments never start
with a dot, so neither a sidecar nor a temporary file (`.tmp-<uuid>`) can be named by one.

A write copies the file to a temporary one in the key's folder and writes the sidecar to
another, fsyncs both, renames the sidecar then the file into place and fsyncs the folder:
a failure before the renames (an unreadable source, a full disk) leaves the previous object
as it was, and a file is never visible without its sidecar. Only a crash between the two
renames pairs a new sidecar with the previous file, and puts of a key are idempotent (the
pipeline stores the same bytes under it on every try). Blocking file calls run on a worker
thread, never on the event loop.

URLs are HMAC-SHA256 of the key and the expiry under one secret that every process of the
service must share (ingress replicas verify what media workers sign): the configured one
(WA_MEDIA_URL_SECRET), else a random one created once as `<root>/media-url-secret`, mode
0600, by whichever process comes first (written whole, then hard-linked into place, so a
process racing it reads the whole secret or creates none).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import os
import secrets
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from adapters.errors import TransientError
from adapters.media_meta import checked_key, checked_metadata
from adapters.ports import ServedFile, StoredObject, UrlCheck
from models.media import is_media_key, is_tenant_id

SECRET_FILE = "media-url-secret"  # noqa: S105 -- the file's name, not a secret
MIN_SECRET_BYTES = 16
MAX_URL_TTL_S = 7 * 24 * 3600  # as long as an S3 presigned URL may live
_TMP = ".tmp-"
_DOMAIN = b"wa-ingest media url v1\n"  # a signature of this store means nothing elsewhere


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_file(beside: Path, fill: Callable[[int], None]) -> Path:
    """A temporary file beside `beside`, filled by `fill(fd)` and fsynced (removed again if
    filling fails)."""
    tmp = beside.with_name(f"{_TMP}{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fill(fd)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def _read_secret(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & 0o077:
        raise ValueError(f"{path} is readable by others (mode {mode & 0o777:o}): chmod 600 it")
    secret = path.read_bytes().strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"{path} holds under {MIN_SECRET_BYTES} bytes: delete it to renew")
    return secret


def load_or_create_secret(path: Path) -> bytes:
    """The secret in `path`, created (random, mode 0600) if there is none yet."""
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{_TMP}{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_hex(32).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process linked its own first: use that one
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    _fsync_dir(path.parent)
    return _read_secret(path)


class LocalMediaStore:
    """The MediaStore port on a local folder, and the MediaFiles port that serves it."""

    def __init__(
        self,
        root: Path,
        *,
        public_url: str,
        secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`public_url`: the service's own base URL as consumers reach it (the URLs are
        `<public_url>/media/<key>?...`). `secret`: None reads or creates the secret file
        (blocking: call at start-up)."""
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError(f"not a base URL: {public_url!r}")
        if secret is not None and len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the media URL secret needs {MIN_SECRET_BYTES} bytes or more")
        self._media, self._quarantine = root / "media", root / "quarantine"
        self._base = public_url.rstrip("/")
        self._secret = secret if secret is not None else load_or_create_secret(root / SECRET_FILE)
        self._clock = clock

    # -- MediaStore --------------------------------------------------------------------

    def _write(
        self, target: Path, source: Path, content_type: str, metadata: dict[str, str]
    ) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)

        def copy(fd: int) -> None:
            with source.open("rb") as src, open(fd, "wb", closefd=False) as out:
                shutil.copyfileobj(src, out, 1024 * 1024)

        side = json.dumps({"content_type": content_type, "metadata": metadata}).encode()
        data = _temp_file(target, copy)
        try:
            side_tmp = _temp_file(target, lambda fd: _write_all(fd, side))
        except BaseException:
            data.unlink(missing_ok=True)
            raise
        side_tmp.replace(_sidecar(target))
        data.replace(target)
        _fsync_dir(target.parent)

    async def put(
        self,
        key: str,
        path: Path,
        content_type: str,
        metadata: Mapping[str, str],
        *,
        quarantine: bool = False,
    ) -> None:
        """Copy `path` in (sidecar first, each fsynced and renamed into place). ValueError
        for a key or metadata name out of their alphabets."""
        target = (self._quarantine if quarantine else self._media) / checked_key(key)
        names = checked_metadata(metadata)
        try:
            await asyncio.to_thread(self._write, target, path, content_type, names)
        except OSError as exc:
            raise TransientError(f"media folder: {exc}") from exc

    def _find(self, key: str) -> StoredObject | None:
        path = self._media / key
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        try:
            side = json.loads(_sidecar(path).read_bytes())
        except FileNotFoundError:  # only a file left by another tool: serve it as bytes
            side = {}
        return StoredObject(
            key=key,
            size=size,
            content_type=side.get("content_type", "application/octet-stream"),
            metadata=dict(side.get("metadata", {})),
        )

    async def head(self, key: str) -> StoredObject | None:
        """The stored file's size and sidecar (never the quarantine's); None when absent."""
        checked_key(key)
        try:
            return await asyncio.to_thread(self._find, key)
        except (OSError, ValueError) as exc:  # ValueError: a sidecar that is not JSON
            raise TransientError(f"media folder: {exc}") from exc

    def _signature(self, key: str, expires: int) -> str:
        message = _DOMAIN + f"{key}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def url(self, key: str, ttl_s: float) -> tuple[str, datetime]:
        """`<public_url>/media/<key>?expires=<unix>&signature=<hex>`, valid `ttl_s` (whole
        seconds, 1 s to 7 days). Keys need no escaping: their alphabet is URL-safe."""
        seconds = math.ceil(ttl_s)
        if not 1 <= seconds <= MAX_URL_TTL_S:
            raise ValueError(f"a media URL lives 1 s to {MAX_URL_TTL_S} s, not {ttl_s}")
        expires = math.floor(self._clock()) + seconds
        signature = self._signature(checked_key(key), expires)
        url = f"{self._base}/media/{key}?expires={expires}&signature={signature}"
        return url, datetime.fromtimestamp(expires, UTC)

    def _sweep(self, tenant_id: str, older_than: float) -> int:
        deleted = 0
        for folder in (self._media / tenant_id, self._quarantine / tenant_id):
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                # Sidecars and temporary files go with their file (or are a put's own).
                if path.name.startswith(".") or not path.is_file():
                    continue
                if path.stat().st_mtime < older_than:
                    _sidecar(path).unlink(missing_ok=True)
                    path.unlink(missing_ok=True)
                    deleted += 1
        return deleted

    async def sweep(self, tenant_id: str, older_than: datetime) -> int:
        """Delete the tenant's files (and sidecars) last written before `older_than`."""
        if not is_tenant_id(tenant_id):
            raise ValueError(f"not a tenant id: {tenant_id[:64]!r}")
        try:
            return await asyncio.to_thread(self._sweep, tenant_id, older_than.timestamp())
        except OSError as exc:
            raise TransientError(f"media folder: {exc}") from exc

    async def ping(self) -> None:
        """Both folders exist (created if need be) and are writable."""

        def check() -> None:
            for folder in (self._media, self._quarantine):
                folder.mkdir(parents=True, exist_ok=True)
                if not os.access(folder, os.W_OK):
                    raise PermissionError(f"{folder} is not writable")

        try:
            await asyncio.to_thread(check)
        except OSError as exc:
            raise TransientError(f"media folder: {exc}") from exc

    async def close(self) -> None:
        """Nothing to release."""

    # -- MediaFiles --------------------------------------------------------------------

    def check(self, key: str, expires: str | None, signature: str | None) -> UrlCheck:
        """The signature first (so an expiry tells nothing about a forgery), then the
        expiry: a URL is good while the clock is before `expires`."""
        if not is_media_key(key) or expires is None or signature is None:
            return "invalid"
        if not (expires.isascii() and expires.isdigit() and len(expires) <= 12):
            return "invalid"
        expected = self._signature(key, int(expires)).encode()
        if not hmac.compare_digest(expected, signature.encode()):
            return "invalid"
        return "ok" if self._clock() < int(expires) else "expired"

    async def open(self, key: str) -> ServedFile | None:
        """The stored file under `key` (a quarantined one is not looked for)."""
        if not is_media_key(key):
            return None
        found = await self.head(key)
        if found is None:
            return None
        return ServedFile(self._media / key, found.content_type, found.size)


def _sidecar(path: Path) -> Path:
    return path.with_name(f".{path.name}.json")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
