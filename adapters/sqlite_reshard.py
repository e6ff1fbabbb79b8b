"""The inbox layout on SQLite: the record, and entries moved between partitions.

The record is the one row of `inbox_layout` (JSON, models/inbox_layout.py) in the inbox's
own file. An entry is a row of `inbox` (adapters/sqlite_inbox.py) with its partition in a
column, so a move is an UPDATE of the partition and the body (the item names its
partition) in one transaction per batch: the row keeps its id, and with it its place in
the target's order (shards read a partition by id) and its `deliveries` count, so a row
read and never committed is read as a redelivery in its new partition, as after a
restart. Ids keep their order across partitions, so a conversation's rows (all in one
partition under any count) keep theirs.

A recorded batch (`batch_order`, the shard's crash-consistent republish) is moved in the
same transaction as its records: its ids leave the source's row and are appended, in the
recorded order, to each target's row (several sources' batches in one row are of disjoint
conversations; the shard replays a row as one batch in its order).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import orjson

from adapters.codec import dump_item, load_item
from adapters.sqlite_db import SqliteDb
from models.inbox import StoredItem
from models.inbox_layout import InboxLayout, Move

# Only the layout's own table: `inbox` and `batch_order` belong to adapters/sqlite_inbox.py,
# which creates them when the service first opens the file (a fresh file has neither).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox_layout (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    body TEXT NOT NULL
);
"""


def _has(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
    return row.fetchone() is not None


def _record(conn: sqlite3.Connection, partition: int) -> list[str]:
    if not _has(conn, "batch_order"):
        return []
    row = conn.execute(
        "SELECT entry_ids FROM batch_order WHERE partition = ?", (partition,)
    ).fetchone()
    return [] if row is None else [str(entry_id) for entry_id in orjson.loads(row[0])]


def _set_record(conn: sqlite3.Connection, partition: int, ids: list[str]) -> None:
    if not ids:
        conn.execute("DELETE FROM batch_order WHERE partition = ?", (partition,))
        return
    conn.execute(
        "INSERT INTO batch_order (partition, entry_ids) VALUES (?, ?) "
        "ON CONFLICT (partition) DO UPDATE SET entry_ids = excluded.entry_ids",
        (partition, orjson.dumps(ids).decode()),
    )


class SqliteLayoutStore:
    """The InboxLayoutStore port on the embedded inbox's SQLite file."""

    def __init__(self, path: Path) -> None:
        self._db = SqliteDb(path, _SCHEMA)

    async def fence(self, partitions: Sequence[int]) -> None:
        """Bump each partition's row of `shard_epochs` (the table adapters/sqlite_inbox.py
        checks), one transaction."""

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS shard_epochs "
                    "(partition INTEGER PRIMARY KEY, epoch INTEGER NOT NULL)"
                )
                conn.executemany(
                    "INSERT INTO shard_epochs (partition, epoch) VALUES (?, 1) "
                    "ON CONFLICT (partition) DO UPDATE SET epoch = epoch + 1",
                    [(p,) for p in partitions],
                )

        await self._db.run(write)

    async def layout(self) -> InboxLayout | None:
        """The row of `inbox_layout`, None without one."""

        def fetch(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT body FROM inbox_layout WHERE id = 1").fetchone()
            return None if row is None else str(row[0])

        body = await self._db.run(fetch)
        return None if body is None else InboxLayout.model_validate_json(body)

    async def set_layout(self, layout: InboxLayout) -> None:
        """Upsert the row: one transaction, fsynced (FULL)."""
        body = layout.model_dump_json()

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO inbox_layout (id, body) VALUES (1, ?) "
                    "ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                    (body,),
                )

        await self._db.run(write)

    async def occupied(self) -> dict[int, int]:
        """Rows per partition >= 0 (one pass over the partition index)."""

        def count(conn: sqlite3.Connection) -> dict[int, int]:
            if not _has(conn, "inbox"):
                return {}
            rows = conn.execute(
                "SELECT partition, COUNT(*) FROM inbox WHERE partition >= 0 "
                "GROUP BY partition ORDER BY partition"
            ).fetchall()
            return {int(p): int(n) for p, n in rows}

        return await self._db.run(count)

    async def scan(self, partition: int, after: str | None, count: int) -> list[StoredItem]:
        """Rows above the id, by id: a SELECT only (cursors and counts untouched)."""

        def fetch(conn: sqlite3.Connection) -> list[tuple[int, bytes]]:
            if not _has(conn, "inbox"):
                return []
            return conn.execute(
                "SELECT id, body FROM inbox WHERE partition = ? AND id > ? ORDER BY id LIMIT ?",
                (partition, int(after or 0), count),
            ).fetchall()

        rows = await self._db.run(fetch)
        return [StoredItem(entry_id=str(row_id), item=load_item(body)) for row_id, body in rows]

    async def recorded(self, partition: int) -> list[StoredItem]:
        """The row of `batch_order`, then the rows of its ids still in the partition."""

        def fetch(conn: sqlite3.Connection) -> list[tuple[int, bytes]]:
            found: list[tuple[int, bytes]] = []
            for entry_id in _record(conn, partition):
                row = conn.execute(
                    "SELECT id, body FROM inbox WHERE partition = ? AND id = ?",
                    (partition, int(entry_id)),
                ).fetchone()
                if row is not None:
                    found.append((row[0], row[1]))
            return found

        rows = await self._db.run(fetch)
        return [
            StoredItem(entry_id=str(row_id), item=load_item(body), deliveries=2)
            for row_id, body in rows
        ]

    async def move(self, partition: int, moves: Sequence[Move], *, recorded: bool) -> int:
        """One transaction: UPDATE each row's partition and body; with `recorded`, the
        source's and the targets' rows of `batch_order` too."""
        encoded = [(m.target, dump_item(m.item), int(m.entry_id)) for m in moves]

        def write(conn: sqlite3.Connection) -> int:
            moved: dict[int, list[str]] = {}
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                for target, body, row_id in encoded:
                    cursor = conn.execute(
                        "UPDATE inbox SET partition = ?, body = ? WHERE id = ? AND partition = ?",
                        (target, body, row_id, partition),
                    )
                    if cursor.rowcount == 1:
                        moved.setdefault(target, []).append(str(row_id))
                if recorded and moved:
                    gone = {entry_id for ids in moved.values() for entry_id in ids}
                    stay = [i for i in _record(conn, partition) if i not in gone]
                    _set_record(conn, partition, stay)
                    for target, ids in moved.items():
                        _set_record(conn, target, _record(conn, target) + ids)
            return sum(len(ids) for ids in moved.values())

        return await self._db.run(write) if encoded else 0

    async def drop_empty(self, partition: int) -> bool:
        """Delete the partition's `batch_order` row when no row of `inbox` is left in it."""

        def write(conn: sqlite3.Connection) -> bool:
            if not _has(conn, "inbox"):
                return True
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                if conn.execute(
                    "SELECT 1 FROM inbox WHERE partition = ? LIMIT 1", (partition,)
                ).fetchone():
                    return False
                if _has(conn, "batch_order"):
                    _set_record(conn, partition, [])
            return True

        return await self._db.run(write)

    async def close(self) -> None:
        """Close the connection."""
        await self._db.close()
