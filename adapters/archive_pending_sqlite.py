"""The SQLite inbox's raw deliveries waiting for the archive store, and replayed appends.

A delivery's raw body is a row of `archive_pending` inserted by the transaction that
appends its items and sets its mark (adapters/sqlite_inbox.py), so the archive starts
from the durability point and a duplicate is not archived again; the archiver deletes the
row once the archive store confirmed it. A replay inserts its items in one transaction
without a mark.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from adapters.archive_codec import dump_header, load_delivery
from adapters.codec import dump_item
from adapters.ports import ArchiveBacklog, PendingArchive
from adapters.sqlite_db import SqliteDb
from models.archive import RawDelivery, ms_of
from models.inbox import InboxItem

SCHEMA = """
CREATE TABLE IF NOT EXISTS archive_pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms INTEGER NOT NULL,
    header BLOB NOT NULL,
    body BLOB NOT NULL
);
"""


def insert_pending(conn: sqlite3.Connection, row: tuple[int, bytes, bytes]) -> None:
    """Add a raw delivery's row (inside the caller's transaction: the append's)."""
    conn.execute("INSERT INTO archive_pending (received_ms, header, body) VALUES (?, ?, ?)", row)


def pending_row(delivery: RawDelivery) -> tuple[int, bytes, bytes]:
    """The row of a raw delivery, encoded before the append's transaction starts."""
    return ms_of(delivery.received_at), dump_header(delivery), delivery.body


class SqliteArchivePending:
    """The pending raw deliveries of one SQLite inbox (its connection thread)."""

    def __init__(self, db: SqliteDb) -> None:
        self._db = db

    async def pending(self, limit: int) -> list[PendingArchive]:
        """The oldest `limit` rows."""

        def fetch(conn: sqlite3.Connection) -> list[tuple[int, bytes, bytes]]:
            return conn.execute(
                "SELECT id, header, body FROM archive_pending ORDER BY id LIMIT ?", (limit,)
            ).fetchall()

        rows = await self._db.run(fetch)
        return [PendingArchive(str(i), load_delivery(h, b)) for i, h, b in rows]

    async def done(self, entry_ids: Sequence[str]) -> None:
        """Delete the archived rows: one transaction."""
        ids = [(int(entry_id),) for entry_id in entry_ids]

        def delete(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("DELETE FROM archive_pending WHERE id = ?", ids)

        if ids:
            await self._db.run(delete)

    async def backlog(self) -> ArchiveBacklog:
        """COUNT and the oldest row's header."""

        def read(conn: sqlite3.Connection) -> ArchiveBacklog:
            count = int(conn.execute("SELECT COUNT(*) FROM archive_pending").fetchone()[0])
            row = conn.execute("SELECT header FROM archive_pending ORDER BY id LIMIT 1").fetchone()
            oldest = load_delivery(row[0], b"").received_at if row is not None else None
            return ArchiveBacklog(count, oldest)

        return await self._db.run(read)

    async def append_replayed(self, items: Sequence[InboxItem]) -> None:
        """Insert every item (replayed=True) in one transaction, no mark."""
        rows = [
            (i.partition, dump_item(i if i.replayed else i.model_copy(update={"replayed": True})))
            for i in items
        ]

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT INTO inbox (partition, body) VALUES (?, ?)", rows)

        if rows:
            await self._db.run(write)
