"""`GET /media/{key}` through the real ingress app (create_app) over the folder media store:
a signed URL serves the stored bytes with its headers; an expired, tampered, unsigned or
quarantined one does not, each answered in the project's JSON error shape."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from adapters.media_local import SECRET_FILE, LocalMediaStore
from adapters.ports import MediaFiles
from ingress.app import IngressDeps, create_app
from models.media import media_key, thumbnail_key
from models.tenant import TenantDirectory
from tests.support.app import tenant
from tests.support.clock import FixedClock
from tests.support.configs import ingress_config, sqlite_inbox

KEY = media_key("acme", datetime(2026, 12, 3, tzinfo=UTC), "1234567890")
PDF_KEY = media_key("acme", datetime(2026, 12, 3, tzinfo=UTC), "1234567891")
BASE = "http://media.test"


@dataclass
class Served:
    """The app's client and the store whose URLs it serves."""

    client: httpx.AsyncClient
    store: LocalMediaStore
    root: Path


async def client_over(tmp_path: Path, files: MediaFiles | None) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on create_app() with `files` as its media files."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    deps = IngressDeps(
        ingress_config(partitions=2), TenantDirectory([tenant()]), inbox, media_files=files
    )
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client
    await inbox.close()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """The app over a folder store holding an image, a PDF and a quarantined file."""
    root = tmp_path / "data"
    store = LocalMediaStore(root, public_url=BASE)
    upload = tmp_path / "upload"
    upload.write_bytes(b"\xff\xd8\xff\xe0 a jpeg")
    await store.put(KEY, upload, "image/jpeg", {"tenant": "acme"})
    upload.write_bytes(b"%PDF-1.7 a pdf")
    await store.put(PDF_KEY, upload, "application/pdf", {})
    upload.write_bytes(b"MZ an executable")
    await store.put(thumbnail_key(KEY), upload, "image/jpeg", {}, quarantine=True)
    async for client in client_over(tmp_path, store):
        yield Served(client, store, root)


def path_of(url: str) -> str:
    """The URL's path and query, for the app's client."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == BASE
    return f"{parts.path}?{parts.query}"


def assert_error(reply: httpx.Response, status: int, code: str) -> None:
    """The project's error shape with this status and code."""
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)


async def test_a_signed_url_serves_the_stored_bytes(served: Served) -> None:
    """The image's bytes and type, cached privately for the URL's remaining life, never
    sniffed, sandboxed, shown inline."""
    url, _ = served.store.url(KEY, 600)
    reply = await served.client.get(path_of(url))
    assert reply.status_code == 200
    assert reply.content == b"\xff\xd8\xff\xe0 a jpeg"
    assert reply.headers["content-type"] == "image/jpeg"
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert reply.headers["content-disposition"] == 'inline; filename="1234567890"'
    directive, max_age = reply.headers["cache-control"].split(", ")
    assert directive == "private"
    assert 595 <= int(max_age.removeprefix("max-age=")) <= 600


async def test_a_document_is_served_as_an_attachment(served: Served) -> None:
    """A PDF is downloaded, never displayed in the service's origin."""
    url, _ = served.store.url(PDF_KEY, 60)
    reply = await served.client.get(path_of(url))
    assert reply.status_code == 200
    assert reply.content == b"%PDF-1.7 a pdf"
    assert reply.headers["content-type"] == "application/pdf"
    assert reply.headers["content-disposition"] == 'attachment; filename="1234567891"'


async def test_an_expired_url_is_403_url_expired(served: Served) -> None:
    """Signed (by another process sharing the secret file) 10 minutes ago for 60 s."""
    past = LocalMediaStore(served.root, public_url=BASE, clock=FixedClock(time.time() - 600))
    url, _ = past.url(KEY, 60)
    assert_error(await served.client.get(path_of(url)), 403, "url_expired")


async def test_a_tampered_or_unsigned_url_is_403(served: Served) -> None:
    """Another key, a later expiry, a changed signature, or none: signature_mismatch."""
    url, _ = served.store.url(KEY, 60)
    key_path, query = path_of(url).split("?")
    expires, signature = (part.split("=")[1] for part in query.split("&"))
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    for attempt in (
        f"/media/{PDF_KEY}?{query}",
        f"{key_path}?expires={int(expires) + 3600}&signature={signature}",
        f"{key_path}?expires={expires}&signature={flipped}",
        f"{key_path}?expires={expires}",
        f"{key_path}?signature={signature}",
        key_path,
    ):
        assert_error(await served.client.get(attempt), 403, "signature_mismatch")


async def test_a_quarantined_or_absent_file_is_404_even_when_signed(served: Served) -> None:
    """A rejected file is never reachable: its key signed correctly still finds nothing,
    like a key that was never stored."""
    for key in (thumbnail_key(KEY), media_key("acme", datetime(2026, 1, 1, tzinfo=UTC), "9")):
        url, _ = served.store.url(key, 60)
        assert_error(await served.client.get(path_of(url)), 404, "not_found")


async def test_paths_out_of_the_key_alphabet_are_404(served: Served) -> None:
    """`..` (raw or percent-encoded), hidden names and other shapes never reach the folder:
    the secret file and the sidecars stay out of reach."""
    _, query = path_of(served.store.url(KEY, 60)[0]).split("?")
    assert (served.root / SECRET_FILE).exists()
    for path in (
        "/media/acme/2026/12/%2e%2e/%2e%2e/%2e%2e/media-url-secret",
        "/media/..%2F..%2Fmedia-url-secret",
        "/media/acme/2026/12/.1234567890.json",
        "/media/%2Fetc%2Fpasswd",
        "/media/",
    ):
        assert_error(await served.client.get(f"{path}?{query}"), 404, "not_found")


async def test_without_a_media_folder_every_media_path_is_404(
    served: Served, tmp_path: Path
) -> None:
    """Media in S3 (no MediaFiles): the route answers 404 even to a URL this service's
    folder store would have signed."""
    url, _ = served.store.url(KEY, 60)
    async for client in client_over(tmp_path / "s3-mode", None):
        assert_error(await client.get(path_of(url)), 404, "not_found")
