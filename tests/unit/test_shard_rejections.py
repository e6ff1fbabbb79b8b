"""Events the broker can never take are that event's failure, not the batch's (issue 9,
point 2, the shard's side): the shard publishes a bounded `unsupported` event in its
place, or a minimal one when even that is refused, and the partition goes on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from actors.shard import ConversationShard
from actors.shard_metrics import ShardStats
from adapters.outbox import OutboxPublisher, read_outbox
from adapters.ports import Rejection
from models.event import NormalizedEvent
from tests.support.configs import shard_config, sqlite_inbox
from tests.support.events import check_streams, inbox_item, item_events, store
from tests.support.shards import drain


class RefusingPublisher:
    """The Publisher port on the outbox, refusing the events `refuses` picks the way the
    adapters do: the refused ones are reported, and nothing of that batch is written."""

    def __init__(self, inner: OutboxPublisher, refuses: Callable[[NormalizedEvent], bool]) -> None:
        self.inner = inner
        self.refuses = refuses
        self.calls: list[list[str]] = []

    async def publish(self, events: Sequence[NormalizedEvent]) -> list[Rejection]:
        self.calls.append([e.category for e in events])
        refused = [
            Rejection(i, "refused by the test") for i, e in enumerate(events) if self.refuses(e)
        ]
        if refused:
            return refused
        return await self.inner.publish(events)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


def published(path: Path) -> list[dict[str, Any]]:
    """The items' events published, once c1's whole stream is checked: sequences 1..n,
    its `conversation.created` first (c1 is new to every test's store)."""
    events = [row["event"] for row in read_outbox(path)]
    check_streams(events, {"c1": "customer"})
    return item_events(events)


async def test_a_refused_event_is_replaced_by_an_unsupported_one_in_its_place(
    tmp_path: Path,
) -> None:
    """wamid.2 is refused as a message: the batch is published again with an unsupported
    event (same id, sequence and conversation, the raw item and the reason) in its place."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    publisher = RefusingPublisher(
        OutboxPublisher(tmp_path / "outbox.db"),
        lambda e: e.event_id == "wamid.2" and e.category != "unsupported",
    )
    stats = ShardStats()
    await store(inbox, [inbox_item(n) for n in (1, 2, 3)])
    config = shard_config(block_ms=10, max_item_age_s=None)
    shard = ConversationShard(config, inbox, publisher, stats)
    # wamid.1 with c1's `conversation.created`, then wamid.2 refused in the batch of 2 and 3.
    assert await drain(shard) == [1 + 1, 2]
    events = published(tmp_path / "outbox.db")
    assert [(e["event_id"], e["sequence"], e["category"]) for e in events] == [
        ("wamid.1", 2, "message"),
        ("wamid.2", 3, "unsupported"),
        ("wamid.3", 4, "message"),
    ]
    replaced = events[1]
    assert replaced["conversation_id"] == "c1"
    assert replaced["data"]["raw"] == inbox_item(2).item
    assert "refused by the test" in replaced["data"]["issues"][0]["msg"]
    assert stats.rejected == 1
    assert await inbox.backlog(0) == 0
    await inbox.close()
    await publisher.close()


async def test_an_unsupported_replacement_refused_again_falls_back_to_a_minimal_event(
    tmp_path: Path,
) -> None:
    """Refused as itself and as `unsupported` with its raw item: the third attempt carries
    no body data at all (no raw, no business ids), and is published."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    publisher = RefusingPublisher(
        OutboxPublisher(tmp_path / "outbox.db"),
        lambda e: e.event_id == "wamid.2" and getattr(e.data, "raw", True) is not None,
    )
    await store(inbox, [inbox_item(n) for n in (1, 2, 3)])
    config = shard_config(block_ms=10, max_item_age_s=None)
    shard = ConversationShard(config, inbox, publisher, ShardStats())
    assert await drain(shard) == [1 + 1, 2]  # the first with c1's `conversation.created`
    assert publisher.calls == [
        ["conversation", "message"],  # c1's `conversation.created` and wamid.1
        ["message", "message"],  # wamid.2's batch, three times
        ["unsupported", "message"],
        ["unsupported", "message"],
    ]
    events = published(tmp_path / "outbox.db")
    assert [(e["event_id"], e["sequence"]) for e in events] == [
        ("wamid.1", 2),
        ("wamid.2", 3),
        ("wamid.3", 4),
    ]
    minimal = events[1]
    assert (minimal["category"], minimal["data"]["raw"]) == ("unsupported", None)
    assert minimal["business"] == {
        "waba_id": None,
        "phone_number_id": None,
        "display_phone_number": None,
    }
    assert await inbox.backlog(0) == 0
    await inbox.close()
    await publisher.close()


async def test_a_replay_refused_stays_quarantined_as_a_replay(tmp_path: Path) -> None:
    """An item past the maximum age is published under `replay`; its replacement too, so
    normal consumers never see it."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    publisher = RefusingPublisher(
        OutboxPublisher(tmp_path / "outbox.db"), lambda e: e.data.kind != "unsupported"
    )
    await store(inbox, [inbox_item(1)])
    config = shard_config(block_ms=10, max_item_age_s=3600.0)
    assert await ConversationShard(config, inbox, publisher, ShardStats()).run_once() == 1
    rows = list(read_outbox(tmp_path / "outbox.db"))
    assert [(r["routing_key"], r["event"]["data"]["kind"]) for r in rows] == [
        ("acme.replay.message", "unsupported")
    ]
    await inbox.close()
    await publisher.close()
