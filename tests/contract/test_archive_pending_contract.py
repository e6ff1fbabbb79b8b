"""One suite, both Inbox adapters: raw bodies appended with their items for the archive,
and replayed appends (SQLite and Redis, a key prefix per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.ports import ArchiveBacklog, Inbox
from models.archive import RawDelivery, new_delivery_id
from tests.support.configs import redis_inbox, sqlite_inbox
from tests.support.events import inbox_item as item

Factory = Callable[[], Inbox]
T0 = datetime(2026, 3, 9, 12, 0, 0, 250000, tzinfo=UTC)


def raw(at: datetime = T0, body: bytes = b'{"entry": [1,  2]}\r\n') -> RawDelivery:
    """A raw delivery received at `at`."""
    return RawDelivery(
        delivery_id=new_delivery_id(at),
        received_at=at,
        tenants=("acme",),
        signed_by=("acme",),
        owners=(("106540352242922", None, "acme"),),
        signature="sha256=" + "0f" * 32,
        body=body,
    )


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def make_inbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """A factory of inbox instances over one store."""
    made: list[Inbox] = []
    if request.param == "sqlite":

        def factory() -> Inbox:
            made.append(sqlite_inbox(tmp_path / "inbox.db", 3600))
            return made[-1]
    else:
        prefix = request.getfixturevalue("redis_prefix")

        def factory() -> Inbox:
            made.append(redis_inbox(prefix, window_s=3600))
            return made[-1]

    yield factory
    for inbox in made:
        await inbox.close()


async def test_a_new_delivery_keeps_its_raw_body_with_its_items(make_inbox: Factory) -> None:
    """The body comes back byte for byte, with its facts, oldest first, from another
    instance (durable, not in memory)."""
    first, second = raw(), raw(T0 + timedelta(seconds=1), body=b"\x00\xffnot json")
    inbox = make_inbox()
    assert await inbox.append_deliveries([("d:1", [item(1)], first), ("d:2", [], second)]) == [
        True,
        True,
    ]
    pending = await make_inbox().archive_pending(10)
    assert [p.delivery for p in pending] == [first, second]
    assert await inbox.backlog(0) == 1


async def test_a_duplicate_keeps_no_second_body(make_inbox: Factory) -> None:
    """A delivery answered `duplicate` is not archived again."""
    inbox = make_inbox()
    await inbox.append_deliveries([("d:1", [item(1)], raw())])
    assert await inbox.append_deliveries([("d:1", [item(1)], raw())]) == [False]
    assert len(await inbox.archive_pending(10)) == 1


async def test_an_append_without_a_body_keeps_none(make_inbox: Factory) -> None:
    """Deliveries that carry no raw body (older callers) append their items only."""
    inbox = make_inbox()
    await inbox.append_deliveries([("d:1", [item(1)])])
    assert await inbox.archive_pending(10) == []
    assert (await inbox.archive_backlog()).deliveries == 0


async def test_done_bodies_are_deleted_and_the_backlog_says_what_waits(
    make_inbox: Factory,
) -> None:
    """archive_done removes exactly the ids given; the backlog counts the rest and names
    the oldest one's receipt time."""
    inbox = make_inbox()
    bodies = [raw(T0 + timedelta(seconds=s)) for s in range(3)]
    for n, body in enumerate(bodies):
        await inbox.append_deliveries([(f"d:{n}", [item(n)], body)])
    assert await inbox.archive_backlog() == ArchiveBacklog(3, T0)
    pending = await inbox.archive_pending(2)
    assert [p.delivery for p in pending] == bodies[:2]
    await inbox.archive_done([pending[0].entry_id])
    backlog = await inbox.archive_backlog()
    assert (backlog.deliveries, backlog.oldest_received_at) == (2, bodies[1].received_at)
    await inbox.archive_done([pending[0].entry_id, pending[1].entry_id])
    assert [p.delivery for p in await inbox.archive_pending(10)] == bodies[2:]


async def test_replayed_items_are_appended_marked_replayed_and_without_a_mark(
    make_inbox: Factory,
) -> None:
    """append_replayed stores each item in its partition with replayed=True, and appends
    again however often it is called (no delivery mark checked or set)."""
    inbox = make_inbox()
    items = [item(1, partition=0), item(2, partition=1)]
    await inbox.append_replayed(items)
    await inbox.append_replayed(items[:1])
    got = [s.item for s in await inbox.read(0, 10, 50)]
    assert got == [items[0].model_copy(update={"replayed": True})] * 2
    assert [s.item.replayed for s in await inbox.read(1, 10, 50)] == [True]
    assert await inbox.archive_pending(10) == []
