"""GroupWriter, the group commit behind the inbox appends and the Redis rate limiter: who is
written together, when, and what each caller gets back."""

from __future__ import annotations

import asyncio

import pytest

from adapters.errors import TransientError
from adapters.grouping import GroupWriter


class Store:
    """Records each group it is asked to write; answers every request doubled."""

    def __init__(self, fail: bool = False) -> None:
        self.groups: list[list[int]] = []
        self.fail = fail

    async def write(self, group: list[int]) -> list[int]:
        self.groups.append(group)
        if self.fail:
            raise TransientError("store down")
        return [2 * n for n in group]


async def test_concurrent_requests_within_the_linger_are_one_write() -> None:
    """Five callers at once: one write of all five, each caller gets its own answer."""
    store = Store()
    writer: GroupWriter[int, int] = GroupWriter(store.write, linger_s=0.01)
    answers = await asyncio.gather(*(writer.submit(n) for n in range(5)))
    assert answers == [0, 2, 4, 6, 8]
    assert store.groups == [[0, 1, 2, 3, 4]]


async def test_a_full_group_is_written_without_waiting_for_the_linger() -> None:
    """max_size reached (sizes summed): written at once; the rest waits for the next group."""
    store = Store()
    writer: GroupWriter[int, int] = GroupWriter(store.write, linger_s=60.0, max_size=4)
    first, second = writer.submit(1, size=2), writer.submit(2, size=2)
    assert list(await asyncio.wait_for(asyncio.gather(first, second), timeout=1)) == [2, 4]
    later = writer.submit(3)
    await asyncio.sleep(0.01)
    assert not later.done()  # under max_size: waits for the linger (or a drain)
    await writer.drain()
    assert later.result() == 6
    assert store.groups == [[1, 2], [3]]


async def test_without_linger_the_group_is_one_loop_iteration() -> None:
    """linger 0: requests submitted in the same iteration share a write, a later one not."""
    store = Store()
    writer: GroupWriter[int, int] = GroupWriter(store.write, linger_s=0.0)
    same = [writer.submit(1), writer.submit(2)]
    await asyncio.sleep(0)  # one iteration: the group of 1 and 2 is on its way
    later = writer.submit(3)
    assert list(await asyncio.gather(*same, later)) == [2, 4, 6]
    assert store.groups == [[1, 2], [3]]


async def test_a_failed_write_is_every_callers_error_and_the_next_group_is_written() -> None:
    """The store's error reaches each caller of the group; nobody is answered as written."""
    store = Store(fail=True)
    writer: GroupWriter[int, int] = GroupWriter(store.write, linger_s=0.0)
    results = await asyncio.gather(writer.submit(1), writer.submit(2), return_exceptions=True)
    assert [type(r) for r in results] == [TransientError, TransientError]
    store.fail = False
    assert await writer.submit(3) == 6


async def test_drain_writes_what_is_queued_and_waits_for_it() -> None:
    """Nothing is left pending after drain (replica shutdown)."""
    store = Store()
    writer: GroupWriter[int, int] = GroupWriter(store.write, linger_s=60.0)
    pending = writer.submit(7)
    await writer.drain()
    assert pending.result() == 14
    await writer.drain()  # nothing queued: a no-op
    assert store.groups == [[7]]


async def test_a_caller_that_gave_up_does_not_break_the_group() -> None:
    """A cancelled caller's future is skipped; the others get their answers."""
    store = Store()
    writer: GroupWriter[int, int] = GroupWriter(store.write, linger_s=0.01)
    gone, kept = writer.submit(1), writer.submit(2)
    gone.cancel()
    assert await kept == 4
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert store.groups == [[1, 2]]
