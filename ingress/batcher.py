"""Group commit for inbox appends: concurrent requests share one round trip.

Each request awaits its own future, which resolves only after the batch holding its
items is durable, so the 200 still means "stored". A batch is flushed when it reaches
`max_items` or `linger_s` after its first item, whichever is first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from adapters.ports import Inbox
from models.inbox import InboxItem


class AppendBatcher:
    """Collects appends from concurrent requests and writes them together."""

    def __init__(self, inbox: Inbox, linger_s: float = 0.001, max_items: int = 512) -> None:
        self._inbox = inbox
        self._linger_s = linger_s
        self._max_items = max_items
        self._items: list[InboxItem] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def append(self, items: Sequence[InboxItem]) -> None:
        """Return once these items are durable; raise the store's error otherwise."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._items.extend(items)
        self._waiters.append(waiter)
        if len(self._items) >= self._max_items:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._linger_s, self._flush)
        await waiter

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items, waiters = self._items, self._waiters
        self._items, self._waiters = [], []
        if waiters:
            task = asyncio.get_running_loop().create_task(self._write(items, waiters))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _write(self, items: list[InboxItem], waiters: list[asyncio.Future[None]]) -> None:
        try:
            await self._inbox.append(items)
        except Exception as exc:  # noqa: BLE001 -- handed to every waiting request, which maps it
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
        else:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def drain(self) -> None:
        """Flush what is queued and wait for every write in flight."""
        self._flush()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
