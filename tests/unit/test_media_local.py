"""The folder media store: atomic puts with a sidecar, head and the quarantine, signed URLs
(verified, expiring, tamper-evident), key validation, and the shared secret file."""

from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from adapters.errors import TransientError
from adapters.media_local import SECRET_FILE, LocalMediaStore, load_or_create_secret
from adapters.ports import MediaFiles, MediaStore
from models.media import media_key, thumbnail_key
from tests.support.clock import FixedClock

KEY = media_key("acme", datetime(2026, 12, 3, tzinfo=UTC), "1234567890")
BASE = "https://wa.example.com/"
BAD_KEYS = (
    "",
    "/etc/passwd",
    "../acme/2026/12/1",
    "acme/2026/12/..",
    "acme/2026/12/../../../media-url-secret",
    "acme/2026/12/.1.json",
    "acme/2026/12/1/2",
    "Acme/2026/12/1",
    "acme/26/12/1",
    "acme/2026/12/1 2",
    "acme\\2026\\12\\1",
)


def store_in(root: Path, clock: FixedClock | None = None, **kwargs: bytes) -> LocalMediaStore:
    """A store in `root` on a fixed clock."""
    return LocalMediaStore(root, public_url=BASE, clock=clock or FixedClock(), **kwargs)


def source(tmp_path: Path, data: bytes, name: str = "download") -> Path:
    """A file the pipeline would have downloaded."""
    path = tmp_path / name
    path.write_bytes(data)
    return path


def leftovers(root: Path) -> list[Path]:
    """Temporary files under `root`."""
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


def query(url: str) -> tuple[str, str, str]:
    """(key, expires, signature) of a signed URL."""
    parts = urlsplit(url)
    params = parse_qs(parts.query)
    return parts.path.removeprefix("/media/"), params["expires"][0], params["signature"][0]


async def test_put_then_head_gives_the_file_its_type_and_metadata(tmp_path: Path) -> None:
    """The bytes land at <root>/media/<key>, the type and metadata in a hidden sidecar
    (names lowercased as S3 does), and nothing temporary is left behind."""
    root = tmp_path / "data"
    store: MediaStore = store_in(root)
    data = os.urandom(3 * 1024 * 1024 + 5)
    meta = {"SHA256": "ab" * 32, "source-media-id": "1234567890", "filename": "Résumé.pdf"}
    await store.put(KEY, source(tmp_path, data), "application/pdf", meta)
    assert (root / "media" / KEY).read_bytes() == data
    found = await store.head(KEY)
    assert found is not None
    assert (found.key, found.size, found.content_type) == (KEY, len(data), "application/pdf")
    assert dict(found.metadata) == {
        "sha256": "ab" * 32,
        "source-media-id": "1234567890",
        "filename": "Résumé.pdf",
    }
    assert sorted(p.name for p in (root / "media" / KEY).parent.iterdir()) == [
        ".1234567890.json",
        "1234567890",
    ]
    assert leftovers(root) == []
    assert await store.head(thumbnail_key(KEY)) is None


async def test_a_put_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    """A second put of the key replaces file and sidecar; one whose source cannot be read
    (TransientError) leaves the previous object as it was and no temporary file."""
    root = tmp_path / "data"
    store = store_in(root)
    await store.put(KEY, source(tmp_path, b"first"), "image/jpeg", {"v": "1"})
    await store.put(KEY, source(tmp_path, b"second!"), "image/png", {"v": "2"})
    found = await store.head(KEY)
    assert found is not None
    assert (found.size, found.content_type, dict(found.metadata)) == (7, "image/png", {"v": "2"})
    unreadable = tmp_path / "a-folder"
    unreadable.mkdir()
    with pytest.raises(TransientError, match="media folder"):
        await store.put(KEY, unreadable, "image/png", {"v": "3"})
    assert (root / "media" / KEY).read_bytes() == b"second!"
    assert await store.head(KEY) == found
    assert leftovers(root) == []


async def test_the_quarantine_is_kept_apart_and_never_served(tmp_path: Path) -> None:
    """A quarantined file lies under <root>/quarantine/<key>; head and open do not see it,
    and a correctly signed URL of its key finds nothing to serve."""
    root = tmp_path / "data"
    store = store_in(root)
    await store.put(KEY, source(tmp_path, b"MZ..."), "image/jpeg", {"r": "x"}, quarantine=True)
    assert (root / "quarantine" / KEY).read_bytes() == b"MZ..."
    assert not (root / "media" / KEY).exists()
    assert await store.head(KEY) is None
    files: MediaFiles = store
    assert files.check(*query(store.url(KEY, 60)[0])) == "ok"
    assert await files.open(KEY) is None


async def test_open_serves_what_was_stored(tmp_path: Path) -> None:
    """open gives the stored file's path, type and size."""
    root = tmp_path / "data"
    store = store_in(root)
    await store.put(KEY, source(tmp_path, b"OggS-bytes"), "audio/ogg", {})
    served = await store.open(KEY)
    assert served is not None
    assert (served.path, served.content_type, served.size) == (
        root / "media" / KEY,
        "audio/ogg",
        10,
    )


def test_a_url_is_signed_for_the_public_base_and_expires(tmp_path: Path) -> None:
    """`<base>/media/<key>?expires=&signature=`, good until (not at) its expiry, which is
    the datetime `url` returns."""
    clock = FixedClock(1_800_000_000.6)
    store = store_in(tmp_path, clock)
    url, expires_at = store.url(KEY, 299.2)
    assert url.startswith(f"https://wa.example.com/media/{KEY}?expires=1800000300&signature=")
    assert expires_at == datetime.fromtimestamp(1_800_000_300, UTC)
    key, expires, signature = query(url)
    assert len(signature) == 64
    assert store.check(key, expires, signature) == "ok"
    clock.advance(298.9)
    assert store.check(key, expires, signature) == "ok"
    clock.advance(0.5)
    assert store.check(key, expires, signature) == "expired"


def test_a_tampered_or_foreign_url_is_invalid_expired_or_not(tmp_path: Path) -> None:
    """Another key, expiry or signature, missing parameters, or another secret's URL: all
    `invalid`, and an expired forgery says `invalid` too (never `expired`)."""
    clock = FixedClock()
    store = store_in(tmp_path / "a", clock)
    key, expires, signature = query(store.url(KEY, 60)[0])
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    later = str(int(expires) + 3600)
    for attempt in (
        (thumbnail_key(key), expires, signature),
        (key, later, signature),
        (key, expires, flipped),
        (key, expires, signature.upper()),
        (key, expires, signature + "00"),
        (key, expires, "é" * 64),
        (key, None, signature),
        (key, expires, None),
        (key, f"+{expires}", signature),
        (key, expires + "0" * 20, signature),
    ):
        assert store.check(*attempt) == "invalid", attempt
    other = store_in(tmp_path / "b", clock)
    assert other.check(key, expires, signature) == "invalid"
    clock.advance(3600)
    assert store.check(key, expires, flipped) == "invalid"
    assert store.check(key, expires, signature) == "expired"


async def test_keys_out_of_the_alphabet_are_refused_everywhere(tmp_path: Path) -> None:
    """put, head and url raise ValueError; check says invalid; open finds nothing; and no
    file appears outside the store's folders."""
    root = tmp_path / "data"
    store = store_in(root)
    path = source(tmp_path, b"x")
    for key in BAD_KEYS:
        with pytest.raises(ValueError, match="not a media key"):
            await store.put(key, path, "image/jpeg", {})
        with pytest.raises(ValueError, match="not a media key"):
            await store.head(key)
        with pytest.raises(ValueError, match="not a media key"):
            store.url(key, 60)
        assert store.check(key, "9999999999", "0" * 64) == "invalid"
        assert await store.open(key) is None
    assert sorted(p.name for p in root.iterdir()) == [SECRET_FILE]
    with pytest.raises(ValueError, match="not a metadata name"):
        await store.put(KEY, path, "image/jpeg", {"x-amz-meta-a b": "1"})
    for ttl in (0, -1, 8 * 24 * 3600):
        with pytest.raises(ValueError, match="1 s to"):
            store.url(KEY, ttl)


def test_the_secret_file_is_created_once_mode_0600_and_shared(tmp_path: Path) -> None:
    """The first store creates <root>/media-url-secret (0600); every later one, as another
    process would, reads it and verifies the first one's URLs."""
    first = store_in(tmp_path)
    secret_file = tmp_path / SECRET_FILE
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    content = secret_file.read_bytes()
    assert len(content.strip()) == 64
    second = store_in(tmp_path)
    assert secret_file.read_bytes() == content
    assert second.check(*query(first.url(KEY, 60)[0])) == "ok"


def test_racing_processes_agree_on_one_secret(tmp_path: Path) -> None:
    """Sixteen threads creating the secret at once all read the same one, whole."""
    path = tmp_path / SECRET_FILE
    found: list[bytes] = []
    barrier = threading.Barrier(16)

    def race() -> None:
        barrier.wait()
        found.append(load_or_create_secret(path))

    threads = [threading.Thread(target=race) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 16
    assert len(set(found)) == 1
    assert leftovers(tmp_path) == []


def test_a_configured_secret_creates_no_file_and_signs_alike(tmp_path: Path) -> None:
    """WA_MEDIA_URL_SECRET given: no secret file; two stores with it verify each other."""
    secret = b"a configured secret of 32 bytes!"
    one = store_in(tmp_path / "one", secret=secret)
    two = store_in(tmp_path / "two", secret=secret)
    assert not (tmp_path / "one" / SECRET_FILE).exists()
    assert two.check(*query(one.url(KEY, 60)[0])) == "ok"
    with pytest.raises(ValueError, match="16 bytes"):
        store_in(tmp_path, secret=b"short")


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    """A secret file readable by group or others (copied, restored from a backup) stops
    the store from starting rather than signing with a leaked secret."""
    path = tmp_path / SECRET_FILE
    path.write_text("x" * 64)
    path.chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        store_in(tmp_path)


def test_the_public_url_must_be_a_base_url(tmp_path: Path) -> None:
    """No scheme, another scheme or a query string: refused at construction."""
    for url in ("wa.example.com", "ftp://wa.example.com", "https://wa.example.com/?a=1"):
        with pytest.raises(ValueError, match="not a base URL"):
            LocalMediaStore(tmp_path, public_url=url)


async def test_ping_creates_both_folders(tmp_path: Path) -> None:
    """ping answers on a fresh data folder, which then holds media/ and quarantine/."""
    store = store_in(tmp_path)
    await store.ping()
    assert (tmp_path / "media").is_dir()
    assert (tmp_path / "quarantine").is_dir()
    await store.close()
