"""The runner's layout check: the inbox's partitions against WA_SHARDS, before anything starts.

A conversation's partition is its key's hash modulo WA_SHARDS (models/routing.py). Started
with another count than its backlog was written for, the service used to leave the entries
of partitions beyond the new count unread, without a word, and let a conversation's old
entries (read by its old shard) race its new ones (read by another). So the inbox keeps
the count it was written for (models/inbox_layout.py) and the start goes on only when:

- the record says WA_SHARDS;
- the record says another count and no partition holds an entry: the new count is
  written (nothing is placed for the old one);
- there is no record yet (an inbox written before this check, or a fresh one) and no
  entry is misplaced for WA_SHARDS: the record is written.

Otherwise the start is refused (exit 2, like a configuration error) with the entries
waiting per partition and the two ways out: the old count until the backlog is drained,
or `python -m cluster reshard --shards N` with the service stopped (docs/resharding.md).
"""

from __future__ import annotations

import asyncio

import structlog

from adapters.errors import TransientError
from adapters.ports import InboxLayoutStore
from cluster.backends import InboxConfig, RedisInboxConfig, build_layout_store
from cluster.settings import SettingsError
from models.inbox_layout import InboxLayout
from models.routing import partition_of

log = structlog.get_logger("layout")

# Without a record, the count the entries were written for is unknown: every entry of
# each partition is checked against WA_SHARDS (read SCAN_CHUNK at a time; ~3-4 s per
# 100,000 entries, at start only, and only until a record exists). A sample would let a
# conversation whose entries sit behind other conversations' slip through.
SCAN_CHUNK = 1000


def waiting_text(occupied: dict[int, int]) -> str:
    """`partition 2: 75, partition 3: 75`: the entries waiting per partition."""
    return ", ".join(f"partition {p}: {n}" for p, n in sorted(occupied.items()))


def refusal(stored: InboxLayout | None, occupied: dict[int, int], shards: int) -> str:
    """Why the start is refused and the two ways out (one message, docs/resharding.md)."""
    if stored is not None and stored.resharding_to is not None:
        return (
            f"a reshard to {stored.resharding_to} partitions did not finish (the inbox's "
            f"entries are partly placed for each count; waiting: {waiting_text(occupied)}); "
            f"with the service stopped, run `python -m cluster reshard --shards {shards}` "
            "(again: it goes on where it stopped), then start with that WA_SHARDS; see "
            "docs/resharding.md"
        )
    if stored is not None and stored.shards is not None:
        written = f"WA_SHARDS={stored.shards} (the inbox's stored layout)"
        old = f"WA_SHARDS={stored.shards}"
    else:
        written = "another WA_SHARDS (the inbox has no stored layout yet)"
        old = "the WA_SHARDS they were written with"
    return (
        f"the inbox holds entries placed for {written}, and WA_SHARDS is {shards}: started "
        "so, some would never be read and others would be read by two shards. Waiting: "
        f"{waiting_text(occupied)}. Either start with {old} until wa_inbox_backlog is 0 on "
        f"every partition, then change it; or stop the service and run `python -m cluster "
        f"reshard --shards {shards}`, which moves them; see docs/resharding.md"
    )


async def misplaced(store: InboxLayoutStore, occupied: dict[int, int], shards: int) -> set[int]:
    """The partitions with an entry that WA_SHARDS would not put there (every partition
    from WA_SHARDS on; below it, by reading every entry)."""
    found = {p for p in occupied if p >= shards}
    for partition in (p for p in occupied if p < shards):
        after: str | None = None
        while entries := await store.scan(partition, after, SCAN_CHUNK):
            after = entries[-1].entry_id
            if any(partition_of(s.item.conversation_key, shards) != partition for s in entries):
                found.add(partition)
                break
    return found


async def reconcile(store: InboxLayoutStore, shards: int) -> str | None:
    """Compare the stored layout with WA_SHARDS, write the record where the start may go
    on (module docstring); the refusal's message otherwise."""
    stored = await store.layout()
    if stored is not None and stored.resharding_to is None and stored.shards == shards:
        return None
    occupied = await store.occupied()
    if stored is not None and stored.resharding_to is not None:
        return refusal(stored, occupied, shards)
    if stored is None and not await misplaced(store, occupied, shards):
        await store.set_layout(InboxLayout(shards=shards))
        log.info("inbox_layout_recorded", shards=shards, entries=sum(occupied.values()))
        return None
    if stored is not None and not occupied:
        await store.set_layout(InboxLayout(shards=shards))
        log.info("inbox_layout_changed", before=stored.shards, shards=shards)
        return None
    return refusal(stored, occupied, shards)


def check_layout(config: InboxConfig, shards: int) -> None:
    """The runner's start-up check: raise SettingsError (exit 2) unless the inbox's layout
    is WA_SHARDS's or can be made so without moving anything. A store that cannot be
    reached is refused only where durability is enforced (production on Redis), as the
    durability check does; otherwise it is logged and the start goes on."""

    async def check() -> str | None:
        store = build_layout_store(config)
        try:
            return await reconcile(store, shards)
        finally:
            await store.close()

    enforced = isinstance(config, RedisInboxConfig) and config.enforce_durability
    try:
        refused = asyncio.run(check())
    except TransientError as exc:
        if enforced:
            raise SettingsError(f"the inbox's layout could not be checked: {exc}") from exc
        log.warning("inbox_layout_unchecked", error=str(exc))
        return
    if refused is not None:
        raise SettingsError(refused)
