"""One suite, both MediaStore adapters: the embedded folder (its URLs fetched through the
ingress app's `GET /media/...`) and S3 (a real SeaweedFS server, tests/support/s3_server.py,
a bucket per test; its presigned URLs fetched from the server itself)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from adapters.media_local import LocalMediaStore
from adapters.media_s3 import S3MediaStore
from adapters.ports import MediaStore
from ingress.app import IngressDeps, create_app
from models.media import media_key, thumbnail_key
from models.tenant import TenantDirectory
from tests.support.app import tenant
from tests.support.configs import ingress_config, sqlite_inbox
from tests.support.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server

KEY = media_key("acme", datetime(2026, 12, 3, tzinfo=UTC), "1234567890")
BASE = "http://wa.test"

Fetch = Callable[[str], Awaitable[httpx.Response]]


@dataclass
class Subject:
    """A store and how a consumer fetches the URLs it hands out."""

    store: MediaStore
    fetch: Fetch


@pytest.fixture(params=["folder", "s3"])
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Subject]:
    """Each adapter over a fresh store, with a client for its URLs."""
    if request.param == "folder":
        local = LocalMediaStore(tmp_path / "data", public_url=BASE)
        inbox = sqlite_inbox(tmp_path / "inbox.db")
        deps = IngressDeps(
            ingress_config(partitions=2), TenantDirectory([tenant()]), inbox, media_files=local
        )
        transport = httpx.ASGITransport(app=create_app(deps))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:

            async def through_app(url: str) -> httpx.Response:
                assert url.startswith(BASE + "/media/")
                parts = urlsplit(url)
                return await client.get(f"{parts.path}?{parts.query}")

            yield Subject(local, through_app)
        await inbox.close()
        return
    server: S3Server = request.getfixturevalue("s3_server")
    s3 = S3MediaStore(
        request.getfixturevalue("s3_bucket"),
        endpoint_url=server.endpoint_url,
        region=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )
    async with httpx.AsyncClient() as client:
        yield Subject(s3, client.get)
    await s3.close()


def a_file(tmp_path: Path, data: bytes) -> Path:
    """A downloaded file holding `data`."""
    path = tmp_path / f"upload-{hashlib.sha256(data).hexdigest()[:8]}"
    path.write_bytes(data)
    return path


async def test_a_stored_file_comes_back_by_head_and_by_its_url(
    subject: Subject, tmp_path: Path
) -> None:
    """head gives size, type and the metadata (names lowercased, values exact); the URL
    serves the very bytes with the type, until an expiry `ttl_s` from now."""
    data = os.urandom(256 * 1024)
    meta = {"SHA256": hashlib.sha256(data).hexdigest(), "filename": "café 50%.jpg"}
    await subject.store.put(KEY, a_file(tmp_path, data), "image/jpeg", meta)
    found = await subject.store.head(KEY)
    assert found is not None
    assert (found.key, found.size, found.content_type) == (KEY, len(data), "image/jpeg")
    assert dict(found.metadata) == {"sha256": meta["SHA256"], "filename": meta["filename"]}
    url, expires_at = subject.store.url(KEY, 120)
    assert time.time() + 118 <= expires_at.timestamp() <= time.time() + 121
    reply = await subject.fetch(url)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "image/jpeg"
    assert reply.content == data


async def test_a_put_again_replaces_the_object(subject: Subject, tmp_path: Path) -> None:
    """Same key, new bytes and metadata (a retried pipeline): the new ones win."""
    await subject.store.put(KEY, a_file(tmp_path, b"one"), "image/png", {"try": "1"})
    await subject.store.put(KEY, a_file(tmp_path, b"two!"), "image/webp", {"try": "2"})
    found = await subject.store.head(KEY)
    assert found is not None
    assert (found.size, found.content_type, dict(found.metadata)) == (4, "image/webp", {"try": "2"})
    assert (await subject.fetch(subject.store.url(KEY, 60)[0])).content == b"two!"


async def test_the_quarantine_is_never_reachable(subject: Subject, tmp_path: Path) -> None:
    """A quarantined file: head says None and the URL of its key is a 404, while an object
    stored beside it is served."""
    await subject.store.put(KEY, a_file(tmp_path, b"MZ"), "image/jpeg", {}, quarantine=True)
    await subject.store.put(thumbnail_key(KEY), a_file(tmp_path, b"thumb"), "image/jpeg", {})
    assert await subject.store.head(KEY) is None
    assert (await subject.fetch(subject.store.url(KEY, 60)[0])).status_code == 404
    reply = await subject.fetch(subject.store.url(thumbnail_key(KEY), 60)[0])
    assert (reply.status_code, reply.content) == (200, b"thumb")


async def test_keys_of_another_shape_are_refused(subject: Subject, tmp_path: Path) -> None:
    """ValueError before anything is written or signed."""
    path = a_file(tmp_path, b"x")
    for key in ("../x/2026/12/1", "/acme/2026/12/1", "acme/2026/12/..", "acme/2026/12/1/"):
        with pytest.raises(ValueError, match="not a media key"):
            await subject.store.put(key, path, "image/jpeg", {})
        with pytest.raises(ValueError, match="not a media key"):
            await subject.store.head(key)
        with pytest.raises(ValueError, match="not a media key"):
            subject.store.url(key, 60)


async def test_ping_answers(subject: Subject) -> None:
    """A reachable store answers its ping."""
    await subject.store.ping()


async def test_a_sweep_deletes_only_the_tenants_objects_older_than_asked(
    subject: Subject, tmp_path: Path
) -> None:
    """A tenant's retention (media.retention_days): its stored, thumbnail and quarantined
    objects written before the cut are deleted; newer ones and other tenants' stay."""
    other = media_key("beta", datetime(2026, 12, 3, tzinfo=UTC), "1234567890")
    await subject.store.put(KEY, a_file(tmp_path, b"stored"), "image/png", {})
    await subject.store.put(thumbnail_key(KEY), a_file(tmp_path, b"thumb"), "image/jpeg", {})
    await subject.store.put(KEY, a_file(tmp_path, b"bad"), "image/png", {}, quarantine=True)
    await subject.store.put(other, a_file(tmp_path, b"theirs"), "image/png", {})
    now = datetime.now(UTC)
    assert await subject.store.sweep("acme", now - timedelta(hours=1)) == 0  # all newer
    assert await subject.store.head(KEY) is not None
    assert await subject.store.sweep("acme", now + timedelta(hours=1)) == 3
    assert await subject.store.head(KEY) is None
    assert await subject.store.head(thumbnail_key(KEY)) is None
    assert await subject.store.head(other) is not None
    assert await subject.store.sweep("acme", now + timedelta(hours=1)) == 0
    with pytest.raises(ValueError, match="tenant"):
        await subject.store.sweep("../etc", now)
