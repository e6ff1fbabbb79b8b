"""`python -m cluster reshard --shards N`: move the inbox's entries to N partitions, offline.

With the service stopped (its pid file is checked), every entry of every partition is
put where `partition_of(conversation_key, N)` says (the ingress's own function,
models/routing.py), in three passes over the partitions that hold entries:

1. the recorded batches first (a shard records a batch before publishing it out of entry
   order; its entries may be out with their sequences): each one moved with its records
   in one step, so the target's shard republishes exactly those entries first, in that
   order (adapters/ports.py InboxLayoutStore);
2. then every other entry, in entry order, `--batch` entries per atomic step; a
   conversation is in one partition under any count, so its entries arrive in the
   target in their order; entries whose partition does not change stay where they are;
3. then partitions from N on, now empty, are deleted, and the layout record says N.

Crash safety: the record says "resharding to N" from before the first move to after the
last, and a service never starts on it. Each step moves whole entries (each in exactly
one partition at any moment), and every pass derives its work from where the entries are
now, so a reshard killed at any point is finished by running it again; run with another
N, it first finishes the interrupted one, then reshards from there.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from adapters.ports import InboxLayoutStore
from cluster import process_tree
from cluster.backends import build_layout_store
from cluster.layout import waiting_text
from cluster.runner import clear_stale_run
from cluster.settings import Settings
from cluster.wiring import Wiring
from models.inbox import StoredItem
from models.inbox_layout import InboxLayout, Move
from models.routing import partition_of

log = structlog.get_logger("reshard")

BATCH = 100  # entries per atomic move: one script of ~100 XADD/XACK/XDEL (~1 ms here)


@dataclass(frozen=True, slots=True)
class ReshardReport:
    """What a reshard did: the count before (None: no record), the entries before and
    after per partition, how many moved (of which in recorded batches)."""

    before: int | None
    shards: int
    occupied_before: dict[int, int]
    occupied_after: dict[int, int]
    moved: int
    recorded_moved: int


def _moves(entries: list[StoredItem], partition: int, shards: int) -> list[Move]:
    """The entries that N partitions put elsewhere, each with its item's new partition."""
    moves: list[Move] = []
    for entry in entries:
        target = partition_of(entry.item.conversation_key, shards)
        if target != partition:
            item = entry.item.model_copy(update={"partition": target})
            moves.append(Move(entry.entry_id, target, item))
    return moves


_VERIFY_PASSES = 3


async def _move_misplaced(store: InboxLayoutStore, partition: int, shards: int, batch: int) -> int:
    """Move every entry of the partition that `shards` puts elsewhere, in entry order,
    `batch` per atomic step; how many moved."""
    moved = 0
    after: str | None = None
    while entries := await store.scan(partition, after, batch):
        after = entries[-1].entry_id
        moves = _moves(entries, partition, shards)
        if moves:
            moved += await store.move(partition, moves, recorded=False)
    return moved


async def _verify(
    store: InboxLayoutStore, partitions: list[int], shards: int, batch: int
) -> tuple[list[int], int]:
    """A last pass over every partition now holding entries: anything still misplaced (an
    ingress that was not stopped after all appended under the old count) moves too, until
    a pass finds nothing; the record is written only then. The partitions, and how many
    moved."""
    moved = 0
    for _ in range(_VERIFY_PASSES):
        partitions = sorted(set(partitions) | set(await store.occupied()))
        again = 0
        for partition in partitions:
            again += await _move_misplaced(store, partition, shards, batch)
        moved += again
        if not again:
            return partitions, moved
    raise RuntimeError(
        "entries keep arriving under another count: stop every ingress, then run again"
    )


async def reshard(store: InboxLayoutStore, shards: int, batch: int = BATCH) -> ReshardReport:
    """Move every entry to its partition under `shards`, then record the layout (module
    docstring); safe to run again after any interruption."""
    if shards < 1 or batch < 1:
        raise ValueError("shards and batch must be >= 1")
    stored = await store.layout()
    if stored is not None and stored.resharding_to not in (None, shards):
        # An interrupted reshard to another count is finished first: until it is, one
        # conversation can lie in two partitions (its earlier entries moved, its later
        # ones not yet), and on Redis a moved entry's id is newer than those left behind,
        # so moving both again from partition to partition could put them out of order.
        log.info("reshard_finishing_interrupted", to=stored.resharding_to, then=shards)
        await reshard(store, stored.resharding_to, batch)
        stored = await store.layout()
    before = stored.shards if stored is not None else None
    occupied = await store.occupied()
    log.info("reshard_started", before=before, shards=shards, entries=occupied)
    # First of all: a service started from here on refuses (cluster/layout.py), and a
    # shard still running somewhere (another host, a cluster this data dir's pid file does
    # not know) has its next read and commit refused (the shard fence).
    await store.set_layout(InboxLayout(shards=before, resharding_to=shards))
    await store.fence(sorted(set(occupied) | set(range(max(shards, before or 0)))))
    partitions = sorted(occupied)
    recorded_moved = 0
    for partition in partitions:
        moves = _moves(await store.recorded(partition), partition, shards)
        if moves:
            recorded_moved += await store.move(partition, moves, recorded=True)
    moved = recorded_moved
    for partition in partitions:
        moved += await _move_misplaced(store, partition, shards, batch)
    partitions, again = await _verify(store, partitions, shards, batch)
    moved += again
    for partition in (p for p in partitions if p >= shards):
        if not await store.drop_empty(partition):
            raise RuntimeError(f"partition {partition} still holds entries after the moves")
    await store.set_layout(InboxLayout(shards=shards))
    after_moves = await store.occupied()
    log.info("reshard_done", shards=shards, moved=moved, entries=after_moves)
    return ReshardReport(before, shards, occupied, after_moves, moved, recorded_moved)


def live_supervisor(pidfile: Path) -> int | None:
    """The pid of the run recorded in WA_DATA_DIR/run.pid when its supervisor (the file's
    first process) is alive; None when there is no run or it is gone."""
    procs = process_tree.load(pidfile)
    return procs[0][0] if procs and process_tree.alive(procs[0]) else None


def add_commands(sub: Any) -> None:
    """Add the `reshard` command to the CLI's subparsers."""
    cmd = sub.add_parser(
        "reshard", help="move the inbox's entries to N partitions (service stopped)"
    )
    cmd.add_argument("--shards", type=int, required=True, help="the new WA_SHARDS")
    cmd.add_argument("--batch", type=int, default=BATCH, help="entries per atomic move")


def reshard_command(settings: Settings, args: argparse.Namespace) -> int:
    """Refuse while a run recorded in the data dir lives, else reshard; the exit status."""
    if args.shards < 1 or args.batch < 1:
        print("--shards and --batch must be >= 1", file=sys.stderr)
        return 2
    wiring = Wiring.from_settings(settings)
    pidfile = wiring.data_dir / "run.pid"
    running = live_supervisor(pidfile)
    if running is not None:
        print(
            f"the service is running (pid {running}, {pidfile}): stop it first; a reshard "
            "moves entries its shards would be reading",
            file=sys.stderr,
        )
        return 1
    # What a run killed with -9 left (Ray workers, HAProxy) is ended as the next run
    # would end it: a leftover shard worker must not read while entries move.
    clear_stale_run(pidfile)

    async def run() -> ReshardReport:
        store = build_layout_store(wiring.inbox)
        try:
            return await reshard(store, args.shards, args.batch)
        finally:
            await store.close()

    report = asyncio.run(run())
    print(
        f"resharded from {report.before or 'an unrecorded count'} to {report.shards} "
        f"partitions: {report.moved} entries moved ({report.recorded_moved} of recorded "
        f"batches); waiting now: {waiting_text(report.occupied_after) or 'nothing'}"
    )
    if settings.shards != report.shards:
        print(f"start the service with WA_SHARDS={report.shards} (it is {settings.shards} now)")
    return 0
