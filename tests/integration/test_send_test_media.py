"""`python -m cluster send-test --media FILE` against the Graph simulator and the real
ingress app, both on loopback ports: the file is uploaded through Meta's documented
endpoint (the simulator then serves exactly its bytes), and the service accepts a signed
webhook whose message carries the returned media id, the MIME type and the file's sha256
in Meta's webhook shape (base64), with caption, filename, voice and animated as Meta
sends them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from adapters.ports import Inbox
from cluster.send_test import MediaSend, send_test
from cluster.settings import Settings
from ingress.app import IngressDeps, create_app
from loadtest.graph_sim import GraphSim, GraphSimConfig
from loadtest.tenants import BusinessNumber, SimTenant
from models.tenant import TenantDirectory
from tests.support import media_files
from tests.support.app import tenant
from tests.support.bodies import DISPLAY, PHONE_ID, WABA
from tests.support.configs import ingress_config, sqlite_inbox
from tests.support.graph_sim_server import serve_graph_sim

SECRET = "send-test-media-secret"
TOKEN = "sim-token-send-test"
PARTITIONS = 4


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """An ASGI app on a loopback port in this event loop until the block ends; its URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        sock.close()


class Rig:
    """The simulator (one tenant, `default`, owning the sample's number), the ingress app
    with the default tenant, and send-test's settings pointing at both."""

    def __init__(self, sim: GraphSim, graph_url: str, service_url: str, inbox: Inbox) -> None:
        self.sim = sim
        self.graph_url = graph_url
        self.webhook_url = f"{service_url}/webhook"
        self.inbox = inbox
        self.settings = Settings(
            app_secret=SecretStr(SECRET),
            access_token=SecretStr(TOKEN),
            graph_api_url=graph_url,
            graph_api_version="v23.0",
        )

    async def send(self, media: MediaSend) -> int:
        """send-test as the CLI runs it (blocking httpx, so in a thread of its own)."""
        return await asyncio.to_thread(send_test, self.settings, self.webhook_url, None, media)

    async def stored_messages(self) -> list[Any]:
        """The message items the ingress stored (it verified the signature to store them)."""
        items = [s.item for p in range(PARTITIONS) for s in await self.inbox.read(p, 100, 10)]
        assert all(i.tenant_id == "default" for i in items)
        return [i.item for i in items if i.kind == "message"]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    number = BusinessNumber(PHONE_ID, DISPLAY, WABA)
    sim = GraphSim(GraphSimConfig([SimTenant("default", SECRET, (number,), TOKEN)]))
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    deps = IngressDeps(
        config=ingress_config(partitions=PARTITIONS),
        directory=TenantDirectory([tenant("default", (SECRET,))]),
        inbox=inbox,
        ready_checks={},
        rate_limiter=None,
    )
    async with serve_graph_sim(sim) as port, serve(create_app(deps)) as service_url:
        yield Rig(sim, f"http://127.0.0.1:{port}", service_url, inbox)
    await inbox.close()


def _b64_sha256(content: bytes) -> str:
    return base64.b64encode(hashlib.sha256(content).digest()).decode()


async def test_an_image_is_uploaded_and_its_message_accepted(
    rig: Rig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The simulator holds the file's bytes under the new id (owned by the number's tenant),
    its lookup reports their hex sha256; the stored message names that id, image/jpeg and
    the base64 sha256 of the same bytes, with the caption."""
    photo = media_files.jpeg_with_gps(tmp_path / "photo.jpg")
    content = photo.read_bytes()
    assert await rig.send(MediaSend(photo, caption="the broken part")) == 0

    [media] = rig.sim.media.values()
    assert (media.content, media.mime_type, media.owner) == (content, "image/jpeg", "default")
    out = capsys.readouterr().out
    assert f"media id {media.id}" in out
    assert '200 {"status":"accepted"' in out

    [message] = await rig.stored_messages()
    assert message["type"] == "image"
    assert message["id"] == f"wamid.MEDIA{media.id}"
    assert message["image"] == {
        "caption": "the broken part",
        "mime_type": "image/jpeg",
        "sha256": _b64_sha256(content),
        "id": media.id,
    }
    # What the service will meet: the lookup and its link serve the very same file.
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=rig.graph_url, headers=auth) as graph:
        meta = (await graph.get(f"/v23.0/{media.id}")).json()
        assert (meta["sha256"], meta["file_size"]) == (
            hashlib.sha256(content).hexdigest(),
            len(content),
        )
        assert (await graph.get(meta["url"])).content == content


# (file maker, file name, MediaSend options, message type, fields beyond id/sha256)
KINDS: list[tuple[Callable[[Path], Path], str, dict[str, Any], str, dict[str, Any]]] = [
    (
        media_files.ogg_opus_voice,
        "note.ogg",
        {"voice": True},
        "audio",
        {"mime_type": "audio/ogg; codecs=opus", "voice": True},
    ),
    (
        media_files.pdf,
        "receipt.pdf",
        {"caption": "my receipt"},
        "document",
        {"mime_type": "application/pdf", "filename": "receipt.pdf", "caption": "my receipt"},
    ),
    (
        lambda p: media_files.webp_sticker(p, animated=True),
        "sticker.webp",
        {},
        "sticker",
        {"mime_type": "image/webp", "animated": True},
    ),
    (
        media_files.webp_sticker,
        "still.webp",
        {},
        "sticker",
        {"mime_type": "image/webp", "animated": False},
    ),
    (
        media_files.mp4_video,
        "clip.mp4",
        {"caption": "unboxing"},
        "video",
        {"mime_type": "video/mp4", "caption": "unboxing"},
    ),
    (
        media_files.pdf,
        "scan.bin",
        {"kind": "image", "mime_type": "image/png"},
        "image",
        {"mime_type": "image/png"},  # --type/--mime win over the name (a hostile file)
    ),
]


@pytest.mark.parametrize(
    ("make", "name", "options", "kind", "fields"), KINDS, ids=[k[1] for k in KINDS]
)
async def test_each_media_type_is_shaped_as_meta_sends_it(
    rig: Rig,
    tmp_path: Path,
    make: Callable[[Path], Path],
    name: str,
    options: dict[str, Any],
    kind: str,
    fields: dict[str, Any],
) -> None:
    """The message type from the MIME type (WebP: a sticker), Meta's fields per type."""
    path = make(tmp_path / name)
    content = path.read_bytes()
    assert await rig.send(MediaSend(path, **options)) == 0
    [media] = rig.sim.media.values()
    assert media.content == content
    assert media.mime_type == fields["mime_type"]
    [message] = await rig.stored_messages()
    assert message["type"] == kind
    assert message[kind] == {"id": media.id, "sha256": _b64_sha256(content), **fields}


async def test_a_refused_upload_sends_no_webhook(
    rig: Rig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A token the Graph API does not know: exit 1 with Meta's error, nothing posted."""
    photo = media_files.jpeg_with_gps(tmp_path / "photo.jpg")
    assert await rig.send(MediaSend(photo, token="EAAbogus")) == 1
    out = capsys.readouterr().out
    assert "refused: 401" in out
    assert '"code":190' in out
    assert rig.sim.media == {}
    assert await rig.stored_messages() == []


async def test_a_caption_on_audio_is_refused_before_uploading(
    rig: Rig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Meta sends no caption with audio: the command says so and uploads nothing."""
    path = tmp_path / "a.mp3"
    path.write_bytes(b"ID3" + bytes(64))
    assert await rig.send(MediaSend(path, caption="no")) == 1
    assert "no caption with audio" in capsys.readouterr().out
    assert rig.sim.media == {}
