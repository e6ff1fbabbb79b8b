"""The reorder window (actors/reorder.py) on its own and through a real shard on the embedded
inbox and outbox: timestamp order within the window, bounded added latency, independence of
conversations, late messages at once, nothing lost when the holding process dies."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.normalize import normalize
from actors.reorder import ReorderBuffer
from actors.shard import ConversationShard
from actors.shard_metrics import ShardStats
from adapters.outbox import OutboxPublisher, read_outbox
from adapters.sqlite_inbox import SqliteInbox
from models.inbox import InboxItem, ItemKind, StoredItem
from models.routing import conversation_id, conversation_key
from tests.support.configs import shard_config, sqlite_inbox

T0 = 1_780_000_000.0  # epoch seconds: "now" at the start of each test
WINDOW_MS = 1000.0


class Wall:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def item(
    n: int,
    meta_ts: int,
    arrived: float,
    customer: str = "16505550001",
    kind: ItemKind = "message",
) -> InboxItem:
    key = conversation_key("acme", "106540352242922", customer)
    raw: dict[str, Any]
    if kind == "message":
        raw = {
            "from": customer,
            "id": f"wamid.{n}",
            "timestamp": str(meta_ts),
            "type": "text",
            "text": {"body": f"message {n}"},
        }
    else:
        raw = {
            "id": f"wamid.out{n}",
            "status": "delivered",
            "timestamp": str(meta_ts),
            "recipient_id": customer,
        }
    return InboxItem(
        tenant_id="acme",
        delivery_id=f"d{n}",
        received_at=datetime.fromtimestamp(arrived, UTC),
        kind=kind,
        field="messages",
        position=(0, 0, 0),
        phone_number_id="106540352242922",
        conversation_key=key,
        conversation_id=conversation_id(key),
        partition=0,
        item=raw,
    )


def stored(entry_id: str, it: InboxItem) -> StoredItem:
    return StoredItem(entry_id=entry_id, item=it)


def test_a_due_message_releases_the_earlier_stamped_ones_of_its_conversation_first() -> None:
    buffer = ReorderBuffer(window_s=1.0, max_held=100)
    late_stamp = item(1, int(T0) + 2, T0)
    early_stamp = item(2, int(T0) + 1, T0 + 0.3)
    buffer.add(stored("1", late_stamp), normalize(late_stamp), 0, T0)
    buffer.add(stored("2", early_stamp), normalize(early_stamp), 1, T0 + 0.3)
    assert buffer.release(T0 + 0.9) == []
    assert buffer.next_due() == T0 + 1.0
    released = buffer.release(T0 + 1.0)  # the first arrival is due: both go, in stamp order
    assert [h.stored.entry_id for h in released] == ["2", "1"]
    assert len(buffer) == 0
    assert buffer.next_due() is None


def test_conversations_are_released_independently() -> None:
    buffer = ReorderBuffer(window_s=1.0, max_held=100)
    a = item(1, int(T0), T0, customer="16505550001")
    b = item(2, int(T0), T0 + 0.5, customer="16505550002")
    buffer.add(stored("a", a), normalize(a), 0, T0)
    buffer.add(stored("b", b), normalize(b), 1, T0 + 0.5)
    assert [h.stored.entry_id for h in buffer.release(T0 + 1.0)] == ["a"]
    assert [h.stored.entry_id for h in buffer.release(T0 + 1.5)] == ["b"]


def test_a_full_buffer_releases_the_earliest_due_early_and_counts_them() -> None:
    buffer = ReorderBuffer(window_s=1.0, max_held=2)
    for n in range(3):
        it = item(n, int(T0), T0 + n * 0.1, customer=f"1650555000{n}")
        buffer.add(stored(str(n), it), normalize(it), n, T0 + n * 0.1)
    assert [h.stored.entry_id for h in buffer.release(T0)] == ["0"]
    assert buffer.forced == 1
    assert len(buffer) == 2


async def _shard(
    tmp_path: Path, wall: Wall, stats: ShardStats | None = None
) -> tuple[SqliteInbox, OutboxPublisher, ConversationShard]:
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    publisher = OutboxPublisher(tmp_path / "outbox.db")
    config = shard_config(reorder_window_ms=WINDOW_MS, block_ms=1, linger_ms=0)
    shard = ConversationShard(config, inbox, publisher, metrics=stats, wall_clock=wall)
    return inbox, publisher, shard


def _published(tmp_path: Path) -> list[dict[str, Any]]:
    return [row["event"] for row in read_outbox(tmp_path / "outbox.db", limit=10_000)]


async def _append(inbox: SqliteInbox, *items: InboxItem) -> None:
    for it in items:
        assert await inbox.append_deliveries([(f"d:{it.delivery_id}", [it])]) == [True]


async def _settle(shard: ConversationShard, rounds: int = 5) -> None:
    for _ in range(rounds):
        await shard.run_once()


async def test_two_messages_arriving_in_reverse_stamp_order_are_published_in_order(
    tmp_path: Path,
) -> None:
    wall = Wall()
    inbox, publisher, shard = await _shard(tmp_path, wall)
    try:
        await _append(inbox, item(2, int(T0) + 1, T0))  # sent second, arrives first
        await _settle(shard)
        wall.now = T0 + 0.3
        await _append(inbox, item(1, int(T0), T0 + 0.3))
        await _settle(shard)
        assert _published(tmp_path) == []  # both held: the window has not passed
        wall.now = T0 + 1.0
        await _settle(shard)
        events = _published(tmp_path)
        assert [(e["type"], e["event_id"]) for e in events] == [
            ("created", events[0]["event_id"]),
            ("text", "wamid.1"),
            ("text", "wamid.2"),
        ]
        assert [e["sequence"] for e in events] == [1, 2, 3]
        assert events[1]["context"]["new"]
        assert not events[2]["context"]["new"]
        assert not any(e["late"] for e in events)
        assert await inbox.backlog(0) == 0
    finally:
        await inbox.close()
        await publisher.close()


async def test_a_held_conversation_never_delays_another_or_its_own_statuses(
    tmp_path: Path,
) -> None:
    wall = Wall()
    inbox, publisher, shard = await _shard(tmp_path, wall)
    try:
        await _append(inbox, item(1, int(T0), T0, customer="16505550001"))
        await _append(inbox, item(2, int(T0), T0, customer="16505550002", kind="status"))
        await _append(inbox, item(3, int(T0), T0, customer="16505550001", kind="status"))
        await _settle(shard)
        ids = [e["event_id"] for e in _published(tmp_path) if e["category"] == "status"]
        assert ids == ["wamid.out2:delivered", "wamid.out3:delivered"]
        assert not any(e["event_id"] == "wamid.1" for e in _published(tmp_path))
        wall.now = T0 + 1.0
        await _settle(shard)
        assert any(e["event_id"] == "wamid.1" for e in _published(tmp_path))
    finally:
        await inbox.close()
        await publisher.close()


async def test_a_message_older_than_a_published_one_goes_at_once_marked_late(
    tmp_path: Path,
) -> None:
    wall = Wall()
    stats = ShardStats()
    inbox, publisher, shard = await _shard(tmp_path, wall, stats)
    try:
        await _append(inbox, item(2, int(T0) + 10, T0))
        await _settle(shard, rounds=1)
        assert stats.held == 1
        wall.now = T0 + 1.0
        await _settle(shard)
        wall.now = T0 + 5.0
        await _append(inbox, item(1, int(T0), T0 + 5.0))
        await _settle(shard, rounds=2)  # no time passes: it is not held
        late = [e for e in _published(tmp_path) if e["event_id"] == "wamid.1"]
        assert len(late) == 1
        assert late[0]["late"] is True
        assert late[0]["context"]["message_count"] == 2
        assert stats.conversations == {"created": 1, "late": 1}
        assert stats.held == 0
    finally:
        await inbox.close()
        await publisher.close()


async def test_held_entries_of_a_process_that_dies_are_published_by_the_next_in_entry_order(
    tmp_path: Path,
) -> None:
    """Nothing held is lost; the restart takes redelivered entries in entry order without
    the window (what keeps a republished batch identical, tests/unit/test_shard_crash_order.py),
    so the older message is published after the newer one, marked late."""
    wall = Wall()
    inbox, publisher, shard = await _shard(tmp_path, wall)
    await _append(inbox, item(2, int(T0) + 1, T0), item(1, int(T0), T0 + 0.2))
    await _settle(shard)
    assert _published(tmp_path) == []
    await inbox.close()  # the process dies holding both: nothing was committed
    await publisher.close()
    wall.now = T0 + 0.5  # restarted before they are due: not held again all the same
    inbox, publisher, shard = await _shard(tmp_path, wall)
    try:
        await _settle(shard)
        events = _published(tmp_path)
        assert [(e["event_id"], e["late"]) for e in events[1:]] == [
            ("wamid.2", False),
            ("wamid.1", True),
        ]
        assert [e["type"] for e in events].count("created") == 1
        assert await inbox.backlog(0) == 0
    finally:
        await inbox.close()
        await publisher.close()


async def test_stopping_publishes_what_the_window_holds(tmp_path: Path) -> None:
    wall = Wall()
    inbox, publisher, shard = await _shard(tmp_path, wall)
    try:
        await _append(inbox, item(2, int(T0) + 1, T0), item(1, int(T0), T0))
        await _settle(shard)
        assert _published(tmp_path) == []
        shard.stop()
        await shard.run()  # returns at once, flushing the window in order
        assert [e["event_id"] for e in _published(tmp_path)][1:] == ["wamid.1", "wamid.2"]
        assert await inbox.backlog(0) == 0
    finally:
        await inbox.close()
        await publisher.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.permutations(list(range(6))),
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.15), min_size=6, max_size=6),
)
async def test_any_arrival_order_within_the_window_publishes_in_stamp_order(
    tmp_path_factory: Any, order: list[int], gaps: list[float]
) -> None:
    """Six messages of one conversation (stamps 0..5 s) arrive in any order, all within
    the window of each other (gaps under 0.15 s): published by stamp, sequences 1..7."""
    tmp_path = tmp_path_factory.mktemp("reorder")
    wall = Wall()
    inbox, publisher, shard = await _shard(tmp_path, wall)
    try:
        for n, gap in zip(order, gaps, strict=True):
            wall.now += gap
            await _append(inbox, item(n, int(T0) - 10 + n, wall.now))
            await shard.run_once()
        wall.now += WINDOW_MS / 1000 + 0.001  # received_at keeps microseconds only
        await _settle(shard)
        events = _published(tmp_path)
        assert [e["event_id"] for e in events[1:]] == [f"wamid.{n}" for n in range(6)]
        assert [e["sequence"] for e in events] == list(range(1, 8))
        assert not any(e["late"] for e in events)
    finally:
        await inbox.close()
        await publisher.close()


async def test_a_cache_smaller_than_a_batch_s_conversations_loses_no_state(
    tmp_path: Path,
) -> None:
    """Five conversations in one batch with room for one record in the cache: every
    conversation is created once and continues from its stored record afterwards."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    publisher = OutboxPublisher(tmp_path / "outbox.db")
    config = shard_config(conversation_cache=1, block_ms=1, linger_ms=0)
    shard = ConversationShard(config, inbox, publisher)
    try:
        for round_ in range(2):
            for c in range(5):
                n = round_ * 10 + c
                await _append(inbox, item(n, int(T0) + round_, T0, customer=f"1650555100{c}"))
            await _settle(shard)
        events = _published(tmp_path)
        assert [e["type"] for e in events].count("created") == 5
        by_conversation: dict[str, list[int]] = {}
        for e in events:
            by_conversation.setdefault(e["conversation_id"], []).append(e["sequence"])
        assert all(seqs == [1, 2, 3] for seqs in by_conversation.values())
        counts = [e["context"]["message_count"] for e in events if e["type"] == "text"]
        assert sorted(counts) == [1] * 5 + [2] * 5
    finally:
        await inbox.close()
        await publisher.close()
