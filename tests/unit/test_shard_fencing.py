"""Shard fencing end to end on the embedded store: the replacement of a shard whose owner
died claims the partition while the old shard is still running (Ray frees the actor's
name before the old process is gone). The old shard's late commit must not store its
older state over the new one's, and it stops; the new one publishes everything, each
event with one sequence (tests/contract/test_fencing_contract.py: both stores)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from actors.shard import ConversationShard
from adapters.outbox import OutboxPublisher, read_outbox
from adapters.ports import StateWrite
from adapters.sqlite_inbox import SqliteInbox
from tests.support.configs import shard_config, sqlite_inbox
from tests.support.events import inbox_item as item
from tests.support.events import store


class PausedAtCommit:
    """The Inbox port over a real one whose first commit waits until `go` is set."""

    def __init__(self, inner: SqliteInbox) -> None:
        self.inner = inner
        self.arrived = asyncio.Event()
        self.go = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(
        self,
        partition: int,
        entry_ids: Sequence[str],
        state: StateWrite,
        seen: Collection[str] = (),
    ) -> None:
        self.arrived.set()
        await self.go.wait()
        await self.inner.commit(partition, entry_ids, state, seen)


def item_events(outbox: Path) -> list[tuple[str, int]]:
    """(event_id, sequence) of the items' events, in publish order."""
    return [
        (r["event"]["event_id"], r["event"]["sequence"])
        for r in read_outbox(outbox, limit=10_000)
        if r["event"]["category"] != "conversation"
    ]


async def test_a_late_commit_of_a_replaced_shard_is_refused_and_the_old_shard_stops(
    tmp_path: Path,
) -> None:
    """The old shard published items 1-3 and waits at its commit; the new one claims,
    publishes 1-5 (1-3 again, same sequences) and commits. The old commit is then
    refused: the stored last sequence stays the new one's (without the fence it went
    back to the old batch's, and the next item would reuse a sequence), the old loop ends
    fenced, and the new shard goes on numbering from there."""
    db, outbox = tmp_path / "inbox.db", tmp_path / "outbox.db"
    config = shard_config(block_ms=20, linger_ms=0)
    paused = PausedAtCommit(sqlite_inbox(db))
    old = ConversationShard(config, paused, OutboxPublisher(outbox))
    await store(paused.inner, [item(n) for n in range(1, 4)])
    old_loop = asyncio.create_task(old.run())
    await asyncio.wait_for(paused.arrived.wait(), timeout=30)
    await store(paused.inner, [item(n) for n in range(4, 6)])

    new_inbox = sqlite_inbox(db)
    new = ConversationShard(config, new_inbox, OutboxPublisher(outbox))
    published = 0
    while published < 5:
        published += await new.run_once()
    (record,) = (await new_inbox.conversations(["c1"])).values()
    stored = record.last_sequence

    paused.go.set()
    await asyncio.wait_for(old_loop, timeout=30)
    assert old.fenced
    (after,) = (await new_inbox.conversations(["c1"])).values()
    assert after.last_sequence == stored

    await store(new_inbox, [item(6)])
    while await new.run_once() == 0:
        pass
    events = item_events(outbox)
    sequences: dict[str, set[int]] = {}
    for event_id, sequence in events:
        sequences.setdefault(event_id, set()).add(sequence)
    assert set(sequences) == {f"wamid.{n}" for n in range(1, 7)}
    assert all(len(s) == 1 for s in sequences.values()), sequences
    in_order = [min(sequences[f"wamid.{n}"]) for n in range(1, 7)]
    assert in_order == sorted(in_order)
    assert len(set(in_order)) == 6
    assert not new.fenced
