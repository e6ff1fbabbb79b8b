"""Group commit for inbox appends: concurrent requests share one round trip.

Each request awaits its own future, which resolves only after the batch holding its
delivery is durable, so the 200 still means "stored". A batch is flushed when it reaches
`max_items` or `linger_s` after its first delivery, whichever is first (the grouping itself
is adapters/grouping.py, shared with the Redis rate limiter). The store checks and sets each
delivery's dedup mark in the same atomic step as its append, so the future also says
whether the delivery was new or a duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

from adapters.grouping import GroupWriter
from adapters.ports import Delivery, Inbox
from models.archive import RawDelivery
from models.inbox import InboxItem


class AppendBatcher:
    """Collects deliveries from concurrent requests and writes them together."""

    def __init__(self, inbox: Inbox, linger_s: float, max_items: int) -> None:
        self._inbox = inbox
        self._group: GroupWriter[Delivery, bool] = GroupWriter(self._write, linger_s, max_items)

    def append(
        self, key: str, items: Sequence[InboxItem], raw: RawDelivery | None = None
    ) -> asyncio.Future[bool]:
        """Await it: True once the items (and `raw`, the body for the archive, in the same
        atomic step) are durable; False if `key` was already stored (a duplicate: nothing
        appended, nothing archived again). Raises the store's error otherwise; then
        nothing was marked."""
        delivery: Delivery = (key, items) if raw is None else (key, items, raw)
        return self._group.submit(delivery, len(items))

    def _write(self, deliveries: list[Delivery]) -> Awaitable[list[bool]]:
        return self._inbox.append_deliveries(deliveries)

    async def drain(self) -> None:
        """Flush what is queued and wait for every write in flight."""
        await self._group.drain()
