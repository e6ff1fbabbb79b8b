"""Poison items: an item accepted with 200 never stops its partition (issue 9, point 1).

Each poison is a flow reply whose `response_json` (a string the models decode as JSON)
makes one per-item step raise something other than a validation error: decoding
(RecursionError), or serializing the decoded value (orjson refuses lone surrogates,
integers beyond 64 bits and nesting deeper than 255). The item between two good ones
must come out as an `unsupported` event in its place, and the batch must commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import actors.normalize as normalize_module
import adapters.codec as codec
from actors.event_draft import EventDraft
from actors.shard import ConversationShard
from actors.shard_actor import RayShardMetrics, ShardStatus
from actors.shard_metrics import ShardStats
from adapters.errors import TransientError
from adapters.outbox import OutboxPublisher, read_outbox
from models.event import NormalizedEvent
from models.inbox import InboxItem
from tests.support.clock import FixedClock
from tests.support.configs import shard_config, sqlite_inbox
from tests.support.events import inbox_item, store
from tests.support.shards import POISON, drain, flow_reply

if TYPE_CHECKING:
    from adapters.ports import Rejection


def rows(path: Path) -> list[dict[str, Any]]:
    return [row["event"] for row in read_outbox(path)]


@pytest.mark.parametrize("poison", POISON.values(), ids=POISON.keys())
async def test_a_poison_item_is_published_as_unsupported_in_its_place(
    tmp_path: Path, poison: str
) -> None:
    """The poison's batch commits at once: its event is `unsupported`, keeps its event id
    and sequence, carries the raw item and the error; its neighbours are intact."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    poisoned = flow_reply(2, poison)
    await store(inbox, [inbox_item(1), poisoned, inbox_item(3)])
    config = shard_config(block_ms=10, max_item_age_s=None)
    shard = ConversationShard(config, inbox, outbox, ShardStats())
    assert await drain(shard) == [1, 2]  # the poison in a batch with wamid.3
    first, middle, last = rows(tmp_path / "outbox.db")
    assert [e["sequence"] for e in (first, middle, last)] == [1, 2, 3]
    assert (first["category"], last["category"]) == ("message", "message")
    assert (middle["category"], middle["event_id"]) == ("unsupported", "wamid.2")
    assert middle["data"]["raw"] == poisoned.item
    assert middle["data"]["issues"], "the error is carried in the event"
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
    config = shard_config(block_ms=10, stall_after_s=30.0)
    shard = ConversationShard(config, inbox, broker, ShardStats(), clock=clock)
    with pytest.raises(TransientError):
        await shard.run_once()
    assert shard.stalled_s() is None  # pending, but for less than the bound
    clock.advance(31)
    assert shard.stalled_s() == 31
    broker.down = False
    assert await shard.run_once() == 1
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


def _once(real: Any, exc: BaseException, when: Any) -> Any:
    """`real` that raises `exc` the first time `when(*args)` holds."""
    fired: list[int] = []

    def flaky(*args: Any) -> Any:
        if not fired and when(*args):
            fired.append(1)
            raise exc
        return real(*args)

    return flaky


def _wamid_2(value: Any, *_args: Any) -> bool:
    """An inbox item, a draft or an event of wamid.2."""
    if isinstance(value, InboxItem):
        return bool(value.item.get("id") == "wamid.2")
    return getattr(value, "event_id", None) == "wamid.2"


MEMORY_ERROR_SITES: dict[str, tuple[Any, str]] = {
    # the step: what is wrapped to raise MemoryError once, on wamid.2
    "normalize": (normalize_module.HANDLERS, "message"),
    "stamp": (EventDraft, "stamp"),
    "encode": (codec, "dump_event"),
}


@pytest.mark.parametrize("site", MEMORY_ERROR_SITES.values(), ids=MEMORY_ERROR_SITES.keys())
async def test_a_memory_error_is_retried_not_taken_for_a_poison_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, site: tuple[Any, str]
) -> None:
    """Memory pressure while one event is normalized, stamped or encoded is not that
    item's fault: the batch is retried and the event published as the message it is."""
    owner, name = site
    if isinstance(owner, dict):
        monkeypatch.setitem(owner, name, _once(owner[name], MemoryError(), _wamid_2))
    else:
        monkeypatch.setattr(owner, name, _once(getattr(owner, name), MemoryError(), _wamid_2))
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    stats = ShardStats()
    await store(inbox, [inbox_item(n) for n in (1, 2, 3)])
    shard = ConversationShard(shard_config(block_ms=10, max_item_age_s=None), inbox, outbox, stats)
    for _ in range(10):
        try:
            if await shard.run_once() == 0 and await inbox.backlog(0) == 0:
                break
        except MemoryError:
            pass
    assert [(e["event_id"], e["category"]) for e in rows(tmp_path / "outbox.db")] == [
        (f"wamid.{n}", "message") for n in (1, 2, 3)
    ]
    assert (stats.item_failures, stats.rejected) == (0, 0)
    await inbox.close()
    await outbox.close()
