"""Media end to end (issue 12): the real service (`python -m cluster run`: Ray, the shard
pool, the media pool's worker actor) fetches each media message's file from the Graph
simulator (loadtest/graph_sim.py, on a real loopback port), checks, sanitizes and stores
it, and publishes the message with `data.file`; the stored object is served at its URL.

Two stores: the embedded folder (served by the service's own `GET /media/...`) and S3 on
the test's SeaweedFS with the test's clamd scanning. Files are made by real encoders
(tests/support/media_files.py). Hostile files are rejected with their reason and no URL.
The messages are one customer's, so their order is checked too: a media message holds
its conversation until its file is ready, the text after it goes after it."""

from __future__ import annotations

import base64
import hashlib
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from PIL import Image

from adapters.outbox import read_outbox
from loadtest.graph_sim import GraphSim, GraphSimConfig, create_graph_app
from loadtest.tenants import BusinessNumber, SimTenant
from tests.support import media_files
from tests.support.app import signed
from tests.support.bodies import DISPLAY, PHONE_ID, WABA, envelope, messages_value, text_message
from tests.support.clamd_server import clamd_binary, own_clamd
from tests.support.events import is_state_event
from tests.support.s3_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server
from tests.support.service import running_service

pytestmark = pytest.mark.ray

SECRET = "e2e-media-secret"
TOKEN = "sim-token-e2e-media"
CUSTOMER = "16505550123"
ADMIN_TOKEN = "e2e-media-admin-token-0123"


@contextmanager
def graph_sim(sim: GraphSim) -> Iterator[str]:
    """The simulator on a loopback port in a thread of its own; yields its URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_graph_app(sim), log_level="warning", lifespan="off", ws="none")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "simulator did not start"
            assert thread.is_alive(), "simulator stopped"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def media_message(n: int, kind: str, media_id: str, mime: str, content: bytes, **extra: Any) -> Any:
    """Message n of the customer: a `kind` message of media id `media_id` as Meta sends it
    (the sha256 base64, as in Meta's webhook examples)."""
    digest = base64.b64encode(hashlib.sha256(content).digest()).decode()
    return {
        "from": CUSTOMER,
        "id": f"wamid.e2e-media-{n}",
        "timestamp": str(int(time.time())),
        "type": kind,
        kind: {"id": media_id, "mime_type": mime, "sha256": digest, **extra},
    }


# (message type, file maker, declared MIME type, extra fields, expected status, reason)
CASES: list[tuple[str, Callable[[Path], Path], str, dict[str, Any], str, str | None]] = [
    ("image", media_files.jpeg_with_gps, "image/jpeg", {"caption": "gps"}, "stored", None),
    (
        "audio",
        media_files.ogg_opus_voice,
        "audio/ogg; codecs=opus",
        {"voice": True},
        "stored",
        None,
    ),
    ("video", media_files.mp4_video, "video/mp4", {}, "stored", None),
    ("document", media_files.pdf, "application/pdf", {"filename": "a.pdf"}, "stored", None),
    ("sticker", media_files.webp_sticker, "image/webp", {"animated": False}, "stored", None),
    ("image", media_files.pe_executable, "image/jpeg", {}, "rejected", "executable"),
    ("image", media_files.pdf, "image/png", {}, "rejected", "type_mismatch"),
    ("document", media_files.eicar, "text/plain", {"filename": "e.txt"}, "rejected", "malware"),
    ("document", media_files.zip_bomb, "application/zip", {}, "rejected", "archive_bomb"),
    ("image", media_files.pixel_bomb_png, "image/png", {}, "rejected", "pixel_bomb"),
]


def build(tmp_path: Path, sim: GraphSim) -> tuple[list[Any], dict[str, bytes]]:
    """The messages (media cases, then a text) and each media id's original bytes."""
    messages, originals = [], {}
    for n, (kind, make, mime, extra, _, _) in enumerate(CASES):
        path = make(tmp_path / f"file-{n}")
        content = path.read_bytes()
        media_id = f"90000000000{n:02d}"
        sim.add_media(media_id, content, mime.split(";")[0], owner="acme")
        originals[media_id] = content
        messages.append(media_message(n, kind, media_id, mime, content, **extra))
    messages.append(text_message("wamid.e2e-media-last", CUSTOMER, "after the files"))
    return messages, originals


def item_events(data_dir: Path, count: int, timeout_s: float = 180) -> list[dict[str, Any]]:
    """The first `count` item events of the outbox, waiting for them."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = read_outbox(data_dir / "outbox.db", limit=10_000)
        events = [r["event"] for r in rows if not is_state_event(r["event"])]
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def check_files(events: list[dict[str, Any]], originals: dict[str, bytes]) -> None:
    """Every case's outcome, its stored bytes fetched from its URL."""
    assert [e["event_id"] for e in events] == [
        *(f"wamid.e2e-media-{n}" for n in range(len(CASES))),
        "wamid.e2e-media-last",
    ], "the conversation's order, the text after every file"
    for event, (kind, _, _, _, status, reason) in zip(events, CASES, strict=False):
        file = event["data"]["file"]
        assert (file["status"], file["reason"]) == (status, reason), (kind, file)
        original = originals[event["data"]["media_id"]]
        assert file["sha256"] == hashlib.sha256(original).hexdigest()
        if status == "rejected":
            assert file["url"] is None, file
            assert file["thumbnail_url"] is None, file
            continue
        stored = httpx.get(file["url"], timeout=30)
        assert stored.status_code == 200, (file["url"], stored.text[:300])
        assert hashlib.sha256(stored.content).hexdigest() == file["stored_sha256"]
        assert stored.headers["content-type"].startswith(file["mime_type"])
        meta = file["metadata"]
        if kind == "image":
            image = Image.open(io.BytesIO(stored.content))
            assert not image.getexif(), "EXIF (GPS, camera) stripped"
            assert (meta["width"], meta["height"]) == (480, 640), "turned by its orientation"
            assert httpx.get(file["thumbnail_url"], timeout=30).status_code == 200
        if kind in ("audio", "video"):
            assert meta["duration_s"] > 1, meta
        if kind == "document":
            assert meta["pages"] == 3, meta
        if kind == "sticker":
            assert (meta["width"], meta["height"]) == (512, 512), meta


def post(url: str, messages: list[Any]) -> None:
    body, headers = signed(
        envelope(("messages", messages_value(messages, phone_number_id=PHONE_ID))), SECRET
    )
    answer = httpx.post(f"{url}/webhook", content=body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text


def simulator() -> GraphSim:
    tenant = SimTenant(
        id="acme",
        app_secret=SECRET,
        numbers=(BusinessNumber(PHONE_ID, DISPLAY, WABA),),
        access_token=TOKEN,
    )
    return GraphSim(GraphSimConfig([tenant]))


def env(graph_url: str) -> dict[str, str]:
    return {
        "WA_APP_SECRET": SECRET,
        "WA_TENANT_ID": "acme",
        "WA_ACCESS_TOKEN": TOKEN,
        "WA_GRAPH_API_URL": graph_url,
        "WA_MEDIA_ALLOWED_HOSTS": "127.0.0.1",  # the simulator: loopback, listed exactly
        "WA_SHARDS": "2",
        "WA_RAY_DASHBOARD": "false",
    }


def tenants_file(tmp_path: Path) -> Path:
    """acme owning the simulator's number and WABA explicitly, with its Graph token (the
    account refresher reads the numbers and WABAs a tenant owns)."""
    path = tmp_path / "tenants.json"
    path.write_bytes(
        orjson.dumps(
            {
                "tenants": [
                    {
                        "id": "acme",
                        "app_secrets": [SECRET],
                        "access_token": TOKEN,
                        "waba_ids": [WABA],
                        "phone_number_ids": [PHONE_ID],
                    }
                ]
            }
        )
    )
    return path


def admin(url: str, path: str, timeout_s: float = 90) -> dict[str, Any]:
    """An admin API answer once it holds something (the refresher's first round)."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = httpx.get(
            f"{url}/admin/tenants/acme/{path}",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        fetched = body.get("fetched_at") or (body.get("account") or {}).get("fetched_at")
        if fetched or time.monotonic() > deadline:
            return body
        time.sleep(1)


def test_every_media_type_is_stored_and_hostile_files_rejected_on_the_folder_store(
    tmp_path: Path,
) -> None:
    """And the business account and templates are read from the simulator."""
    sim = simulator()
    messages, originals = build(tmp_path, sim)
    settings = {k: v for k, v in env("").items() if k not in ("WA_APP_SECRET", "WA_TENANT_ID")}
    del settings["WA_ACCESS_TOKEN"]
    with graph_sim(sim) as graph_url:
        settings.update(
            WA_GRAPH_API_URL=graph_url,
            WA_TENANTS_FILE=str(tenants_file(tmp_path)),
            WA_ADMIN_TOKEN=ADMIN_TOKEN,
        )
        with running_service(tmp_path / "svc", settings) as svc:
            post(svc.url, messages)
            events = item_events(svc.data_dir, len(messages))
            check_files(events, originals)
            # A URL of the service, signed: tampering with it is refused.
            url = events[0]["data"]["file"]["url"]
            assert url.startswith(svc.url + "/media/acme/")
            tampered = httpx.get(url.replace("signature=", "signature=0"), timeout=10)
            assert tampered.status_code == 403

            account = admin(svc.url, "account")
            assert list(account["account"]["phone_numbers"]) == [PHONE_ID], account
            assert list(account["account"]["wabas"]) == [WABA], account
            templates = admin(svc.url, "templates")
            assert templates["templates"], templates
            stats: dict[str, Any] = {}
            for _ in range(40):  # the shard's hook writes the counts every second
                stats = httpx.get(
                    f"{svc.url}/admin/tenants/acme/stats",
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                    timeout=10,
                ).json()
                if sum(stats["media_files"].values()) >= len(CASES):
                    break
                time.sleep(0.5)
            assert stats["media_files"] == {"stored": 5, "rejected": 5}, stats


def test_on_s3_with_clamd_the_same_and_the_scanner_finds_eicar(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    if clamd_binary() is None:
        pytest.skip("clamav-daemon is not installed (make services installs it)")
    sim = simulator()
    messages, originals = build(tmp_path, sim)
    with (
        own_clamd(tmp_path / "clamd") as clamd,
        graph_sim(sim) as graph_url,
        running_service(
            tmp_path / "svc",
            {
                **env(graph_url),
                "WA_S3_ENDPOINT_URL": s3_server.endpoint_url,
                "WA_S3_BUCKET": s3_bucket,
                "WA_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
                "WA_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
                "WA_CLAMD_URL": clamd.url,
            },
        ) as svc,
    ):
        post(svc.url, messages)
        events = item_events(svc.data_dir, len(messages))
        check_files(events, originals)
        assert events[0]["data"]["file"]["url"].startswith(s3_server.endpoint_url)
