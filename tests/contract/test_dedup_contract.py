"""The Inbox port's dedup marks on both adapters: delivery marks set with the append, item
marks set with the commit, both expiring after the window."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from adapters.ports import Inbox, StateWrite
from tests.support.configs import redis_inbox, sqlite_inbox
from tests.support.events import inbox_item as item
from tests.support.events import store
from tests.support.unreachable import UNWRITABLE_DB_KINDS, fails_transiently, unwritable_db_path

Factory = Callable[[int], Inbox]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def make_inbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """Inbox instances over one store, built with a given window in seconds."""
    made: list[Inbox] = []

    def factory(window_s: int = 3600) -> Inbox:
        if request.param == "sqlite":
            made.append(sqlite_inbox(tmp_path / "inbox.db", window_s))
        else:
            made.append(redis_inbox(request.getfixturevalue("redis_prefix"), window_s=window_s))
        return made[-1]

    yield factory
    for inbox in made:
        await inbox.close()


async def test_a_delivery_is_stored_once_per_key(make_inbox: Factory) -> None:
    """The second append of a key stores nothing and says so; other keys are unaffected."""
    inbox = make_inbox(3600)
    assert await inbox.append_deliveries([("d:1", [item(1), item(2)])]) == [True]
    assert await inbox.append_deliveries([("d:1", [item(1)]), ("d:2", [item(3)])]) == [
        False,
        True,
    ]
    assert await inbox.backlog(0) == 3


async def test_the_same_key_twice_in_one_batch_is_stored_once(make_inbox: Factory) -> None:
    """Two replicas' copies can meet in one batch: the first wins."""
    inbox = make_inbox(3600)
    assert await inbox.append_deliveries([("d:x", [item(1)]), ("d:x", [item(1)])]) == [
        True,
        False,
    ]
    assert await inbox.backlog(0) == 1


async def test_marks_are_shared_by_every_instance_on_the_store(make_inbox: Factory) -> None:
    """A mark written by one replica is seen by another (and by a restarted one)."""
    await make_inbox(3600).append_deliveries([("d:1", [item(1)])])
    assert await make_inbox(3600).append_deliveries([("d:1", [item(1)])]) == [False]


async def test_item_marks_are_written_by_commit(make_inbox: Factory) -> None:
    """seen() reports only keys committed with seen=..., not ones merely read."""
    inbox = make_inbox(3600)
    await store(inbox, [item(1)])
    batch = await inbox.read(0, 10, 50)
    assert await inbox.seen(["i:1", "i:2"]) == set()
    await inbox.commit(0, [s.entry_id for s in batch], StateWrite(), seen=["i:1"])
    assert await inbox.seen(["i:1", "i:2"]) == {"i:1"}
    assert await inbox.seen([]) == set()


async def test_marks_expire_after_the_window(make_inbox: Factory) -> None:
    """With a 1 s window a key is new again after it, for deliveries and items alike."""
    inbox = make_inbox(1)
    await inbox.append_deliveries([("d:1", [item(1)])])
    await inbox.commit(0, [], StateWrite(), seen=["i:1"])
    await asyncio.sleep(2.1)
    assert await inbox.seen(["i:1"]) == set()
    assert await inbox.append_deliveries([("d:1", [item(1)])]) == [True]


@pytest.fixture(params=[*(f"sqlite-{kind}" for kind in UNWRITABLE_DB_KINDS), "redis-refused"])
async def unreachable_inbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Inbox]:
    """An inbox whose marks cannot be reached: SQLite on a path it cannot open, Redis on a
    port that refuses connections."""
    kind: str = request.param
    if kind.startswith("sqlite-"):
        path = unwritable_db_path(kind.removeprefix("sqlite-"), tmp_path)
        inbox: Inbox = sqlite_inbox(path, 3600)
    else:
        port = request.getfixturevalue("closed_port")
        inbox = redis_inbox("watest:unreachable:", f"redis://127.0.0.1:{port}/0", 3600)
    yield inbox
    await inbox.close()


# Every call that checks or sets a mark.
MARK_CALLS: dict[str, Callable[[Inbox], Awaitable[object]]] = {
    "append_deliveries": lambda inbox: inbox.append_deliveries([("d:1", [item(1)])]),
    "seen": lambda inbox: inbox.seen(["i:1"]),
    "commit": lambda inbox: inbox.commit(0, [], StateWrite(), seen=["i:1"]),
}


@pytest.mark.parametrize("call", MARK_CALLS.values(), ids=MARK_CALLS.keys())
async def test_unreachable_marks_are_a_transient_error_never_a_verdict(
    unreachable_inbox: Inbox, call: Callable[[Inbox], Awaitable[object]]
) -> None:
    """Marks out of reach: TransientError, fast, so a delivery is neither called a duplicate
    nor stored unchecked (Meta retries it), and the shard keeps its batch."""
    await fails_transiently(call(unreachable_inbox))
