"""Events the broker can never take are that event's item's failure, not the batch's
(issue 9 point 2, issue 11 point 1, the shard's side): the batch is tried again up to the
attempt budget, then the item is dead-lettered, a bounded placeholder takes its place in
the conversation, and the partition goes on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from actors.shard import ConversationShard
from actors.shard_metrics import ShardStats
from adapters.outbox import OutboxPublisher, read_outbox
from adapters.ports import Rejection
from models.dead_letter import DeadLetter
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

    async def publish_dead(self, letters: Sequence[DeadLetter]) -> list[str]:
        """The inner outbox's dead letters."""
        return await self.inner.publish_dead(letters)

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


async def test_a_refused_event_is_retried_then_dead_lettered_in_its_place(
    tmp_path: Path,
) -> None:
    """wamid.2 refused on every try: its batch (with wamid.3) is offered three times, then
    wamid.2 is dead-lettered with the publisher's reason and a placeholder is published
    in its place; wamid.3 keeps its sequence."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    publisher = RefusingPublisher(
        OutboxPublisher(tmp_path / "outbox.db"),
        lambda e: e.event_id == "wamid.2",
    )
    stats = ShardStats()
    await store(inbox, [inbox_item(n) for n in (1, 2, 3)])
    config = shard_config(block_ms=10, max_item_age_s=None)
    shard = ConversationShard(config, inbox, publisher, stats)
    # wamid.1 with c1's `conversation.created`, then wamid.2 refused in the batch of 2 and 3.
    assert await drain(shard) == [1 + 1, 2]
    assert publisher.calls == [
        ["conversation", "message"],
        ["message", "message"],
        ["message", "message"],
        ["message", "message"],
        ["unsupported", "message"],
    ]
    events = published(tmp_path / "outbox.db")
    (letter,) = await inbox.dead_letters(10)
    assert [(e["event_id"], e["sequence"], e["category"]) for e in events] == [
        ("wamid.1", 2, "message"),
        (f"dead:{letter.dead_letter_id}", 3, "unsupported"),
        ("wamid.3", 4, "message"),
    ]
    placeholder = events[1]
    assert placeholder["conversation_id"] == "c1"
    assert placeholder["data"]["raw"] is None
    assert "refused by the test" in placeholder["data"]["issues"][0]["msg"]
    assert (letter.step, letter.event_id, letter.item) == ("publish", "wamid.2", inbox_item(2))
    assert [a.step for a in letter.attempts] == ["publish"] * 3
    assert "refused by the test" in letter.reason
    assert (stats.rejected, stats.dead) == (3, 1)
    assert await inbox.backlog(0) == 0
    await inbox.close()
    await publisher.close()


async def test_a_dead_letter_the_exchange_refuses_stays_in_the_failed_store(
    tmp_path: Path,
) -> None:
    """The dead-letter exchange refusing the letter (a raw item over its size) does not
    stop the partition: the letter is kept in the failed store marked unpublished."""

    class RefusingDead(RefusingPublisher):
        async def publish_dead(self, letters: Sequence[DeadLetter]) -> list[str]:
            return [letter.dead_letter_id for letter in letters]

    inbox = sqlite_inbox(tmp_path / "inbox.db")
    publisher = RefusingDead(
        OutboxPublisher(tmp_path / "outbox.db"), lambda e: e.event_id == "wamid.1"
    )
    await store(inbox, [inbox_item(1)])
    shard = ConversationShard(shard_config(block_ms=10, max_item_age_s=None), inbox, publisher)
    assert await drain(shard) == [2]  # c1's `conversation.created` and the placeholder
    (letter,) = await inbox.dead_letters(10)
    assert (letter.event_id, letter.published) == ("wamid.1", False)
    assert await inbox.backlog(0) == 0
    await inbox.close()
    await publisher.close()


async def test_a_replay_refused_stays_quarantined_as_a_replay(tmp_path: Path) -> None:
    """An item past the maximum age is published under `replay`; its placeholder too, so
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
    assert rows[0]["event"]["data"]["dead_letter_id"] is not None
    await inbox.close()
    await publisher.close()


class ProcessKilled(BaseException):
    """Stands for the process dying (nothing in it survives, no `except Exception`)."""


async def test_a_restart_after_a_dead_letter_was_published_republishes_its_placeholder(
    tmp_path: Path,
) -> None:
    """The process dies after publishing the batch holding wamid.2's placeholder, before
    the commit. The restarted shard finds the stored dead letter and publishes the same
    events again (same ids, same sequences), even though wamid.2 would now publish: a
    consumer never sees two events under one sequence."""
    path = tmp_path / "inbox.db"
    inbox = sqlite_inbox(path)
    await store(inbox, [inbox_item(n) for n in (1, 2, 3)])

    class DiesAfterThePlaceholder(RefusingPublisher):
        async def publish(self, events: Sequence[NormalizedEvent]) -> list[Rejection]:
            rejected = await super().publish(events)
            if not rejected and any(e.event_id.startswith("dead:") for e in events):
                raise ProcessKilled
            return rejected

    outbox = OutboxPublisher(tmp_path / "outbox.db")
    dying = DiesAfterThePlaceholder(outbox, lambda e: e.event_id == "wamid.2")
    config = shard_config(block_ms=10, max_item_age_s=None)
    with pytest.raises(ProcessKilled):
        await drain(ConversationShard(config, inbox, dying))
    await inbox.close()
    first = [
        (r["event"]["event_id"], r["event"]["sequence"])
        for r in read_outbox(tmp_path / "outbox.db")
    ]
    restarted = sqlite_inbox(path)
    healthy = RefusingPublisher(outbox, lambda e: False)
    await drain(ConversationShard(config, restarted, healthy))
    every = [
        (r["event"]["event_id"], r["event"]["sequence"])
        for r in read_outbox(tmp_path / "outbox.db")
    ]
    again = every[len(first) :]
    assert again == first[-2:], "the placeholder's batch, republished exactly"
    assert again[0][0].startswith("dead:")
    assert again[1][0] == "wamid.3"
    assert "wamid.2" not in {event_id for event_id, _ in every}
    assert await restarted.backlog(0) == 0
    assert len(await restarted.dead_letters(10)) == 1
    await restarted.close()
    await outbox.close()


async def test_a_failing_item_holds_its_own_conversation_only(tmp_path: Path) -> None:
    """wamid.1 of c1 is refused until its attempts run out (2 here, ~1 s apart). While c1
    is parked, c2's entries are published and committed; c1's later entry waits behind
    wamid.1 and goes after its placeholder."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    publisher = RefusingPublisher(
        OutboxPublisher(tmp_path / "outbox.db"), lambda e: e.event_id == "wamid.1"
    )
    items = [inbox_item(n, conversation=cid) for n, cid in ((1, "c1"), (2, "c2"), (3, "c1"))]
    await store(inbox, [*items, inbox_item(4, conversation="c2")])
    config = shard_config(block_ms=10, max_item_age_s=None, max_attempts=2, retry_base_s=2.0)
    shard = ConversationShard(config, inbox, publisher)
    for _ in range(200):
        if await inbox.backlog(0) == 0:
            break
        await shard.run_once()
        await asyncio.sleep(0.02)
    events = [row["event"] for row in read_outbox(tmp_path / "outbox.db")]
    check_streams(events, {"c1": "customer", "c2": "customer"})
    (letter,) = await inbox.dead_letters(10)
    placeholder = f"dead:{letter.dead_letter_id}"
    assert [e["event_id"] for e in item_events(events)] == [
        "wamid.2",
        "wamid.4",
        placeholder,
        "wamid.3",
    ], "c2 went on while c1 waited; c1 kept its order"
    assert [a.step for a in letter.attempts] == ["publish", "publish"]
    await inbox.close()
    await publisher.close()
