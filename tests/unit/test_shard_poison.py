"""Poison items: an item accepted with 200 never stops its partition (issue 9, point 1).

Each poison is a flow reply whose `response_json` (a string the models decode as JSON)
makes one per-item step raise something other than a validation error: decoding
(RecursionError), or serializing the decoded value (orjson refuses lone surrogates,
integers beyond 64 bits and nesting deeper than 255). The item between two good ones
must come out as an `unsupported` event in its place, and the batch must commit.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import actors.normalize as normalize_module
import actors.shard as shard_module
import adapters.codec as codec
from actors.event_draft import EventDraft
from actors.shard import ConversationShard
from actors.shard_actor import RayShardMetrics, ShardStatus
from actors.shard_metrics import ShardStats
from adapters.errors import TransientError
from adapters.outbox import OutboxPublisher, read_dead, read_outbox
from models.dead_letter import DeadLetter
from models.event import NormalizedEvent
from models.inbox import InboxItem
from tests.support.clock import FixedClock
from tests.support.configs import shard_config, sqlite_inbox
from tests.support.events import check_streams, inbox_item, item_events, store
from tests.support.shards import POISON, drain, flow_reply

if TYPE_CHECKING:
    from adapters.ports import Rejection


def rows(path: Path) -> list[dict[str, Any]]:
    """The items' events published, once c1's whole stream is checked: sequences 1..n,
    its `conversation.created` first (c1 is new to every test's store)."""
    events = [row["event"] for row in read_outbox(path)]
    check_streams(events, {"c1": "customer"})
    return item_events(events)


# Where each poison fails: decoding in normalize, the others when their event is encoded
# (the publisher's check before anything is sent).
FAILING_STEP = {
    "too_deep_to_decode": "normalize",
    "too_deep_to_serialize": "publish",
    "lone_surrogate": "publish",
    "integer_beyond_64_bits": "publish",
}


@pytest.mark.parametrize("name", POISON.keys())
async def test_a_poison_item_is_dead_lettered_and_its_partition_moves_on(
    tmp_path: Path, name: str
) -> None:
    """The poison is tried `max_attempts` times (3 in tests), then dead-lettered: stored
    whole in the failed store with every attempt, sent to the dead-letter exchange, and a
    placeholder with its own id takes its sequence; its neighbours are intact and the
    batch commits."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    poisoned = flow_reply(2, POISON[name])
    await store(inbox, [inbox_item(1), poisoned, inbox_item(3)])
    config = shard_config(block_ms=10, max_item_age_s=None)
    stats = ShardStats()
    shard = ConversationShard(config, inbox, outbox, stats)
    # wamid.1 with c1's `conversation.created`, then the poison in a batch with wamid.3.
    assert await drain(shard) == [1 + 1, 2]
    first, middle, last = rows(tmp_path / "outbox.db")
    assert [e["sequence"] for e in (first, middle, last)] == [2, 3, 4]
    assert (first["event_id"], last["event_id"]) == ("wamid.1", "wamid.3")
    assert (first["late"], last["late"]) == (False, False)  # wamid.1, 2 and 3: one Meta time
    letters = await inbox.dead_letters(10)
    assert len(letters) == 1
    letter = letters[0]
    assert (middle["category"], middle["event_id"]) == (
        "unsupported",
        f"dead:{letter.dead_letter_id}",
    )
    assert middle["data"]["dead_letter_id"] == letter.dead_letter_id
    assert middle["data"]["raw"] is None, "the raw item is in the failed store, not the stream"
    assert letter.item == poisoned, "the raw item exactly as stored"
    assert (letter.event_id, letter.step, letter.category, letter.type) == (
        "wamid.2",
        FAILING_STEP[name],
        "message",
        "interactive",
    )
    assert [a.step for a in letter.attempts] == [FAILING_STEP[name]] * 3
    assert all(a.error for a in letter.attempts)
    dead = list(read_dead(tmp_path / "outbox.db"))
    assert [(d["routing_key"], d["dead_letter_id"]) for d in dead] == [
        ("acme.dead.message.interactive", letter.dead_letter_id)
    ]
    assert dead[0]["dead_letter"]["item"] == poisoned.model_dump(mode="json")
    assert (stats.item_failures, stats.dead) == (3, 1)
    assert await inbox.backlog(0) == 0
    await inbox.close()
    await outbox.close()


class Outage:
    """The Publisher port on the outbox, with the broker down until `down` is cleared."""

    def __init__(self, inner: OutboxPublisher) -> None:
        self.inner = inner
        self.down = True

    async def publish(self, events: Sequence[NormalizedEvent]) -> list[Rejection]:
        if self.down:
            raise TransientError("broker unreachable (test outage)")
        return await self.inner.publish(events)

    async def publish_dead(self, letters: Sequence[DeadLetter]) -> list[str]:
        """The inner outbox's dead letters."""
        return await self.inner.publish_dead(letters)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


async def test_a_partition_that_cannot_advance_reports_how_long_it_has_been_stalled(
    tmp_path: Path,
) -> None:
    """Entries wait and nothing commits: `stalled_s()` is None until the bound has passed,
    then the seconds since the partition last advanced; a commit clears it."""
    clock = FixedClock()
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    broker = Outage(OutboxPublisher(tmp_path / "outbox.db"))
    await store(inbox, [inbox_item(1)])
    config = shard_config(block_ms=10, stall_after_s=30.0, max_item_age_s=None)
    shard = ConversationShard(config, inbox, broker, ShardStats(), clock=clock)
    with pytest.raises(TransientError):
        await shard.run_once()
    assert shard.stalled_s() is None  # pending, but for less than the bound
    clock.advance(31)
    assert shard.stalled_s() == 31
    broker.down = False
    assert await shard.run_once() == 1 + 1  # wamid.1 and c1's `conversation.created`
    clock.advance(100)
    assert shard.stalled_s() is None
    await inbox.close()
    await broker.close()


async def test_a_stall_seen_only_in_the_backlog_is_reported_too(tmp_path: Path) -> None:
    """Entries the shard cannot even read (a failing read, an entry left behind) still
    count: a backlog measured > 0 with no commit since starts the stall clock."""
    clock = FixedClock()
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    stats = ShardStats()
    config = shard_config(block_ms=10, stall_after_s=30.0)
    broker = Outage(OutboxPublisher(tmp_path / "outbox.db"))
    shard = ConversationShard(config, inbox, broker, stats, clock=clock)
    shard.backlog_seen(5)
    clock.advance(45)
    assert shard.stalled_s() == 45
    shard.backlog_seen(0)
    assert shard.stalled_s() is None
    await inbox.close()
    await broker.close()


def test_the_status_and_the_ray_exporter_carry_the_stall() -> None:
    """/readyz reads `stalled_s` from ShardStatus; Ray exports `wa_shard_stalled_seconds`."""
    status = ShardStatus(
        partition=0,
        running=True,
        batches=0,
        published=0,
        redelivered=0,
        publish_failures=0,
        backlog=3,
        last_error=None,
        stalled_s=75.0,
    )
    assert status.stalled_s == 75.0
    exporter = RayShardMetrics(partition=0)
    exporter.stall_measured(75.0)
    exporter.items_failed("normalize", 1)
    exporter.events_rejected(2)
    assert (exporter.stats.stalled_s, exporter.stats.item_failures) == (75.0, 1)
    assert exporter.stats.rejected == 2


class _Once:
    """`real` that raises `exc` the first time it is called on wamid.2 (an inbox item, a
    draft or an event of wamid.2 among its arguments); `fired` tells it did."""

    def __init__(self, real: Any, exc: BaseException) -> None:
        self.real = real
        self.exc = exc
        self.fired = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.fired and any(_wamid_2(value) for value in (*args, *kwargs.values())):
            self.fired = True
            raise self.exc
        return self.real(*args, **kwargs)

    def __get__(self, instance: Any, owner: Any) -> Any:
        """Bound like the method it replaces (EventDraft.stamp), `self` first."""
        return self if instance is None else functools.partial(self, instance)


def _wamid_2(value: Any) -> bool:
    """An inbox item, a draft or an event of wamid.2."""
    if isinstance(value, InboxItem):
        return bool(isinstance(value.item, dict) and value.item.get("id") == "wamid.2")
    return getattr(value, "event_id", None) == "wamid.2"


MEMORY_ERROR_SITES: dict[str, tuple[Any, str]] = {
    # the step: what is wrapped to raise MemoryError once, on wamid.2. normalize runs
    # when entries are taken (ConversationShard._next_pairs, before they are held or
    # batched); conversation (the item applied to its record) and stamp while the batch
    # is numbered; encode while it is published.
    "normalize": (normalize_module.HANDLERS, "message"),
    "conversation": (shard_module, "apply"),
    "stamp": (EventDraft, "stamp"),
    "encode": (codec, "dump_event"),
}


@pytest.mark.parametrize("window_ms", [0.0, 1000.0], ids=["no_window", "reorder_window"])
@pytest.mark.parametrize("site", MEMORY_ERROR_SITES.values(), ids=MEMORY_ERROR_SITES.keys())
async def test_a_memory_error_is_retried_not_taken_for_a_poison_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, site: tuple[Any, str], window_ms: float
) -> None:
    """Memory pressure while one event is normalized, applied to its conversation,
    stamped or encoded is not that item's fault: the batch (or the entries taken, before
    the reorder window holds them) is retried and the event published as the message it
    is. The items arrived long before the wall clock's now: a window holds none of them."""
    owner, name = site
    once = _Once(owner[name] if isinstance(owner, dict) else getattr(owner, name), MemoryError())
    if isinstance(owner, dict):
        monkeypatch.setitem(owner, name, once)
    else:
        monkeypatch.setattr(owner, name, once)
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    stats = ShardStats()
    await store(inbox, [inbox_item(n) for n in (1, 2, 3)])
    config = shard_config(block_ms=10, max_item_age_s=None, reorder_window_ms=window_ms)
    shard = ConversationShard(config, inbox, outbox, stats)
    for _ in range(10):
        try:
            if await shard.run_once() == 0 and await inbox.backlog(0) == 0:
                break
        except MemoryError:
            pass
    assert once.fired, f"{name} was not called on wamid.2: the site is not exercised"
    assert [(e["event_id"], e["category"]) for e in rows(tmp_path / "outbox.db")] == [
        (f"wamid.{n}", "message") for n in (1, 2, 3)
    ]
    assert (stats.item_failures, stats.rejected) == (0, 0)
    assert await inbox.backlog(0) == 0
    await inbox.close()
    await outbox.close()


async def test_a_state_event_that_cannot_be_built_does_not_stop_the_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If building `conversation.created` raises (nothing Meta sends does today: this
    guards a future bug), the item's own event is still published and numbered, the
    failure is counted, and the partition moves on."""

    def broken(*_: Any) -> NormalizedEvent:
        raise ValueError("cannot build the state event")

    monkeypatch.setattr("actors.shard.state_event", broken)
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    stats = ShardStats()
    await store(inbox, [inbox_item(1), inbox_item(2)])
    shard = ConversationShard(shard_config(block_ms=10, max_item_age_s=None), inbox, outbox, stats)
    await drain(shard)
    events = [row["event"] for row in read_outbox(tmp_path / "outbox.db")]
    assert [(e["event_id"], e["sequence"]) for e in events] == [("wamid.1", 1), ("wamid.2", 2)]
    assert stats.item_failures == 1
    assert await inbox.backlog(0) == 0
    await inbox.close()
    await outbox.close()
