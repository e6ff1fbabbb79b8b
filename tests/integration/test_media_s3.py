"""The S3 media store on a real S3-compatible server (SeaweedFS, tests/support/s3_server.py):
objects and their metadata as stored, presigned URLs fetched with httpx, the quarantine
never reachable, and an outage or a wrong secret reported as TransientError in seconds."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from adapters.errors import TransientError
from adapters.media_s3 import S3MediaStore
from adapters.ports import MediaStore
from models.media import media_key, thumbnail_key
from tests.support.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server, own_s3

SENT_AT = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
KEY = media_key("acme", SENT_AT, "1234567890")
OUTAGE_BOUND_S = 15.0  # connect timeout 5 s, one botocore retry: an outage fails well within


def store_of(
    server: S3Server,
    bucket: str,
    *,
    secret: str = SECRET_ACCESS_KEY,
    public_url: str | None = None,
    quarantine_prefix: str = "quarantine/",
) -> S3MediaStore:
    """The media store on the server's bucket."""
    return S3MediaStore(
        bucket,
        endpoint_url=server.endpoint_url,
        region=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=secret,
        public_url=public_url,
        quarantine_prefix=quarantine_prefix,
    )


def a_file(tmp_path: Path, size: int, name: str = "upload") -> tuple[Path, bytes]:
    """A file of random bytes."""
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def metadata_of(data: bytes) -> dict[str, str]:
    """What the pipeline sends along: both hashes, the source, a filename out of ASCII."""
    digest = hashlib.sha256(data).hexdigest()
    return {
        "sha256": digest,
        "stored-sha256": digest,
        "source-media-id": "1234567890",
        "tenant": "acme",
        "detected-mime": "application/pdf",
        "filename": "Résumé 100% final .pdf",
    }


@pytest.fixture
async def store(s3_server: S3Server, s3_bucket: str) -> AsyncIterator[S3MediaStore]:
    """The store on a fresh bucket of the session's server."""
    media = store_of(s3_server, s3_bucket)
    yield media
    await media.close()


async def test_put_head_and_a_presigned_get_give_back_the_bytes(
    store: S3MediaStore, s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """A 9 MB file is stored under media/<key> with its content type and metadata (a
    non-ASCII, `%`-holding value included, exactly); its presigned URL serves the same
    bytes and type until the expiry `url` returns."""
    path, data = a_file(tmp_path, 9 * 1024 * 1024 + 17)
    port: MediaStore = store
    await port.put(KEY, path, "application/pdf", metadata_of(data))
    found = await port.head(KEY)
    assert found is not None
    assert (found.key, found.size, found.content_type) == (KEY, len(data), "application/pdf")
    assert dict(found.metadata) == metadata_of(data)
    raw = s3_server.client().head_object(Bucket=s3_bucket, Key=f"media/{KEY}")
    assert raw["Metadata"]["filename"].isascii()
    before = time.time()
    url, expires_at = port.url(KEY, 300)
    assert before + 299 <= expires_at.timestamp() <= time.time() + 300
    async with httpx.AsyncClient() as client:
        reply = await client.get(url)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/pdf"
    assert hashlib.sha256(reply.content).digest() == hashlib.sha256(data).digest()


async def test_an_absent_key_heads_none(store: S3MediaStore) -> None:
    """head of a key never stored is None, not an error."""
    assert await store.head(thumbnail_key(KEY)) is None


async def test_a_quarantined_object_is_stored_but_never_reachable(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """quarantine=True puts the object under the quarantine prefix (configurable): it is
    there with its metadata, head does not see it, and the URL of its key is a 404."""
    store = store_of(s3_server, s3_bucket, quarantine_prefix="held/")
    path, data = a_file(tmp_path, 4096)
    await store.put(KEY, path, "image/jpeg", {"reason": "malware"}, quarantine=True)
    raw = s3_server.client().head_object(Bucket=s3_bucket, Key=f"held/{KEY}")
    assert (raw["ContentLength"], raw["Metadata"]) == (len(data), {"reason": "malware"})
    assert await store.head(KEY) is None
    url, _ = store.url(KEY, 60)
    assert "held" not in url
    async with httpx.AsyncClient() as client:
        assert (await client.get(url)).status_code == 404
    await store.close()


async def test_presigned_urls_name_the_public_endpoint(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """With a public URL (the store by another name: here localhost for 127.0.0.1), URLs
    are signed for that host and work there; the store itself is reached as configured."""
    port = urlsplit(s3_server.endpoint_url).port
    store = store_of(s3_server, s3_bucket, public_url=f"http://localhost:{port}")
    path, data = a_file(tmp_path, 1000)
    await store.put(KEY, path, "audio/ogg", {})
    url, _ = store.url(KEY, 60)
    assert urlsplit(url).netloc == f"localhost:{port}"
    async with httpx.AsyncClient() as client:
        reply = await client.get(url)
        assert (reply.status_code, reply.content) == (200, data)
        tampered = url.replace(f"media/{KEY}", f"media/{thumbnail_key(KEY)}")
        assert (await client.get(tampered)).status_code == 403
    await store.close()


async def test_a_presigned_url_stops_working_after_its_ttl(
    store: S3MediaStore, tmp_path: Path
) -> None:
    """A 3 s URL works at once and is refused (403) once it has expired. (Not 1 s: SigV4
    dates are whole seconds, so a 1 s URL signed late in a second is gone at once.)"""
    path, _ = a_file(tmp_path, 100)
    await store.put(KEY, path, "image/webp", {})
    url, expires_at = store.url(KEY, 3)
    async with httpx.AsyncClient() as client:
        assert (await client.get(url)).status_code == 200
        await asyncio.sleep(max(0.0, expires_at.timestamp() - time.time()) + 1.5)
        assert (await client.get(url)).status_code == 403


async def test_keys_and_metadata_names_out_of_their_alphabets_are_refused(
    store: S3MediaStore, tmp_path: Path
) -> None:
    """`..`, absolute paths and other shapes never name an object; nor does a metadata
    name a header could not carry."""
    path, _ = a_file(tmp_path, 10)
    for key in ("../acme/2026/12/1", "/etc/passwd", "acme/2026/12/../x", "acme/2026/12/.x", ""):
        with pytest.raises(ValueError, match="not a media key"):
            await store.put(key, path, "image/jpeg", {})
        with pytest.raises(ValueError, match="not a media key"):
            await store.head(key)
        with pytest.raises(ValueError, match="not a media key"):
            store.url(key, 60)
    with pytest.raises(ValueError, match="not a metadata name"):
        await store.put(KEY, path, "image/jpeg", {"bad name": "x"})
    with pytest.raises(ValueError, match="1 s to"):
        store.url(KEY, 8 * 24 * 3600)


async def test_an_outage_is_transient_and_the_store_works_once_back(tmp_path: Path) -> None:
    """S3 stopped: put, head and ping raise TransientError within seconds each; started
    again (same ports and data): the object put before is there and a new put works."""
    with own_s3(tmp_path / "s3") as server:
        bucket = server.create_bucket()
        store = store_of(server, bucket)
        path, data = a_file(tmp_path, 2048)
        await store.put(KEY, path, "image/jpeg", {"tenant": "acme"})
        server.stop()
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.put(thumbnail_key(KEY), path, "image/jpeg", {}),
            lambda: store.head(KEY),
            store.ping,
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(TransientError, match="s3"):
                await call()
            assert time.monotonic() - started < OUTAGE_BOUND_S
        server.start()
        await store.ping()
        found = await store.head(KEY)
        assert found is not None
        assert found.size == len(data)
        await store.put(thumbnail_key(KEY), path, "image/jpeg", {})
        assert await store.head(thumbnail_key(KEY)) is not None
        await store.close()


async def test_a_wrong_secret_is_transient(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    """The server refuses the signature: every call is a TransientError, never a hang or a
    botocore exception leaking out of the adapter."""
    store = store_of(s3_server, s3_bucket, secret="not-the-secret")
    path, _ = a_file(tmp_path, 10)
    with pytest.raises(TransientError, match="s3 put"):
        await store.put(KEY, path, "image/jpeg", {})
    with pytest.raises(TransientError, match="s3 head"):
        await store.head(KEY)
    with pytest.raises(TransientError, match="s3 ping"):
        await store.ping()
    await store.close()


async def test_an_unreadable_file_is_transient(store: S3MediaStore, tmp_path: Path) -> None:
    """The file to send is gone (a cleaned temporary folder): TransientError, not OSError."""
    with pytest.raises(TransientError, match="s3 put"):
        await store.put(KEY, tmp_path / "gone", "image/jpeg", {})
