"""Embedded inbox: a SQLite table per installation, used when no Redis is configured."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from adapters.codec import dump_item, load_item
from adapters.sqlite_db import SqliteDb
from models.inbox import InboxItem, StoredItem

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    partition INTEGER NOT NULL,
    body BLOB NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS inbox_partition ON inbox (partition, id);
CREATE TABLE IF NOT EXISTS sequences (
    conversation_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
"""

_IDLE_POLL_S = (0.002, 0.05)  # sqlite has no blocking read: poll, backing off while idle


class SqliteInbox:
    """The Inbox port on SQLite (WAL). One reader per partition, in this process."""

    def __init__(self, path: Path) -> None:
        self._db = SqliteDb(path, _SCHEMA)
        # Per-partition cursor: entries above it were handed out and not committed yet.
        # It starts at 0, so a restarted reader re-reads everything left uncommitted.
        self._cursor: dict[int, int] = {}

    async def append(self, items: Sequence[InboxItem]) -> None:
        """Durably append items; one transaction for the whole batch."""
        rows = [(item.partition, dump_item(item)) for item in items]

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT INTO inbox (partition, body) VALUES (?, ?)", rows)

        if rows:
            await self._db.run(write)

    async def read(self, partition: int, count: int, block_ms: int) -> list[StoredItem]:
        """Uncommitted entries of a partition above this reader's cursor, oldest first."""
        cursor = self._cursor.get(partition, 0)

        def fetch(conn: sqlite3.Connection) -> list[tuple[int, bytes, int]]:
            rows: list[tuple[int, bytes, int]] = conn.execute(
                "SELECT id, body, deliveries FROM inbox WHERE partition = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                (partition, cursor, count),
            ).fetchall()
            if rows:
                with conn:
                    conn.execute(
                        "UPDATE inbox SET deliveries = deliveries + 1 "
                        "WHERE partition = ? AND id > ? AND id <= ?",
                        (partition, cursor, rows[-1][0]),
                    )
            return rows

        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_ms / 1000
        delay = _IDLE_POLL_S[0]
        while True:
            rows = await self._db.run(fetch)
            if rows or loop.time() >= deadline:
                break
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            delay = min(delay * 2, _IDLE_POLL_S[1])
        if rows:
            self._cursor[partition] = rows[-1][0]
        return [
            StoredItem(entry_id=str(row_id), item=load_item(body), deliveries=deliveries + 1)
            for row_id, body, deliveries in rows
        ]

    async def commit(
        self, partition: int, entry_ids: Sequence[str], sequences: Mapping[str, int]
    ) -> None:
        """Delete the entries and store the sequences in one transaction."""
        ids = [(int(entry_id),) for entry_id in entry_ids]
        seqs = list(sequences.items())

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("DELETE FROM inbox WHERE id = ?", ids)
                conn.executemany(
                    "INSERT INTO sequences (conversation_id, seq) VALUES (?, ?) "
                    "ON CONFLICT (conversation_id) DO UPDATE SET seq = excluded.seq",
                    seqs,
                )

        await self._db.run(write)

    async def sequences(self, conversation_ids: Collection[str]) -> dict[str, int]:
        """Last published sequence per conversation."""
        wanted = list(conversation_ids)

        def fetch(conn: sqlite3.Connection) -> dict[str, int]:
            found: dict[str, int] = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = (
                    f"SELECT conversation_id, seq FROM sequences WHERE conversation_id IN ({marks})"  # noqa: S608 -- only '?' placeholders are interpolated
                )
                found.update(conn.execute(query, chunk).fetchall())
            return found

        return await self._db.run(fetch) if wanted else {}

    async def backlog(self, partition: int) -> int:
        """Entries of the partition not committed yet."""

        def count(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT COUNT(*) FROM inbox WHERE partition = ?", (partition,)
            ).fetchone()
            return int(row[0])

        return await self._db.run(count)

    async def ping(self) -> None:
        """The database file opens and answers."""
        await self._db.run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        """Close the connection."""
        await self._db.close()
