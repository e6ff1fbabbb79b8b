"""A shard killed between publishing a batch and committing it, with the reorder window on:
the restarted shard republishes exactly what the first may have published (same event ids,
same sequences, one `conversation.created` per conversation) and loses nothing, on the
embedded store (tests/contract/test_batch_order_contract.py checks the store on Redis too).

The kill is an inbox whose commit fails for ever (the process dies there: nothing it does
afterwards reaches the store), then a new shard on the same files.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.shard import ConversationShard
from adapters.errors import TransientError
from adapters.outbox import OutboxPublisher, read_outbox
from adapters.ports import StateWrite
from adapters.sqlite_inbox import SqliteInbox
from models.inbox import InboxItem, ItemKind
from tests.support.configs import shard_config, sqlite_inbox
from tests.unit.test_reorder import T0, WINDOW_MS, Wall, item


class DiesAtCommit:
    """The Inbox port over a real one, whose process dies at its `commit_at`-th commit:
    that commit and everything after it never reach the store."""

    def __init__(self, inner: SqliteInbox, commit_at: int) -> None:
        self.inner = inner
        self.commits_left = commit_at

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(
        self,
        partition: int,
        entry_ids: Sequence[str],
        state: StateWrite,
        seen: Collection[str] = (),
    ) -> None:
        self.commits_left -= 1
        if self.commits_left <= 0:
            raise TransientError("the process was killed before its commit")
        await self.inner.commit(partition, entry_ids, state, seen)


def _published(tmp_path: Path) -> list[dict[str, Any]]:
    return [row["event"] for row in read_outbox(tmp_path / "outbox.db", limit=10_000)]


def _shard(tmp_path: Path, inbox: Any, wall: Wall) -> tuple[OutboxPublisher, ConversationShard]:
    publisher = OutboxPublisher(tmp_path / "outbox.db")
    config = shard_config(reorder_window_ms=WINDOW_MS, block_ms=1, linger_ms=0)
    return publisher, ConversationShard(config, inbox, publisher, wall_clock=wall)


def _check(events: list[dict[str, Any]], items: list[InboxItem]) -> None:
    """Every item published; an event_id always with one sequence and a conversation's
    sequence always with one event; one created per conversation; in publish order each
    conversation's sequences only repeat (a republished batch) or increase."""
    item_ids = {e["event_id"] for e in events if e["category"] != "conversation"}
    expected = {i.item["id"] for i in items if i.kind == "message"}
    expected |= {f"{i.item['id']}:delivered" for i in items if i.kind == "status"}
    assert expected <= item_ids
    by_id: dict[str, set[int]] = {}
    by_seq: dict[tuple[str, int], set[str]] = {}
    for e in events:
        by_id.setdefault(e["event_id"], set()).add(e["sequence"])
        by_seq.setdefault((e["conversation_id"], e["sequence"]), set()).add(e["event_id"])
    assert all(len(s) == 1 for s in by_id.values()), by_id
    assert all(len(s) == 1 for s in by_seq.values()), by_seq
    created: dict[str, set[str]] = {}
    for e in events:
        if e["type"] == "created":
            created.setdefault(e["conversation_id"], set()).add(e["event_id"])
    assert all(len(ids) == 1 for ids in created.values()), created
    distinct = {(e["conversation_id"], e["sequence"]) for e in events}
    for cid in {c for c, _ in distinct}:
        seqs = sorted(s for c, s in distinct if c == cid)
        assert seqs == list(range(1, len(seqs) + 1))


async def _run(tmp_path: Path, items: list[tuple[InboxItem, float]], commit_at: int) -> None:
    wall = Wall()
    store = sqlite_inbox(tmp_path / "inbox.db")
    publisher, shard = _shard(tmp_path, DiesAtCommit(store, commit_at), wall)
    killed = False
    try:
        for it, arrived in items:  # the ingress keeps accepting whatever the shard does
            wall.now = arrived
            assert await store.append_deliveries([(f"d:{it.delivery_id}", [it])]) == [True]
            if not killed:
                try:
                    await shard.run_once()
                except TransientError:
                    killed = True  # this process does nothing more
        for _ in range(5):
            if killed:
                break
            wall.now += 0.5
            try:
                await shard.run_once()
            except TransientError:
                killed = True
    finally:
        await store.close()
        await publisher.close()
    wall.now += 0.2  # restarted at once: the held entries may not be due yet
    store = sqlite_inbox(tmp_path / "inbox.db")
    publisher, shard = _shard(tmp_path, store, wall)
    try:
        for _ in range(12):
            await shard.run_once()
            wall.now += 0.5
        assert await store.backlog(0) == 0
    finally:
        await store.close()
        await publisher.close()
    _check(_published(tmp_path), [it for it, _ in items])


async def test_a_status_passing_a_held_first_message_is_republished_as_it_was(
    tmp_path: Path,
) -> None:
    """The reviewer's case: a new customer's message is held, a status of the same
    conversation passes it and creates the conversation; killed before that commit."""
    items = [(item(1, int(T0), T0), T0), (item(2, int(T0), T0 + 0.1, kind="status"), T0 + 0.1)]
    await _run(tmp_path, items, commit_at=1)


async def test_messages_released_in_stamp_order_are_republished_in_that_order(
    tmp_path: Path,
) -> None:
    items = [(item(2, int(T0) + 1, T0), T0), (item(1, int(T0), T0 + 0.3), T0 + 0.3)]
    await _run(tmp_path, items, commit_at=1)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plan=st.lists(
        st.tuples(
            st.sampled_from(["16505550001", "16505550002"]),
            st.sampled_from(["message", "status"]).map(lambda k: cast(ItemKind, k)),
            st.integers(min_value=0, max_value=5),  # Meta time offset, seconds
            st.floats(min_value=0.0, max_value=0.6),  # arrival gap
        ),
        min_size=1,
        max_size=7,
    ),
    commit_at=st.integers(min_value=1, max_value=4),
)
async def test_any_crash_between_publish_and_commit_republishes_the_same_events(
    tmp_path_factory: Any, plan: list[tuple[str, ItemKind, int, float]], commit_at: int
) -> None:
    tmp_path = tmp_path_factory.mktemp("crash")
    arrived = T0
    items: list[tuple[InboxItem, float]] = []
    for n, (customer, kind, offset, gap) in enumerate(plan):
        arrived += gap
        items.append((item(n, int(T0) + offset, arrived, customer=customer, kind=kind), arrived))
    await _run(tmp_path, items, commit_at)
