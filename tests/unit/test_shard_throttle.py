"""Per-tenant publish budgets inside a shard (issue 13 points 4-5): a tenant without tokens
has its conversations held while other tenants' entries are published; each
conversation's order stays exact; tokens come in leases, never one call per event; the
holds are bounded; state events are charged at the commit.

The lease port here is an in-process implementation (tokens handed out by the test), not
the Ray actor: the actor has its own tests (tests/integration/test_tenant_limiter.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actors.shard import ConversationShard
from actors.shard_throttle import NoThrottleMetrics, PublishBudget, ShardThrottle
from actors.tenant_budget import Lease
from adapters.outbox import OutboxPublisher
from models.inbox import InboxItem
from tests.support.configs import shard_config, sqlite_inbox
from tests.support.events import inbox_item, item_events, store
from tests.unit.test_shard_media import published


class HandedLeases:
    """LeasePort: grants what the test put in each tenant's pot (unlimited when None)."""

    def __init__(self, pots: dict[str, int | None]) -> None:
        self.pots = pots
        self.calls: list[tuple[str, int]] = []
        self.wake = asyncio.Event()

    async def lease(self, tenant_id: str, want: int) -> Lease:
        self.calls.append((tenant_id, want))
        pot = self.pots.get(tenant_id)
        if pot is None:
            return Lease(granted=want, rate_per_s=1000.0)
        granted = min(pot, want)
        self.pots[tenant_id] = pot - granted
        return Lease(granted=granted, rate_per_s=10.0, retry_after_s=0.01)


def item(n: int, tenant: str, conversation: str) -> InboxItem:
    """Text message n of `tenant` in `conversation` (ids unique per tenant)."""
    base = inbox_item(n, conversation=f"{tenant}-{conversation}")
    raw = dict(base.item)
    raw["id"] = f"wamid.{tenant}.{n}"
    return base.model_copy(update={"tenant_id": tenant, "item": raw})


async def run_until(shard: ConversationShard, done: Callable[[], bool], rounds: int = 400) -> None:
    """Run batches until `done()` (bounded: a broken schedule fails the assertion after)."""
    for _ in range(rounds):
        if done():
            return
        await shard.run_once()
        await asyncio.sleep(0.002)


def by_conversation(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    order: dict[str, list[str]] = {}
    for event in item_events(events):
        order.setdefault(event["conversation_id"], []).append(event["event_id"])
    return order


def shard_with(
    tmp_path: Path, leases: HandedLeases, max_held: int = 1000, batch_size: int = 256
) -> tuple[ConversationShard, Path, NoThrottleMetrics]:
    metrics = NoThrottleMetrics()
    outbox = tmp_path / "outbox.db"
    shard = ConversationShard(
        shard_config(block_ms=10, max_item_age_s=None, linger_ms=0, batch_size=batch_size),
        sqlite_inbox(tmp_path / "inbox.db"),
        OutboxPublisher(outbox),
        budget=PublishBudget(leases, lease_s=0.5, max_held=max_held, metrics=metrics),
    )
    return shard, outbox, metrics


async def test_a_tenant_out_of_tokens_does_not_hold_back_another_tenants_events(
    tmp_path: Path,
) -> None:
    """Tenant a has no tokens: its entries are held (uncommitted), b's are published
    although they came after a's; once a gets tokens its entries follow in order."""
    leases = HandedLeases({"a": 0, "b": None})
    shard, outbox, metrics = shard_with(tmp_path, leases)
    inbox = shard._inbox
    await store(inbox, [item(n, "a", f"c{n % 3}") for n in range(1, 31)])
    await store(inbox, [item(n, "b", "c1") for n in range(1, 11)])
    await run_until(shard, lambda: len(item_events(published(outbox))) >= 10)
    events = item_events(published(outbox))
    assert {e["tenant_id"] for e in events} == {"b"}
    assert [e["event_id"] for e in events] == [f"wamid.b.{n}" for n in range(1, 11)]
    assert await inbox.backlog(0) == 30, "a's entries stay uncommitted while held"

    leases.pots["a"] = 1000
    await run_until(shard, lambda: len(item_events(published(outbox))) >= 40)
    order = by_conversation(published(outbox))
    for c in range(3):
        expected = [f"wamid.a.{n}" for n in range(1, 31) if n % 3 == c]
        assert order[f"a-c{c}"] == expected
    assert await inbox.backlog(0) == 0
    assert any(tenant == "a" for tenant, _ in metrics.waits), "a's waits are reported"


async def test_tokens_trickling_in_keep_each_conversations_order_exact(tmp_path: Path) -> None:
    """A few tokens at a time: conversations released and held again many times, none of
    their entries overtakes another, nothing is lost, and leases are far fewer than
    events (batches of tokens, never one call per event)."""
    leases = HandedLeases({"a": 0})
    shard, outbox, _ = shard_with(tmp_path, leases)
    inbox = shard._inbox
    await store(inbox, [item(n, "a", f"c{n % 4}") for n in range(1, 81)])

    async def trickle() -> None:
        for _ in range(40):
            leases.pots["a"] = (leases.pots["a"] or 0) + 3
            await asyncio.sleep(0.01)

    feeder = asyncio.ensure_future(trickle())
    await run_until(shard, lambda: len(item_events(published(outbox))) >= 80, rounds=2000)
    await feeder
    events = published(outbox)
    order = by_conversation(events)
    for c in range(4):
        assert order[f"a-c{c}"] == [f"wamid.a.{n}" for n in range(1, 81) if n % 4 == c]
    published_events = len(events)  # state events (conversation.created) charged too
    granted = sum(3 for _ in range(40))
    assert published_events <= granted
    assert await inbox.backlog(0) == 0


async def test_state_events_are_charged_at_the_commit(tmp_path: Path) -> None:
    """One token per entry when batched, the conversation.created it also publishes is
    charged at the commit: the balance goes below zero."""
    leases = HandedLeases({"a": 1})
    shard, outbox, _ = shard_with(tmp_path, leases)
    await store(shard._inbox, [item(1, "a", "c1")])
    await run_until(shard, lambda: len(published(outbox)) >= 2)
    kinds = [e["category"] for e in published(outbox)]
    assert kinds == ["conversation", "message"]
    assert shard._throttle is not None
    assert shard._throttle.balance("a") == -1


async def test_past_the_cap_of_held_entries_the_shard_reads_no_more(tmp_path: Path) -> None:
    """max_held reached: the shard stops reading (the documented limit), so b's entries
    behind the flood wait too; nothing is lost once a gets tokens."""
    leases = HandedLeases({"a": 0, "b": None})
    shard, outbox, _ = shard_with(tmp_path, leases, max_held=5)
    inbox = shard._inbox
    await store(inbox, [item(n, "a", "c1") for n in range(1, 21)])
    await store(inbox, [item(n, "b", "c1") for n in range(1, 4)])
    for _ in range(30):
        await shard.run_once()
    assert shard._throttle is not None
    held = len(shard._throttle)
    assert 5 <= held < 20, "reading stopped once the cap was reached (one read past it)"
    assert item_events(published(outbox)) == []
    leases.pots["a"] = None
    await run_until(shard, lambda: len(item_events(published(outbox))) >= 23)
    assert len(item_events(published(outbox))) == 23
    assert await inbox.backlog(0) == 0


async def test_known_tenants_limiters_are_started_once_before_their_first_entry() -> None:
    """`warm`: one empty lease per tenant (its limiter's process starts before the first
    entry needs it), not again for a tenant already warmed."""
    leases = HandedLeases({"a": 0, "b": 0})
    throttle: ShardThrottle[str] = ShardThrottle(
        leases, str, lambda e: ("a", e), lease_s=0.5, max_held=10
    )
    throttle.warm(["a", "b"])
    throttle.warm(["a"])
    for _ in range(10):
        await asyncio.sleep(0)
    assert sorted(leases.calls) == [("a", 0), ("b", 0)]
    assert len(throttle) == 0


async def test_entries_let_in_but_left_over_by_a_small_batch_go_before_the_held_ones(
    tmp_path: Path,
) -> None:
    """Batches of 4: a released conversation gets 6 tokens, so 6 entries are let in and the
    rest held again; the 2 the batch could not take must go next, not behind the held."""
    leases = HandedLeases({"a": 0})
    shard, outbox, _ = shard_with(tmp_path, leases, batch_size=4)
    await store(shard._inbox, [item(n, "a", "c1") for n in range(1, 21)])
    for _ in range(20):
        await shard.run_once()
    leases.pots["a"] = 6
    await run_until(shard, lambda: len(item_events(published(outbox))) >= 6)
    leases.pots["a"] = None
    await run_until(shard, lambda: len(item_events(published(outbox))) >= 20)
    assert [e["event_id"] for e in item_events(published(outbox))] == [
        f"wamid.a.{n}" for n in range(1, 21)
    ]


async def test_an_entry_released_by_the_throttle_goes_before_its_media_held_successors(
    tmp_path: Path,
) -> None:
    """Text 1 waits for a token while image 2 (and text 3 behind it) wait for the file:
    once the token comes, 1 goes first, not behind the media hold (the order bug the
    media e2e test found: successors published before their held predecessor)."""
    from actors.media_fetch import MediaFetcher, MediaPolicy
    from tests.unit.test_shard_media import GatedRunner

    runner = GatedRunner()
    leases = HandedLeases({"acme": 0})
    outbox = tmp_path / "outbox.db"
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    shard = ConversationShard(
        shard_config(block_ms=10, max_item_age_s=None, linger_ms=0, reorder_window_ms=0),
        inbox,
        OutboxPublisher(outbox),
        media=MediaFetcher(
            runner, MediaPolicy(wait_s=5.0, retry_base_s=0.01, retry_max_delay_s=0.02)
        ),
        budget=PublishBudget(leases, lease_s=0.5, max_held=1000, metrics=NoThrottleMetrics()),
    )
    image = item(2, "acme", "c1")
    image = image.model_copy(
        update={
            "item": {
                **image.item,
                "type": "image",
                "image": {"id": "m2", "mime_type": "image/jpeg", "sha256": "c2hhMjU2"},
            }
        }
    )
    await store(inbox, [item(1, "acme", "c1"), image, item(3, "acme", "c1")])
    await run_until(shard, lambda: len(runner.calls) == 1, rounds=50)
    assert runner.calls == ["m2"], "the image's fetch started"
    for _ in range(20):  # 1 held for a token, 2 and 3 for the file
        await shard.run_once()
        await asyncio.sleep(0.002)
    leases.pots["acme"] = None  # tokens for everyone now; the file still not ready
    await run_until(shard, lambda: len(item_events(published(outbox))) >= 1)
    assert [e["event_id"] for e in item_events(published(outbox))] == ["wamid.acme.1"]
    runner.gate("m2").set()
    await run_until(shard, lambda: len(item_events(published(outbox))) >= 3)
    order = [e["event_id"] for e in item_events(published(outbox))]
    assert order == ["wamid.acme.1", "wamid.acme.2", "wamid.acme.3"]


@pytest.mark.parametrize("together", [False, True])
async def test_entries_read_with_a_media_hold_and_throttled_go_before_the_held_media(
    tmp_path: Path, together: bool
) -> None:
    """The media e2e test's order bug, reproduced: texts 1 and 2 and image 3 with text 4
    behind it read in one take (the read size grown by earlier batches). 1 and 2 pass the
    media check and are throttled; 3 and 4 wait for the file. When the tokens come, 1 and
    2 must go first: they are earlier than the media hold, not behind it; and when the
    tokens and the file come at once (both holds released in one pass), still first."""
    from actors.media_fetch import MediaFetcher, MediaPolicy
    from tests.unit.test_shard_media import GatedRunner

    runner = GatedRunner()
    leases = HandedLeases({"beta": None, "acme": 0})
    outbox = tmp_path / "outbox.db"
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    shard = ConversationShard(
        shard_config(block_ms=10, max_item_age_s=None, linger_ms=0, reorder_window_ms=0),
        inbox,
        OutboxPublisher(outbox),
        media=MediaFetcher(
            runner, MediaPolicy(wait_s=30.0, retry_base_s=0.01, retry_max_delay_s=0.02)
        ),
        budget=PublishBudget(leases, lease_s=0.5, max_held=1000, metrics=NoThrottleMetrics()),
    )
    for n in range(1, 33):  # beta's batches grow the read size (slow start) past 4
        await store(inbox, [item(n, "beta", f"w{n}")])
    await run_until(shard, lambda: len(item_events(published(outbox))) >= 32)
    image = item(3, "acme", "c1")
    image = image.model_copy(
        update={
            "item": {
                **image.item,
                "type": "image",
                "image": {"id": "m3", "mime_type": "image/jpeg", "sha256": "c2hhMjU2"},
            }
        }
    )
    await store(inbox, [item(1, "acme", "c1"), item(2, "acme", "c1"), image, item(4, "acme", "c1")])
    await run_until(shard, lambda: runner.calls == ["m3"], rounds=50)
    for _ in range(20):  # 1 and 2 held for tokens, 3 and 4 for the file
        await shard.run_once()
        await asyncio.sleep(0.002)
    leases.pots["acme"] = None  # tokens now; the file still not ready

    def acme() -> list[str]:
        return [e["event_id"] for e in item_events(published(outbox)) if "acme" in e["event_id"]]

    if together:
        runner.gate("m3").set()
        await asyncio.sleep(0.3)  # the lease and the fetch end while the shard waits
    else:
        await run_until(shard, lambda: len(acme()) >= 2)
        assert acme() == ["wamid.acme.1", "wamid.acme.2"], "1 and 2 go before the media hold"
        runner.gate("m3").set()
    await run_until(shard, lambda: len(acme()) >= 4)
    assert acme() == [f"wamid.acme.{n}" for n in (1, 2, 3, 4)]
