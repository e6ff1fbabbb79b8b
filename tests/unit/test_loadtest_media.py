"""The harness's media stream: webhooks shaped as Meta's, text and media accounted apart,
file outcomes and throughput read from `data.file`, CPU windows from samples."""

from __future__ import annotations

import argparse
import base64
import hashlib
from pathlib import Path

import httpx
import orjson
import pytest

from ingress.signature import sign
from loadtest.accounting import Ledger
from loadtest.cpu_sampler import CpuSample, cpu_window
from loadtest.graph_sim import GraphSim, GraphSimConfig, create_graph_app
from loadtest.harness import RunState, make_event_hook
from loadtest.media_accounting import FileTally
from loadtest.media_traffic import (
    MEDIA_STREAM,
    GraphTarget,
    MediaSender,
    MediaSpec,
    MediaUploadFailed,
    kind_for,
    load_spec,
    media_deliveries,
    upload_many,
)
from loadtest.run_command import cpu_roots
from loadtest.tenants import generate_tenants
from loadtest.traffic import TrafficGenerator
from tests.support.media_files import jpeg_with_gps, pdf

SENDER = MediaSender("default", b"dev-app-secret", "106540352242922", "15550783881", "1022")
CONTENT = b"\x00\x00\x00\x18ftypmp42" + bytes(100)


def _messages(body: bytes) -> list[dict[str, object]]:
    value = orjson.loads(body)["entry"][0]["changes"][0]["value"]
    messages: list[dict[str, object]] = value["messages"]
    return messages


def test_a_media_message_is_shaped_as_meta_sends_it() -> None:
    """One signed POST per media id, each a `video` message naming its id, the MIME type
    and the file's sha256 base64-encoded (as Meta's webhooks write it), from the number
    the media was uploaded to."""
    spec = MediaSpec("video", CONTENT, "video/mp4", "clip.mp4")
    deliveries = media_deliveries(spec, ["1001", "1002"], SENDER, nonce="n", ts=1_700_000_000)
    assert len(deliveries) == 2
    first = deliveries[0]
    assert first.signature == sign(b"dev-app-secret", first.body)
    assert first.stream == MEDIA_STREAM
    body = orjson.loads(first.body)
    value = body["entry"][0]["changes"][0]["value"]
    assert value["metadata"]["phone_number_id"] == "106540352242922"
    (message,) = value["messages"]
    assert message["type"] == "video"
    assert message["video"] == {
        "mime_type": "video/mp4",
        "sha256": base64.b64encode(hashlib.sha256(CONTENT).digest()).decode(),
        "id": "1001",
    }
    assert first.keys == (message["id"],)
    assert value["contacts"][0]["wa_id"] == message["from"]


def test_each_media_message_has_its_own_conversation_unless_told() -> None:
    """Media ids, wamids and customers are distinct per message; with `conversations`
    set the customers repeat (to hold a conversation on purpose)."""
    spec = MediaSpec("image", CONTENT, "image/jpeg", "p.jpg")
    ids = [str(10**15 + i) for i in range(6)]
    own = [_messages(d.body)[0] for d in media_deliveries(spec, ids, SENDER, nonce="a", ts=1)]
    assert len({m["from"] for m in own}) == 6
    assert len({m["id"] for m in own}) == 6
    assert [m["image"]["id"] for m in own] == ids  # type: ignore[index]
    shared = media_deliveries(spec, ids, SENDER, nonce="b", ts=1, conversations=2)
    assert len({_messages(d.body)[0]["from"] for d in shared}) == 2


def test_documents_carry_a_filename_and_the_type_follows_the_mime(tmp_path: Path) -> None:
    """A PDF becomes a `document` message with its file name; a JPEG an `image`; an
    unknown extension is refused rather than sent with a guess."""
    spec = load_spec(pdf(tmp_path / "invoice.pdf"))
    assert (spec.kind, spec.mime_type) == ("document", "application/pdf")
    (delivery,) = media_deliveries(spec, ["77"], SENDER, nonce="d", ts=1)
    assert _messages(delivery.body)[0]["document"]["filename"] == "invoice.pdf"  # type: ignore[index]
    assert load_spec(jpeg_with_gps(tmp_path / "p.jpg")).kind == "image"
    assert kind_for("image/webp") == "sticker"
    assert kind_for("audio/ogg; codecs=opus") == "audio"
    (tmp_path / "x.bin").write_bytes(b"?")
    with pytest.raises(ValueError, match="unknown media type"):
        load_spec(tmp_path / "x.bin")


def test_text_only_traffic_sends_no_media() -> None:
    """`--text-only`: every message of the text stream is a text (statuses aside)."""
    generator = TrafficGenerator(
        generate_tenants(1, seed=3), 50, batch=4, seed=3, message_weights={"text": 1}
    )
    for _ in range(100):
        generator.next_delivery()
    messages = {k for k in generator.stats.by_type if k.startswith("message:")}
    assert messages == {"message:text"}


def _event(
    key: str, conv: str, seq: int, file: dict[str, object] | None = None
) -> dict[str, object]:
    data: dict[str, object] = {"file": file} if file is not None else {"text": "hi"}
    return {
        "event_id": key,
        "category": "message",
        "type": "video" if file else "text",
        "conversation_id": conv,
        "sequence": seq,
        "data": data,
    }


def test_text_and_media_are_accounted_apart() -> None:
    """Keys assigned to the media stream are acked, published, lost and timed apart from
    the text stream's: a slow video does not show in the text's ack→published."""
    ledger = Ledger()
    ledger.assign(("m1", "m2"), MEDIA_STREAM)
    ledger.record_attempt(("t1", "t2"), acked_at=1.0)
    ledger.record_attempt(("m1",), acked_at=1.0)
    ledger.record_attempt(("m2",), acked_at=1.0)
    ledger.record_published(_event("t1", "c1", 1), at=1.01)
    ledger.record_published(_event("t2", "c2", 1), at=1.03)
    ledger.record_published(_event("m1", "c3", 1, {"status": "stored"}), at=9.0)
    streams = ledger.streams()
    assert streams["text"]["keys_acked"] == 2
    assert streams["text"]["lost"] == 0
    assert streams["text"]["ack_to_published_ms"]["max"] == pytest.approx(30.0)
    assert streams["media"]["keys_published"] == 1
    assert streams["media"]["lost"] == 1  # m2: acked, never published
    assert streams["media"]["ack_to_published_ms"]["p50"] == pytest.approx(8000.0)
    summary = ledger.summary()  # the whole run still counts every key
    assert (summary.keys_acked, summary.lost) == (4, 1)


def test_files_are_tallied_once_by_status_reason_and_bytes() -> None:
    """Through the harness's event hook: each media message's first publication counts
    its file (a redelivery does not), stored bytes only for stored files, and files/s and
    MB/s over the span from the first send to the last publication."""
    state = RunState(ledger=Ledger())
    state.ledger.assign(("m1", "m2", "m3"), MEDIA_STREAM)
    for key in ("m1", "m2", "m3"):
        state.ledger.record_attempt((key,), acked_at=0.5)
    state.tally(MEDIA_STREAM).sent(0.0)
    hook = make_event_hook(state)
    stored = {"status": "stored", "size": 2_000_000, "stored_size": 1_500_000, "attempts": 1}
    rejected = {"status": "rejected", "reason": "sha256_mismatch", "size": 1_000_000}
    hook(_event("m1", "c1", 1, stored), 1.0)
    hook(_event("m1", "c1", 1, stored), 1.5)  # the broker redelivered it
    hook(_event("m2", "c2", 1, rejected), 1.5)
    hook(_event("m3", "c3", 1, {**stored, "size": 1_000_000, "stored_size": 1_000_000}), 2.0)
    report = state.files[MEDIA_STREAM].report()
    assert report["files"] == 3
    assert report["by_status"] == {"stored": 2, "rejected": 1}
    assert report["by_reason"] == {"rejected/sha256_mismatch": 1}
    assert report["bytes_downloaded"] == 4_000_000
    assert report["bytes_stored"] == 2_500_000
    assert report["span_s"] == 2.0
    assert (report["files_per_s"], report["downloaded_mb_per_s"]) == (1.5, 2.0)
    assert "text" not in state.files


def test_an_event_without_a_file_is_counted_as_such() -> None:
    """A media event whose data has no `file` (media off in an older service) is not a
    file outcome but is not hidden either."""
    tally = FileTally()
    tally.sent(0.0)
    tally.observe({"data": {"video": {"id": "1"}}}, 1.0)
    assert (tally.files, tally.no_file) == (0, 1)
    assert tally.report()["files_per_s"] == 0.0


def test_cpu_window_takes_the_samples_around_it() -> None:
    """CPU over a window runs from the sample at or before its start to the first at or
    after its end, per process group; a window outside the samples has none."""
    samples = [
        CpuSample(0.0, {"raylet": 1.0, "ray::MediaWorker": 0.0}),
        CpuSample(1.0, {"raylet": 1.2, "ray::MediaWorker": 0.5}),
        CpuSample(2.0, {"raylet": 1.4, "ray::MediaWorker": 1.5}),
        CpuSample(3.0, {"raylet": 1.6, "ray::MediaWorker": 2.5}),
    ]
    window = cpu_window(samples, 1.2, 2.5)
    assert window is not None
    assert window["wall_s"] == 2.0  # samples at 1.0 and 3.0
    assert window["cpu_s"] == pytest.approx(2.4)
    assert window["busy_cores"] == pytest.approx(1.2)
    assert list(window["by_process_cpu_s"]) == ["ray::MediaWorker", "raylet"]
    assert cpu_window(samples, 2.5, 9.0) is None


async def test_uploads_give_distinct_ids_that_the_lookup_resolves_to_the_file() -> None:
    """The file goes up once per message through the simulator's upload endpoint: every
    id is new, and the lookup of each reports the sha256 the webhook carries (hex there,
    base64 in the webhook) and the file's size; a refused upload stops the run."""
    tenant = generate_tenants(1, seed=9)[0]
    number = tenant.numbers[0].phone_number_id
    app = create_graph_app(GraphSim(GraphSimConfig([tenant])))
    spec = MediaSpec("video", CONTENT, "video/mp4", "clip.mp4")
    target = GraphTarget("http://graph.test", tenant.access_token, number)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://graph.test") as client:
        ids = await upload_many(target, spec, 5, client=client)
        assert len(set(ids)) == 5
        sender = MediaSender(tenant.id, tenant.secret_bytes, number, "1555", "1")
        deliveries = media_deliveries(spec, ids, sender, nonce="u", ts=1)
        auth = {"Authorization": f"Bearer {tenant.access_token}"}
        for upload_id, delivery in zip(ids, deliveries, strict=True):
            info = (await client.get(f"/v23.0/{upload_id}", headers=auth)).json()
            sent = _messages(delivery.body)[0]["video"]
            assert info["sha256"] == base64.b64decode(sent["sha256"]).hex()  # type: ignore[index]
            assert info["file_size"] == len(CONTENT)
        with pytest.raises(MediaUploadFailed, match="190"):
            await upload_many(GraphTarget(target.url, "wrong", number), spec, 1, client=client)


def test_cpu_roots_come_from_the_flags_and_the_runners_pid_file(tmp_path: Path) -> None:
    """`--cpu-pid-file` names the runner the service recorded first in its run.pid (its
    descendants follow it there); a file without one is an error, not an empty sample."""
    pid_file = tmp_path / "run.pid"
    pid_file.write_text('{"procs": [[4321, 99], [4400, 100]]}')
    args = argparse.Namespace(cpu_pid=[7], cpu_pid_file=pid_file)
    assert cpu_roots(args) == (7, 4321)
    assert cpu_roots(argparse.Namespace(cpu_pid=None, cpu_pid_file=None)) == ()
    with pytest.raises(SystemExit, match="no runner"):
        cpu_roots(argparse.Namespace(cpu_pid=None, cpu_pid_file=tmp_path / "missing.pid"))
