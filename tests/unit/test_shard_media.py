"""Media messages in the shard (issue 12 point 4): a media message waits for its file
holding its own conversation only, for at most the media budget; the file's outcome is in
`data.file`; failures inside the budget are retried, those retrying cannot fix are not;
media off publishes `skipped`; a failing earlier entry of the conversation keeps the order.

The runner is an embedded MediaRunner of the test's own (the port's contract: answer a
MediaFile or raise the project's errors), gated per media id so the test decides when a
file is ready."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from actors.media_fetch import MediaFetcher, MediaPolicy
from actors.shard import ConversationShard
from actors.shard_metrics import ShardStats
from adapters.errors import MediaUnavailable, TransientError
from adapters.outbox import OutboxPublisher, read_outbox
from models.media import MediaFile, MediaJob
from tests.support.configs import shard_config, sqlite_inbox
from tests.support.events import check_streams, inbox_item, item_events, store
from tests.unit.test_shard_rejections import RefusingPublisher


def image(n: int, conversation: str = "c1", media_id: str | None = None) -> Any:
    """inbox_item n as an image message of media id `m<n>`."""
    return inbox_item(
        n,
        conversation=conversation,
        raw={
            "from": "16505550001",
            "id": f"wamid.{n}",
            "timestamp": "1750000000",
            "type": "image",
            "image": {
                "id": media_id or f"m{n}",
                "mime_type": "image/jpeg",
                "sha256": "c2hhMjU2",
            },
        },
    )


class GatedRunner:
    """Answers `stored` for a media id once its gate is open; `fail` picks what a try
    raises instead (None: no failure)."""

    def __init__(self, fail: Callable[[MediaJob, int], Exception | None] | None = None) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.calls: list[str] = []
        self.fail = fail

    def gate(self, media_id: str) -> asyncio.Event:
        return self.gates.setdefault(media_id, asyncio.Event())

    async def run(self, job: MediaJob) -> MediaFile:
        self.calls.append(job.media_id)
        error = self.fail(job, self.calls.count(job.media_id)) if self.fail else None
        if error is not None:
            raise error
        await self.gate(job.media_id).wait()
        return MediaFile(
            status="stored", object_key=f"{job.tenant_id}/2025/06/{job.media_id}", size=3
        )


def fetcher(runner: GatedRunner, **policy: Any) -> MediaFetcher:
    settings: dict[str, Any] = {"wait_s": 5.0, "retry_base_s": 0.01, "retry_max_delay_s": 0.02}
    settings.update(policy)
    return MediaFetcher(runner, MediaPolicy(**settings))


async def run_for(
    shard: ConversationShard,
    seconds: float,
    outbox: Path | None = None,
    until: int = 0,
) -> None:
    """Run the shard's batches for a while (a held conversation makes run_once return 0
    while work remains, so `drain` would stop early), and on until `outbox` holds `until`
    item events (within 60 s: a busy machine must not fail the test, only slow it)."""
    loop = asyncio.get_running_loop()
    deadline, patience = loop.time() + seconds, loop.time() + 60
    while loop.time() < deadline or (
        outbox is not None and len(ids(published(outbox))) < until and loop.time() < patience
    ):
        await shard.run_once()
        await asyncio.sleep(0.005)


def published(path: Path) -> list[dict[str, Any]]:
    return [row["event"] for row in read_outbox(path)]


def ids(events: Sequence[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in item_events(events)]


async def test_a_media_message_holds_only_its_conversation_until_its_file_is_ready(
    tmp_path: Path,
) -> None:
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = tmp_path / "outbox.db"
    runner = GatedRunner()
    shard = ConversationShard(
        shard_config(block_ms=10, max_item_age_s=None),
        inbox,
        OutboxPublisher(outbox),
        ShardStats(),
        media=fetcher(runner),
    )
    await store(inbox, [image(1), inbox_item(2), inbox_item(3, conversation="c2")])
    await run_for(shard, 0.3, outbox, until=1)
    assert ids(published(outbox)) == ["wamid.3"], "c2 goes on, c1 waits for its file"
    assert runner.calls == ["m1"]

    runner.gate("m1").set()
    await run_for(shard, 0.3, outbox, until=3)
    events = published(outbox)
    assert ids(events) == ["wamid.3", "wamid.1", "wamid.2"]
    check_streams(events, {"c1": "customer", "c2": "customer"})
    first = item_events(events)[1]
    assert first["data"]["file"]["status"] == "stored"
    assert first["data"]["file"]["object_key"] == "acme/2025/06/m1"
    assert first["data"]["file"]["attempts"] == 1
    assert await inbox.backlog(0) == 0


async def test_failures_are_retried_within_the_budget_then_published_as_failed(
    tmp_path: Path,
) -> None:
    """The store down on every try: retried until `wait_s`, then the message goes out
    with `failed` and the last try's reason, and its conversation's successor after it."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = tmp_path / "outbox.db"
    runner = GatedRunner(lambda job, n: TransientError("s3 put: connection refused"))
    shard = ConversationShard(
        shard_config(block_ms=10, max_item_age_s=None),
        inbox,
        OutboxPublisher(outbox),
        media=fetcher(runner, wait_s=0.3),
    )
    await store(inbox, [image(1), inbox_item(2)])
    await run_for(shard, 0.15)
    assert ids(published(outbox)) == []
    await run_for(shard, 0.5, outbox, until=2)
    events = published(outbox)
    assert ids(events) == ["wamid.1", "wamid.2"]
    file = item_events(events)[0]["data"]["file"]
    assert (file["status"], file["reason"]) == ("failed", "store_unavailable")
    assert file["attempts"] > 2, "retried within the budget"
    assert file["url"] is None


async def test_what_retrying_cannot_fix_fails_at_once(tmp_path: Path) -> None:
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = tmp_path / "outbox.db"
    runner = GatedRunner(lambda job, n: MediaUnavailable("not_found", "gone", retryable=False))
    shard = ConversationShard(
        shard_config(block_ms=10, max_item_age_s=None),
        inbox,
        OutboxPublisher(outbox),
        media=fetcher(runner, wait_s=30.0),
    )
    await store(inbox, [image(1), inbox_item(2)])
    await run_for(shard, 0.3, outbox, until=2)
    events = published(outbox)
    assert ids(events) == ["wamid.1", "wamid.2"]
    file = item_events(events)[0]["data"]["file"]
    assert (file["status"], file["reason"], file["attempts"]) == ("failed", "not_found", 1)
    assert runner.calls == ["m1"]


async def test_media_off_publishes_skipped_without_fetching(tmp_path: Path) -> None:
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = tmp_path / "outbox.db"
    runner = GatedRunner()
    shard = ConversationShard(
        shard_config(block_ms=10, max_item_age_s=None),
        inbox,
        OutboxPublisher(outbox),
        media=fetcher(runner, types=("video",)),
    )
    await store(inbox, [image(1)])
    await run_for(shard, 0.2, outbox, until=1)
    (event,) = item_events(published(outbox))
    assert (event["data"]["file"]["status"], event["data"]["file"]["reason"]) == (
        "skipped",
        "type_disabled",
    )
    assert runner.calls == []


async def test_an_earlier_failing_entry_and_a_held_media_message_keep_their_order(
    tmp_path: Path,
) -> None:
    """c1: wamid.1 refused by the publisher once, wamid.2 an image still being fetched,
    wamid.3 a text. The failure parks c1 with the held entries behind it; back from the
    park, wamid.1 goes and c1 is held again at wamid.2 until its file is ready."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = tmp_path / "outbox.db"
    refusals = {"wamid.1": 1}

    def refuses(event: Any) -> bool:
        left = refusals.get(event.event_id, 0)
        refusals[event.event_id] = max(0, left - 1)
        return left > 0

    runner = GatedRunner()
    shard = ConversationShard(
        shard_config(block_ms=10, max_item_age_s=None, retry_base_s=0.05),
        inbox,
        RefusingPublisher(OutboxPublisher(outbox), refuses),
        media=fetcher(runner),
    )
    await store(inbox, [inbox_item(1), image(2), inbox_item(3)])
    await run_for(shard, 0.4, outbox, until=1)
    assert ids(published(outbox)) == ["wamid.1"]
    runner.gate("m2").set()
    await run_for(shard, 0.3, outbox, until=3)
    events = published(outbox)
    assert ids(events) == ["wamid.1", "wamid.2", "wamid.3"]
    check_streams(events, {"c1": "customer"})
    assert runner.calls == ["m2"], "one fetch, however often the entry was parked"


class BrokenPolicyFetcher(MediaFetcher):
    """A fetcher whose policy check raises: a bug met by one item's shape."""

    def wanted(self, data: Any) -> bool:
        raise ValueError("a bug")


async def test_a_media_message_the_fetch_cannot_start_goes_out_failed_not_stuck(
    tmp_path: Path,
) -> None:
    """Starting a fetch raising must not stop the partition (the step runs on every read
    of the entry): the message is published with `failed/internal_error`, the next after."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = tmp_path / "outbox.db"
    shard = ConversationShard(
        shard_config(block_ms=10, max_item_age_s=None),
        inbox,
        OutboxPublisher(outbox),
        media=BrokenPolicyFetcher(GatedRunner(), MediaPolicy()),
    )
    await store(inbox, [image(1), inbox_item(2)])
    await run_for(shard, 0.3, outbox, until=2)
    events = published(outbox)
    assert ids(events) == ["wamid.1", "wamid.2"]
    file = item_events(events)[0]["data"]["file"]
    assert (file["status"], file["reason"]) == ("failed", "internal_error")
    assert await inbox.backlog(0) == 0


async def test_an_entry_left_over_by_a_bounded_cut_goes_before_its_held_media_message(
    tmp_path: Path,
) -> None:
    """Batches of one: text 1 is cut, text 2 is left ready, image 3 held for its file.
    The next pass must publish 2 before 3, not put 2 behind the hold (found with the
    per-tenant throttle, which leaves entries ready the same way)."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = tmp_path / "outbox.db"
    runner = GatedRunner()
    shard = ConversationShard(
        shard_config(block_ms=10, max_item_age_s=None, batch_size=1, reorder_window_ms=0),
        inbox,
        OutboxPublisher(outbox),
        ShardStats(),
        media=fetcher(runner),
    )
    await store(inbox, [inbox_item(1), inbox_item(2), image(3), inbox_item(4)])
    await run_for(shard, 0.3, outbox, until=2)
    assert ids(published(outbox)) == ["wamid.1", "wamid.2"], "2 is earlier than the hold"
    runner.gate("m3").set()
    await run_for(shard, 0.3, outbox, until=4)
    events = published(outbox)
    assert ids(events) == ["wamid.1", "wamid.2", "wamid.3", "wamid.4"]
    check_streams(events, {"c1": "customer"})
