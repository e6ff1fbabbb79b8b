"""Media holds keep the order the shard chose (issue 12 point 4, found in review): the
reorder window's Meta-time order survives a held photo; entries released from a hold go
after their conversation's entries still waiting to be batched; a recorded batch (a crash's
replay) holding a media message waits for its file without taking the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.shard import ConversationShard
from adapters.outbox import OutboxPublisher
from models.event import NormalizedEvent
from models.inbox import InboxItem
from models.routing import conversation_id, conversation_key
from tests.support.configs import shard_config, sqlite_inbox
from tests.support.events import inbox_item, item_events, store
from tests.unit.test_reorder import T0, WINDOW_MS, Wall
from tests.unit.test_shard_media import GatedRunner, fetcher, ids, image, published


class InstantRunner(GatedRunner):
    """Answers `stored` at once (every gate open)."""

    def gate(self, media_id: str) -> asyncio.Event:
        event = super().gate(media_id)
        event.set()
        return event


def test_a_recorded_batch_with_a_media_message_is_published_after_a_restart(
    tmp_path: Path,
) -> None:
    """A crashed process recorded a batch's order (the reorder window reordered it) that
    holds an image. The restarted shard loads it (`_load_replay`), starts the image's fetch
    and waits for it in `_cut` — but `run_once` then returns 0 without ever awaiting
    (`_fill_ready` returns at `if self._ready`), so `run()` spins and the fetch task never
    runs: the partition never moves, and the actor's event loop is taken for ever (status,
    drain, its own 5 s flush timeout cannot run). The runner here answers at once."""
    published_event = threading.Event()
    calls: list[str] = []

    class Signalling(OutboxPublisher):
        async def publish(self, events: Sequence[NormalizedEvent]) -> Any:
            result = await super().publish(events)
            if any(e.event_id == "wamid.1" for e in events):
                published_event.set()
            return result

    async def scenario() -> None:
        inbox = sqlite_inbox(tmp_path / "inbox.db")
        await store(inbox, [image(1), inbox_item(2, conversation="c2")])
        entries = await inbox.read(0, 10, 10)  # the first process read them ...
        await inbox.record_order(0, [e.entry_id for e in reversed(entries)])  # ... and died
        runner = InstantRunner()
        runner.calls = calls
        shard = ConversationShard(
            shard_config(block_ms=10, max_item_age_s=None, linger_ms=0),
            inbox,
            Signalling(tmp_path / "outbox.db"),
            media=fetcher(runner),
        )
        await shard.run()

    thread = threading.Thread(target=asyncio.run, args=(scenario(),), daemon=True)
    thread.start()
    try:
        assert published_event.wait(5.0), (
            f"the recorded batch was not published within 5 s; media runner calls: {calls} "
            "(the shard loop spins without yielding: the fetch task never ran)"
        )
    finally:
        pass  # a spinning daemon thread could not be stopped: it would die with pytest


def _item(n: int, meta_ts: int, arrived: float, media: bool = False) -> InboxItem:
    customer = "16505550001"
    key = conversation_key("acme", "106540352242922", customer)
    raw: dict[str, Any] = {
        "from": customer,
        "id": f"wamid.{n}",
        "timestamp": str(meta_ts),
    }
    if media:
        raw |= {"type": "image", "image": {"id": f"m{n}", "mime_type": "image/jpeg"}}
    else:
        raw |= {"type": "text", "text": {"body": f"message {n}"}}
    return InboxItem(
        tenant_id="acme",
        delivery_id=f"d{n}",
        received_at=datetime.fromtimestamp(arrived, UTC),
        kind="message",
        field="messages",
        position=(0, 0, 0),
        phone_number_id="106540352242922",
        conversation_key=key,
        conversation_id=conversation_id(key),
        partition=0,
        item=raw,
    )


async def test_control_the_same_with_the_file_ready_keeps_meta_time_order(tmp_path: Path) -> None:
    """Control (passes): the same scenario with the file ready before the release."""
    await _photo_then_text(tmp_path, ready_early=True)


async def test_an_image_sent_before_a_text_that_overtook_it_is_published_first(
    tmp_path: Path,
) -> None:
    await _photo_then_text(tmp_path, ready_early=False)


async def _photo_then_text(tmp_path: Path, ready_early: bool) -> None:
    """The customer sends a photo (Meta time T0) then a text (T0+1); Meta delivers the text
    first. The reorder window releases both in Meta-time order (photo, text), the photo's
    file is still being fetched, so the conversation is held — and MediaWaits.hold sorts
    its entries by arrival: the text is first, not pending, so `due()` releases the
    conversation at once and the text is published before the photo (marked `late`)."""
    wall = Wall()
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = tmp_path / "outbox.db"
    runner = GatedRunner()
    shard = ConversationShard(
        shard_config(reorder_window_ms=WINDOW_MS, block_ms=1, linger_ms=0, max_item_age_s=None),
        inbox,
        OutboxPublisher(outbox),
        wall_clock=wall,
        media=fetcher(runner),
    )
    text = _item(1, int(T0) + 1, T0)
    photo = _item(2, int(T0), T0 + 0.1, media=True)
    assert await inbox.append_deliveries([("d:1", [text])]) == [True]
    await shard.run_once()
    wall.now = T0 + 0.1
    assert await inbox.append_deliveries([("d:2", [photo])]) == [True]
    await shard.run_once()
    if ready_early:
        runner.gate("m2").set()
        await asyncio.sleep(0.01)
    wall.now = T0 + 1.05  # the text is due: released with the photo that sorts before it
    for _ in range(5):
        await shard.run_once()
        await asyncio.sleep(0.01)
    runner.gate("m2").set()
    for _ in range(5):
        await shard.run_once()
        await asyncio.sleep(0.01)
    assert ids(published(outbox)) == ["wamid.2", "wamid.1"], (
        "Meta-time order, as the window promises"
    )


class OpensGateOnPublish(OutboxPublisher):
    """Opens a media gate while a given event is being published (the fetch finishes
    while the shard is busy with a batch: any moment, in production)."""

    def __init__(self, path: Path, runner: GatedRunner, when: str, media_id: str) -> None:
        super().__init__(path)
        self.runner, self.when, self.media_id = runner, when, media_id

    async def publish(self, events: Sequence[NormalizedEvent]) -> Any:
        result = await super().publish(events)
        if any(e.event_id == self.when for e in events):
            self.runner.gate(self.media_id).set()
            await asyncio.sleep(0.02)  # the fetch task completes meanwhile
        return result


async def test_a_released_hold_never_passes_an_earlier_entry_of_its_conversation(
    tmp_path: Path,
) -> None:
    """c1: wamid.1 image (m1), wamid.2 text, wamid.3 image (m3). All held behind m1. m1
    ready: released [1, 2, 3]; 3 is held again, 1 is batched, 2 stays in `_ready` (the
    batch is full: batch_size 1 here, WA_SHARD_BATCH_SIZE / max bytes in production with
    many conversations released at once). m3 finishes while batch [1] is published; the next
    `_unpark` puts [3] *before* `_ready` = [2]: wamid.3 is published before wamid.2."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = tmp_path / "outbox.db"
    runner = GatedRunner()
    shard = ConversationShard(
        shard_config(block_ms=10, max_item_age_s=None, batch_size=1, linger_ms=0),
        inbox,
        OpensGateOnPublish(outbox, runner, when="wamid.1", media_id="m3"),
        media=fetcher(runner),
    )
    await store(inbox, [image(1), inbox_item(2), image(3)])
    for _ in range(6):
        await shard.run_once()
        await asyncio.sleep(0.005)
    assert ids(published(outbox)) == []
    runner.gate("m1").set()
    await asyncio.sleep(0.01)
    for _ in range(10):
        await shard.run_once()
        await asyncio.sleep(0.005)
    events = item_events(published(outbox))
    assert [e["event_id"] for e in events] == ["wamid.1", "wamid.2", "wamid.3"]
