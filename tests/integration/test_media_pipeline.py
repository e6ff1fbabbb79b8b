"""The media pipeline end to end on real files, a real clamd and both real media stores
(the folder store, and S3 on SeaweedFS): every media type stored sanitized with its bytes
and metadata checked, every hostile file rejected with its reason and quarantined, Meta's
mistakes (wrong sha256, wrong size, expired URLs), idempotent replays, and each outage
reported as a retryable MediaUnavailable naming the step.

The Graph API's media side is FolderSource below: the MediaSource port itself, serving
generated files as Meta would (lookups with sha256 and size, short-lived URLs, 401 on an
expired one), with counters to prove what was and was not fetched."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from actors.media_limits import OOXML_DOCX, MediaLimits
from actors.media_pipeline import MediaPipeline
from adapters.clamd import ClamdScanner
from adapters.errors import MediaRejected, MediaUnavailable, TransientError, UrlExpired
from adapters.media_local import LocalMediaStore
from adapters.media_s3 import S3MediaStore
from adapters.ports import MediaInfo, MediaStore, StoredObject
from models.media import MediaFile, MediaJob, media_key, thumbnail_key
from tests.support import media_files as files
from tests.support.clamd_server import MARKER_SIGNATURE, ClamdServer, clamd_binary, own_clamd
from tests.support.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server

SENT_AT = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
TENANT = "acme"


@dataclass
class Served:
    """One media id's file as Meta holds it, and what Meta gets wrong about it."""

    path: Path
    mime: str | None
    sha256: str | None
    file_size: int | None
    expired_urls: int = 0  # the first N URLs handed out answer 401 (UrlExpired)


@dataclass
class FolderSource:
    """The MediaSource port over generated files (the Graph API's media lookups and
    downloads), with counters; `down` makes every call fail as an outage."""

    served: dict[str, Served] = field(default_factory=dict)
    lookups: Counter[str] = field(default_factory=Counter)
    downloads: Counter[str] = field(default_factory=Counter)
    down: bool = False

    def add(
        self,
        media_id: str,
        path: Path,
        mime: str | None,
        *,
        sha256: str | None = "auto",
        file_size: int | None = -1,
        expired_urls: int = 0,
    ) -> None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if sha256 == "auto" else sha256
        size = path.stat().st_size if file_size == -1 else file_size
        self.served[media_id] = Served(path, mime, digest, size, expired_urls)

    async def media_info(self, tenant_id: str, media_id: str) -> MediaInfo:
        self.lookups[media_id] += 1
        if self.down:
            raise TransientError("graph: connection refused")
        served = self.served.get(media_id)
        if served is None:
            raise MediaUnavailable("not_found", f"media {media_id}", retryable=False)
        url = f"https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid={media_id}&v={self.lookups[media_id]}"
        return MediaInfo(media_id, url, served.mime, served.sha256, served.file_size)

    async def download(self, tenant_id: str, info: MediaInfo, dest: Path, max_bytes: int) -> int:
        self.downloads[info.media_id] += 1
        if self.down:
            raise TransientError("download: connection reset")
        served = self.served[info.media_id]
        version = int(parse_qs(urlsplit(info.url).query)["v"][0])
        if version <= served.expired_urls:
            raise UrlExpired(f"401 for URL version {version}")
        data = await asyncio.to_thread(served.path.read_bytes)
        if len(data) > max_bytes:
            # Cut short one byte over the cap, as the real client stops.
            await asyncio.to_thread(dest.write_bytes, data[: max_bytes + 1])
            raise MediaRejected("too_large", f"over {max_bytes} bytes")
        await asyncio.to_thread(dest.write_bytes, data)
        return len(data)

    async def close(self) -> None:
        """Nothing held."""


class DownStore:
    """The MediaStore port of a store that is down: every call a TransientError."""

    async def put(self, *args: object, **kwargs: object) -> None:
        raise TransientError("s3 put: connection refused")

    async def head(self, key: str) -> StoredObject | None:
        raise TransientError("s3 head: connection refused")

    def url(self, key: str, ttl_s: float) -> tuple[str, datetime]:
        raise AssertionError("no URL of a store that is down")

    async def sweep(self, tenant_id: str, older_than: datetime) -> int:
        raise TransientError("s3 sweep: connection refused")

    async def ping(self) -> None:
        raise TransientError("s3: connection refused")

    async def close(self) -> None:
        """Nothing held."""


@dataclass
class Stores:
    """A media store under test, and how to read what it holds behind its back."""

    kind: str
    store: MediaStore
    stored: Callable[[str], bytes | None]  # the object's bytes, fetched through its URL
    quarantined: Callable[[str], bytes | None]


@pytest.fixture(params=["local", "s3"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    """The folder store in the test's tmp dir, or the S3 store on a fresh bucket."""
    if request.param == "local":
        root = tmp_path / "data"
        local = LocalMediaStore(root, public_url="http://127.0.0.1:8000", secret=b"s" * 32)

        def local_stored(key: str) -> bytes | None:
            url, _ = local.url(key, 60)
            query = parse_qs(urlsplit(url).query)
            assert local.check(key, query["expires"][0], query["signature"][0]) == "ok"
            path = root / "media" / key
            return path.read_bytes() if path.exists() else None

        def local_quarantined(key: str) -> bytes | None:
            path = root / "quarantine" / key
            return path.read_bytes() if path.exists() else None

        yield Stores("local", local, local_stored, local_quarantined)
        await local.close()
        return
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    s3 = S3MediaStore(
        bucket,
        endpoint_url=server.endpoint_url,
        region=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )
    client = server.client()

    def s3_stored(key: str) -> bytes | None:
        url, _ = s3.url(key, 60)
        reply = httpx.get(url)
        return reply.content if reply.status_code == 200 else None

    def s3_quarantined(key: str) -> bytes | None:
        try:
            return client.get_object(Bucket=bucket, Key=f"quarantine/{key}")["Body"].read()
        except client.exceptions.NoSuchKey:
            return None

    yield Stores("s3", s3, s3_stored, s3_quarantined)
    await s3.close()


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdServer | None]:
    """The module's clamd, or None where clamav-daemon is not installed."""
    if clamd_binary() is None:
        yield None
        return
    with own_clamd(tmp_path_factory.mktemp("clamd")) as server:
        yield server


@pytest.fixture
def source() -> FolderSource:
    return FolderSource()


@pytest.fixture
def work_dir(tmp_path: Path) -> Iterator[Path]:
    """The pipeline's temp folder; each test ends with it empty (downloads removed)."""
    folder = tmp_path / "work"
    yield folder
    assert not folder.exists() or list(folder.iterdir()) == []


def pipeline_of(
    source: FolderSource,
    stores: Stores,
    work_dir: Path,
    clamd: ClamdServer | None,
    limits: MediaLimits | None = None,
) -> MediaPipeline:
    scanner = ClamdScanner(clamd.url) if clamd is not None else None
    return MediaPipeline(source, stores.store, scanner=scanner, limits=limits, work_dir=work_dir)


def job_of(media_id: str, media_type: str, mime: str | None, **fields: object) -> MediaJob:
    return MediaJob(
        tenant_id=TENANT,
        event_id=f"wamid.{media_id}",
        media_id=media_id,
        media_type=media_type,
        declared_mime=mime,
        sent_at=SENT_AT,
        **fields,
    )


GOOD = [
    ("1001", files.jpeg_with_gps, "image", "image/jpeg"),
    ("1002", files.png, "image", "image/png"),
    ("1003", files.webp_sticker, "sticker", "image/webp"),
    ("1004", lambda p: files.webp_sticker(p, animated=True), "sticker", "image/webp"),
    ("1005", files.ogg_opus_voice, "audio", "audio/ogg; codecs=opus"),
    ("1006", files.mp3, "audio", "audio/mpeg"),
    ("1007", files.aac_m4a, "audio", "audio/mp4"),
    ("1008", files.mp4_video, "video", "video/mp4"),
    ("1009", lambda p: files.pdf(p, pages=4), "document", "application/pdf"),
    ("1010", files.docx, "document", OOXML_DOCX),
    ("1011", files.text_file, "document", "text/plain"),
]
GOOD_IDS = [
    "jpeg",
    "png",
    "webp",
    "webp-animated",
    "ogg-opus",
    "mp3",
    "m4a",
    "mp4",
    "pdf",
    "docx",
    "txt",
]


@pytest.mark.parametrize(("media_id", "generator", "media_type", "mime"), GOOD, ids=GOOD_IDS)
async def test_every_media_type_is_stored_with_its_bytes_and_metadata(
    source: FolderSource,
    stores: Stores,
    work_dir: Path,
    clamd: ClamdServer | None,
    tmp_path: Path,
    media_id: str,
    generator: Callable[[Path], Path],
    media_type: str,
    mime: str,
) -> None:
    """The file is stored under its key with its detected type, Meta's sha256 (sent as
    base64 in the webhook) and the stored one, the source and the metadata read from it;
    the URL serves exactly the stored bytes; images lose their EXIF and get a thumbnail."""
    original = generator(tmp_path / f"file-{media_id}")
    digest = hashlib.sha256(original.read_bytes()).digest()
    source.add(media_id, original, mime)
    pipeline = pipeline_of(source, stores, work_dir, clamd)
    job = job_of(media_id, media_type, mime, declared_sha256=base64.b64encode(digest).decode())
    file = await pipeline.process(job)

    key = media_key(TENANT, SENT_AT, media_id)
    assert (file.status, file.reason, file.object_key) == ("stored", None, key)
    assert file.sha256 == digest.hex()
    assert file.size == original.stat().st_size
    stored = stores.stored(key)
    assert stored is not None
    assert hashlib.sha256(stored).hexdigest() == file.stored_sha256
    assert len(stored) == file.stored_size
    assert file.url is not None
    assert file.url_expires_at is not None
    head = await stores.store.head(key)
    assert head is not None
    assert head.content_type == file.mime_type
    assert head.metadata["sha256"] == digest.hex()
    assert head.metadata["stored-sha256"] == file.stored_sha256
    assert head.metadata["source-media-id"] == media_id
    assert head.metadata["tenant-id"] == TENANT
    assert head.metadata["detected-mime"] == file.mime_type
    meta = file.metadata
    assert meta is not None
    if media_type in ("image", "sticker"):
        assert file.thumbnail_key == thumbnail_key(key)
        assert file.thumbnail_url is not None
        thumb = stores.stored(thumbnail_key(key))
        assert thumb is not None
        assert thumb.startswith(b"\xff\xd8\xff")
        (tmp_path / "stored").write_bytes(stored)
        with Image.open(tmp_path / "stored") as image:
            assert not image.getexif()
            assert (image.width, image.height) == (meta.width, meta.height)
    else:
        assert file.thumbnail_key is None
        assert file.thumbnail_url is None
        assert stored == original.read_bytes()  # audio, video, documents: as they came
    check_type_facts(media_id, file, stored, original.read_bytes())
    assert (source.lookups[media_id], source.downloads[media_id]) == (1, 1)


def check_type_facts(media_id: str, file: MediaFile, stored: bytes, original: bytes) -> None:
    """What each type's describer must have read (the GOOD table's ids)."""
    meta = file.metadata
    assert meta is not None
    if media_id == "1001":
        assert meta.exif_removed
        assert (meta.width, meta.height) == (480, 640)
        assert b"WA-Test-Phone" not in stored
        assert stored != original
    if media_id in ("1003", "1004"):
        assert (meta.width, meta.height, meta.frames) == (512, 512, 4 if media_id == "1004" else 1)
        assert stored == original
    if media_id == "1005":
        assert meta.audio_codec == "opus"
        assert meta.duration_s is not None
        assert meta.duration_s > 1.0
        assert file.mime_type == "audio/ogg"
    if media_id == "1008":
        assert (meta.video_codec, meta.audio_codec, meta.width, meta.height) == (
            "h264",
            "aac",
            320,
            240,
        )
        assert meta.duration_s is not None
        assert abs(meta.duration_s - 2.0) < 0.1
    if media_id in ("1006", "1007"):
        assert meta.duration_s is not None
        assert abs(meta.duration_s - 2.0) < 0.1
        assert meta.sample_rate == 44100
    if media_id == "1009":
        assert meta.pages == 4


HOSTILE = [
    ("2001", files.pe_executable, "image", "image/jpeg", "executable"),
    ("2002", files.pdf, "image", "image/png", "type_mismatch"),
    ("2003", files.eicar, "document", "text/plain", "malware"),
    (
        "2004",
        lambda p: files.zip_bomb(p, megabytes=20),
        "document",
        "application/zip",
        "archive_bomb",
    ),
    ("2005", files.nested_zip_bomb, "document", "application/zip", "archive_bomb"),
    ("2006", files.pixel_bomb_png, "image", "image/png", "pixel_bomb"),
    ("2007", files.docm, "document", OOXML_DOCX, "macro"),
    ("2008", files.shell_script, "document", "text/plain", "executable"),
]
HOSTILE_IDS = [
    "pe-as-jpeg",
    "pdf-as-png",
    "eicar",
    "zip-bomb",
    "nested-zip",
    "pixel-bomb",
    "docm",
    "script",
]


@pytest.mark.parametrize(
    ("media_id", "generator", "media_type", "mime", "reason"), HOSTILE, ids=HOSTILE_IDS
)
async def test_each_hostile_file_is_rejected_and_quarantined(
    source: FolderSource,
    stores: Stores,
    work_dir: Path,
    clamd: ClamdServer | None,
    tmp_path: Path,
    media_id: str,
    generator: Callable[[Path], Path],
    media_type: str,
    mime: str,
    reason: str,
) -> None:
    """Rejected with its reason, no URL; the bytes lie in quarantine (with the reason in
    their metadata), where neither head nor a URL reaches them."""
    original = generator(tmp_path / f"file-{media_id}")
    source.add(media_id, original, mime)
    file = await pipeline_of(source, stores, work_dir, clamd).process(
        job_of(media_id, media_type, mime)
    )
    key = media_key(TENANT, SENT_AT, media_id)
    assert (file.status, file.reason) == ("rejected", reason)
    assert file.url is None
    assert file.thumbnail_url is None
    assert file.object_key == key
    assert file.sha256 == hashlib.sha256(original.read_bytes()).hexdigest()
    assert stores.quarantined(key) == original.read_bytes()
    assert await stores.store.head(key) is None
    assert stores.stored(key) is None


async def test_the_scanners_verdict_rejects_what_the_checks_pass(
    source: FolderSource, stores: Stores, work_dir: Path, clamd: ClamdServer | None, tmp_path: Path
) -> None:
    """A text file only clamd's database calls malware is rejected with the signature's
    name; the same pipeline without a scanner stores it."""
    if clamd is None:
        pytest.skip("clamd is not installed (apt-get install clamav-daemon)")
    source.add("3001", files.marker_file(tmp_path / "notes.txt"), "text/plain")
    file = await pipeline_of(source, stores, work_dir, clamd).process(
        job_of("3001", "document", "text/plain")
    )
    assert (file.status, file.reason, file.detail) == ("rejected", "malware", MARKER_SIGNATURE)
    unscanned = await pipeline_of(source, stores, work_dir, None).process(
        job_of("3001", "document", None)
    )
    assert unscanned.status == "stored"


async def test_a_wrong_sha256_is_rejected(
    source: FolderSource, stores: Stores, work_dir: Path, tmp_path: Path
) -> None:
    """Bytes that are not what Meta's webhook hashed (or its lookup) are `sha256_mismatch`."""
    photo = files.jpeg_with_gps(tmp_path / "p.jpg")
    wrong = hashlib.sha256(b"another file").hexdigest()
    source.add("4001", photo, "image/jpeg")
    pipeline = pipeline_of(source, stores, work_dir, None)
    by_webhook = await pipeline.process(
        job_of("4001", "image", "image/jpeg", declared_sha256=wrong)
    )
    assert (by_webhook.status, by_webhook.reason) == ("rejected", "sha256_mismatch")
    source.add("4002", photo, "image/jpeg", sha256=wrong)
    by_lookup = await pipeline.process(job_of("4002", "image", "image/jpeg"))
    assert (by_lookup.status, by_lookup.reason) == ("rejected", "sha256_mismatch")
    assert stores.quarantined(media_key(TENANT, SENT_AT, "4002")) == photo.read_bytes()


async def test_over_the_cap_or_meta_size_is_rejected(
    source: FolderSource, stores: Stores, work_dir: Path, tmp_path: Path
) -> None:
    """A file over its type's cap is cut short by the download and rejected `too_large`
    with nothing kept; a size other than the lookup's file_size is `size_mismatch`."""
    photo = files.jpeg_with_gps(tmp_path / "p.jpg")
    source.add("5001", photo, "image/jpeg")
    limits = MediaLimits(max_bytes_image=photo.stat().st_size - 1)
    capped = await pipeline_of(source, stores, work_dir, None, limits).process(
        job_of("5001", "image", "image/jpeg")
    )
    assert (capped.status, capped.reason, capped.object_key) == ("rejected", "too_large", None)
    assert stores.quarantined(media_key(TENANT, SENT_AT, "5001")) is None
    source.add("5002", photo, "image/jpeg", file_size=photo.stat().st_size + 10)
    wrong = await pipeline_of(source, stores, work_dir, None).process(
        job_of("5002", "image", "image/jpeg")
    )
    assert (wrong.status, wrong.reason) == ("rejected", "size_mismatch")


async def test_an_expired_url_is_resolved_again_once(
    source: FolderSource, stores: Stores, work_dir: Path, tmp_path: Path
) -> None:
    """A URL that answers 401 is resolved anew and the file fetched from the new one; a
    second expired URL in the same try is UrlExpired for the caller's budget."""
    photo = files.png(tmp_path / "p.png")
    source.add("6001", photo, "image/png", expired_urls=1)
    pipeline = pipeline_of(source, stores, work_dir, None)
    file = await pipeline.process(job_of("6001", "image", "image/png"))
    assert file.status == "stored"
    assert (source.lookups["6001"], source.downloads["6001"]) == (2, 2)
    source.add("6002", photo, "image/png", expired_urls=5)
    with pytest.raises(UrlExpired) as caught:
        await pipeline.process(job_of("6002", "image", "image/png"))
    assert (caught.value.reason, caught.value.retryable) == ("download_failed", True)
    assert (source.lookups["6002"], source.downloads["6002"]) == (2, 2)


async def test_a_second_run_answers_from_the_store_without_downloading(
    source: FolderSource, stores: Stores, work_dir: Path, tmp_path: Path
) -> None:
    """A retry or a replay finds the stored object by its key and sha256: the same file
    (new URLs), neither a lookup nor a download; a different declared sha256 fetches anew."""
    photo = files.jpeg_with_gps(tmp_path / "p.jpg")
    source.add("7001", photo, "image/jpeg")
    first = await pipeline_of(source, stores, work_dir, None).process(
        job_of("7001", "image", "image/jpeg")
    )
    again = await pipeline_of(source, stores, work_dir, None).process(
        job_of("7001", "image", "image/jpeg")
    )
    assert (source.lookups["7001"], source.downloads["7001"]) == (1, 1)
    same = ("url", "url_expires_at", "thumbnail_url")
    assert again.model_dump(exclude=set(same)) == first.model_dump(exclude=set(same))
    assert again.url is not None
    assert stores.stored(media_key(TENANT, SENT_AT, "7001")) is not None
    other = hashlib.sha256(b"x").hexdigest()
    await pipeline_of(source, stores, work_dir, None).process(
        job_of("7001", "image", "image/jpeg", declared_sha256=other)
    )
    assert source.downloads["7001"] == 2


async def test_outages_are_retryable_and_name_their_step(
    source: FolderSource, stores: Stores, work_dir: Path, tmp_path: Path, closed_port: int
) -> None:
    """Scanner down: scanner_unavailable, nothing stored. Graph down: lookup_failed. Store
    down: store_unavailable. All retryable; an unknown media id is not_found, final."""
    pdf = files.pdf(tmp_path / "d.pdf")
    source.add("8001", pdf, "application/pdf")
    job = job_of("8001", "document", "application/pdf")
    down_scanner = ClamdScanner(f"tcp://127.0.0.1:{closed_port}")
    pipeline = MediaPipeline(source, stores.store, scanner=down_scanner, work_dir=work_dir)
    with pytest.raises(MediaUnavailable) as scanner:
        await pipeline.process(job)
    assert (scanner.value.reason, scanner.value.retryable) == ("scanner_unavailable", True)
    assert await stores.store.head(media_key(TENANT, SENT_AT, "8001")) is None
    source.down = True
    with pytest.raises(MediaUnavailable) as graph:
        await pipeline_of(source, stores, work_dir, None).process(job)
    assert (graph.value.reason, graph.value.retryable) == ("lookup_failed", True)
    source.down = False
    with pytest.raises(MediaUnavailable) as store:
        await MediaPipeline(source, DownStore(), work_dir=work_dir).process(job)
    assert (store.value.reason, store.value.retryable) == ("store_unavailable", True)
    with pytest.raises(MediaUnavailable) as unknown:
        await pipeline_of(source, stores, work_dir, None).process(job_of("8999", "document", None))
    assert (unknown.value.reason, unknown.value.retryable) == ("not_found", False)
    assert (await pipeline_of(source, stores, work_dir, None).process(job)).status == "stored"


async def test_files_are_processed_concurrently(
    source: FolderSource, stores: Stores, work_dir: Path, tmp_path: Path
) -> None:
    """Eight files at once through one pipeline all end stored, each under its own key."""
    clip = files.mp4_video(tmp_path / "c.mp4")
    photo = files.jpeg_with_gps(tmp_path / "p.jpg")
    jobs = []
    for index in range(8):
        media_id = f"90{index:02d}"
        if index % 2:
            source.add(media_id, clip, "video/mp4")
            jobs.append(job_of(media_id, "video", "video/mp4"))
        else:
            source.add(media_id, photo, "image/jpeg")
            jobs.append(job_of(media_id, "image", "image/jpeg"))
    pipeline = pipeline_of(source, stores, work_dir, None)
    started = time.monotonic()
    results: list[MediaFile] = await asyncio.gather(*(pipeline.process(job) for job in jobs))
    assert time.monotonic() - started < 30
    assert [file.status for file in results] == ["stored"] * 8
    assert len({file.object_key for file in results}) == 8


async def test_a_tenants_cap_lowers_the_services_and_never_raises_it(
    source: FolderSource, stores: Stores, work_dir: Path, tmp_path: Path
) -> None:
    """The job carries the tenant's cap for its type (media.max_bytes): under the
    service's, the file over it is `too_large`; above the service's, the service's holds."""
    photo = files.jpeg_with_gps(tmp_path / "p.jpg")
    size = photo.stat().st_size
    source.add("5101", photo, "image/jpeg")
    source.add("5102", photo, "image/jpeg")
    source.add("5103", photo, "image/jpeg")
    pipeline = pipeline_of(source, stores, work_dir, None)
    capped = await pipeline.process(job_of("5101", "image", "image/jpeg", max_bytes=size - 1))
    assert (capped.status, capped.reason) == ("rejected", "too_large")
    fits = await pipeline.process(job_of("5102", "image", "image/jpeg", max_bytes=size))
    assert fits.status == "stored"
    strict = MediaLimits(max_bytes_image=size - 1)
    raised = await pipeline_of(source, stores, work_dir, None, strict).process(
        job_of("5103", "image", "image/jpeg", max_bytes=10 * size)
    )
    assert (raised.status, raised.reason) == ("rejected", "too_large")


async def test_a_tenants_url_ttl_is_the_file_urls_lifetime(
    source: FolderSource, stores: Stores, work_dir: Path, tmp_path: Path
) -> None:
    """media.url_ttl_s: the stored file's URL (and a second run's, from the store) lives
    that long instead of the service's WA_MEDIA_URL_TTL_S (3600 s here)."""
    photo = files.jpeg_with_gps(tmp_path / "p.jpg")
    source.add("5201", photo, "image/jpeg")
    pipeline = pipeline_of(source, stores, work_dir, None)
    for _ in range(2):  # fetched, then answered from the store
        before = time.time()
        file = await pipeline.process(job_of("5201", "image", "image/jpeg", url_ttl_s=900))
        assert file.status == "stored"
        assert file.url_expires_at is not None
        lifetime = file.url_expires_at.timestamp() - before
        assert 800 < lifetime <= 901
    default = await pipeline.process(job_of("5201", "image", "image/jpeg"))
    assert default.url_expires_at is not None
    assert default.url_expires_at.timestamp() - time.time() > 3000
