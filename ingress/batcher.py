"""Group commit for inbox appends: concurrent requests share one round trip.

Each request awaits its own future, which resolves only after the batch holding its
delivery is durable, so the 200 still means "stored". A batch is flushed when it reaches
`max_items` or `linger_s` after its first delivery, whichever is first. The store checks
and sets each delivery's dedup mark in the same atomic step as its append, so the future
also says whether the delivery was new or a duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from adapters.ports import Delivery, Inbox
from models.inbox import InboxItem


class AppendBatcher:
    """Collects deliveries from concurrent requests and writes them together."""

    def __init__(self, inbox: Inbox, linger_s: float = 0.001, max_items: int = 512) -> None:
        self._inbox = inbox
        self._linger_s = linger_s
        self._max_items = max_items
        self._deliveries: list[Delivery] = []
        self._size = 0
        self._waiters: list[asyncio.Future[bool]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    async def append(self, key: str, items: Sequence[InboxItem]) -> bool:
        """True once the items are durable; False if `key` was already stored (a duplicate).

        Raises the store's error otherwise; then nothing was marked.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._deliveries.append((key, items))
        self._size += len(items)
        self._waiters.append(waiter)
        if self._size >= self._max_items:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._linger_s, self._flush)
        return await waiter

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deliveries, waiters = self._deliveries, self._waiters
        self._deliveries, self._waiters, self._size = [], [], 0
        if waiters:
            task = asyncio.get_running_loop().create_task(self._write(deliveries, waiters))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _write(self, deliveries: list[Delivery], waiters: list[asyncio.Future[bool]]) -> None:
        try:
            stored = await self._inbox.append_deliveries(deliveries)
        except Exception as exc:  # noqa: BLE001 -- handed to every waiting request, which maps it
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
        else:
            for waiter, fresh in zip(waiters, stored, strict=True):
                if not waiter.done():
                    waiter.set_result(fresh)

    async def drain(self) -> None:
        """Flush what is queued and wait for every write in flight."""
        self._flush()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
