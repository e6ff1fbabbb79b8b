"""The replayer: finds archived deliveries (or dead letters) and appends them again.

Used by POST /admin/replay (ingress/replay_admin.py) and `python -m cluster replay` /
`deliveries show` (cluster/replay.py), over the Archive and Inbox ports. A delivery is
looked for in the archive store first, then among the bodies still waiting in the inbox
for it (accepted moments ago, or while the store is down), so a delivery can be shown and
replayed as soon as it was acknowledged. Each delivery's items are appended in one atomic
step (`append_replayed`): a replay that fails part-way appended whole deliveries only, and
running it again republishes them again (same event ids: consumers deduplicate).
"""

from __future__ import annotations

from datetime import datetime

import orjson

from adapters.errors import AdapterError
from adapters.ports import Archive, Inbox
from models.archive import RawDelivery, ms_of, received_ms
from models.inbox import InboxItem
from models.replay import ReplayRequest, ReplayResult, resplit
from models.routing import partition_of
from models.tenant import TenantDirectory

PENDING_SCAN = 10_000
"""How many bodies waiting for the archive store a look-up scans (the backlog is a few
seconds' worth unless the store is down; then older ones may be missed until archived)."""
_DEAD_PAGE = 100


class ReplayNotFound(LookupError):
    """The delivery or dead letter asked for is not there (answered 404)."""


class Replayer:
    """Replays over one inbox and one archive, re-splitting for `partitions` partitions."""

    def _placed(self, item: InboxItem) -> InboxItem:
        """The item with its partition under this replayer's count (the unowned partition,
        never a shard's, stays as it is)."""
        if item.partition < 0:
            return item
        partition = partition_of(item.conversation_key, self.partitions)
        return (
            item
            if partition == item.partition
            else item.model_copy(update={"partition": partition})
        )

    def __init__(
        self, archive: Archive, inbox: Inbox, directory: TenantDirectory, partitions: int
    ) -> None:
        self.archive = archive
        self.inbox = inbox
        self.directory = directory
        self.partitions = partitions

    def _claim(self, phone_number_id: str | None, waba_id: str | None) -> str | None:
        tenant, _ = self.directory.claim(phone_number_id, waba_id)
        return tenant.id if tenant is not None else None

    async def _pending(self) -> list[RawDelivery]:
        return [p.delivery for p in await self.inbox.archive_pending(PENDING_SCAN)]

    async def find(self, delivery_id: str) -> RawDelivery | None:
        """The delivery from the archive, else from the bodies the inbox still holds (also
        while the archive store is down: its error is raised only if they lack it too)."""
        try:
            found = await self.archive.get(delivery_id)
        except AdapterError:
            waiting = await self._find_pending(delivery_id)
            if waiting is None:
                raise
            return waiting
        return found if found is not None else await self._find_pending(delivery_id)

    async def _find_pending(self, delivery_id: str) -> RawDelivery | None:
        return next((d for d in await self._pending() if d.delivery_id == delivery_id), None)

    async def replay(self, request: ReplayRequest) -> ReplayResult:
        """Append what `request` names again (replayed=True); ReplayNotFound for an
        unknown delivery or dead letter. Adapter errors propagate (the caller's 503)."""
        if request.delivery_id is not None:
            delivery = await self.find(request.delivery_id)
            if delivery is None:
                raise ReplayNotFound(f"no delivery {request.delivery_id}")
            return await self._deliveries([delivery], None, None)
        if request.tenant_id is not None:
            since, until = request.since, request.until
            if since is None or until is None:  # ReplayRequest refuses it: never here
                raise ValueError("a time range needs since and until")
            return await self._range(request.tenant_id, since, until, request)
        return await self._dead_letters(request)

    async def _deliveries(
        self, deliveries: list[RawDelivery], tenant_id: str | None, next_since: datetime | None
    ) -> ReplayResult:
        items = unowned = 0
        for delivery in deliveries:
            split = resplit(
                delivery, orjson.loads(delivery.body), self.partitions, self._claim, tenant_id
            )
            await self.inbox.append_replayed(split.items)
            items += len(split.items)
            unowned += split.unowned
        return ReplayResult(
            deliveries=len(deliveries),
            items=items,
            unowned=unowned,
            delivery_ids=[d.delivery_id for d in deliveries],
            next_since=next_since,
        )

    async def _range(
        self, tenant_id: str, since: datetime, until: datetime, request: ReplayRequest
    ) -> ReplayResult:
        """The tenant's deliveries received in [since, until), oldest first, up to the
        limit: archived ones and those still waiting in the inbox."""
        low, high = ms_of(since), ms_of(until)
        waiting = {
            d.delivery_id: d
            for d in await self._pending()
            if tenant_id in d.tenants and low <= ms_of(d.received_at) < high
        }
        ids = sorted(
            {*await self.archive.delivery_ids(tenant_id, since, until), *waiting},
            key=lambda i: (received_ms(i) or 0, i),
        )
        chosen, rest = ids[: request.limit], ids[request.limit :]
        deliveries: list[RawDelivery] = []
        for delivery_id in chosen:
            delivery = waiting.get(delivery_id) or await self.archive.get(delivery_id)
            if delivery is not None:  # swept between the listing and the read: gone
                deliveries.append(delivery)
        next_since = None
        if rest:
            next_since = datetime.fromtimestamp((received_ms(rest[0]) or low) / 1000, since.tzinfo)
        return await self._deliveries(deliveries, tenant_id, next_since)

    async def _dead_letters(self, request: ReplayRequest) -> ReplayResult:
        """One dead letter, or every one (paged, up to the limit): each item appended again."""
        if request.dead_letter_id is not None:
            letter = await self.inbox.dead_letter(request.dead_letter_id)
            if letter is None:
                raise ReplayNotFound(f"no dead letter {request.dead_letter_id}")
            letters = [letter]
        else:
            letters = []
            after: str | None = None
            while len(letters) < request.limit:
                page = await self.inbox.dead_letters(min(_DEAD_PAGE, request.limit), after)
                letters += page[: request.limit - len(letters)]
                if len(page) < min(_DEAD_PAGE, request.limit):
                    break
                after = page[-1].dead_letter_id
        # Each item into its partition under today's count: a letter stored before a
        # reshard names the partition of the count it was read under (docs/resharding.md).
        await self.inbox.append_replayed([self._placed(letter.item) for letter in letters])
        ids = [letter.dead_letter_id for letter in letters]
        # Purged only once appended: a crash in between replays them again, never loses one.
        purged = await self.inbox.purge_dead_letters(ids) if request.purge and ids else 0
        return ReplayResult(dead_letters=len(letters), items=len(letters), purged=purged)
