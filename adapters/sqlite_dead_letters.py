"""The failed store on SQLite: a `dead_letters` table in the inbox's database.

One row per dead letter (the JSON of adapters/codec.py), keyed by its id, ordered by the
time it died then id; kept until purged (a dead letter is the only copy of an accepted
item). Upserted in its own transaction, before the shard publishes the batch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence

from adapters.codec import dump_dead_letter, load_dead_letter
from adapters.sqlite_db import SqliteDb
from models.dead_letter import DeadLetter

SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY,
    dead_at REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_order ON dead_letters (dead_at, id);
"""


class SqliteDeadLetters:
    """The Inbox port's failed-store methods, on the inbox's own database."""

    def __init__(self, db: SqliteDb) -> None:
        self._db = db

    async def store(self, letters: Sequence[DeadLetter]) -> None:
        """INSERT OR REPLACE every letter, one transaction."""
        rows = [
            (letter.dead_letter_id, letter.dead_at.timestamp(), dump_dead_letter(letter))
            for letter in letters
        ]
        if not rows:
            return

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT OR REPLACE INTO dead_letters (id, dead_at, body) VALUES (?, ?, ?)",
                    rows,
                )

        await self._db.run(write)

    async def find(self, dead_letter_ids: Collection[str]) -> dict[str, DeadLetter]:
        """SELECT the rows with these ids."""
        wanted = list(dead_letter_ids)
        if not wanted:
            return {}

        def fetch(conn: sqlite3.Connection) -> dict[str, DeadLetter]:
            found: dict[str, DeadLetter] = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for row_id, body in conn.execute(
                    f"SELECT id, body FROM dead_letters WHERE id IN ({marks})",  # noqa: S608 -- placeholders only
                    chunk,
                ):
                    found[row_id] = load_dead_letter(body)
            return found

        return await self._db.run(fetch)

    async def page(self, limit: int, after: str | None) -> list[DeadLetter]:
        """The next `limit` rows by (dead_at, id) after the row `after` (from the start
        if it is absent)."""

        def fetch(conn: sqlite3.Connection) -> list[DeadLetter]:
            start = None
            if after is not None:
                start = conn.execute(
                    "SELECT dead_at, id FROM dead_letters WHERE id = ?", (after,)
                ).fetchone()
            if start is None:
                rows = conn.execute(
                    "SELECT body FROM dead_letters ORDER BY dead_at, id LIMIT ?", (limit,)
                )
            else:
                rows = conn.execute(
                    "SELECT body FROM dead_letters WHERE (dead_at, id) > (?, ?) "
                    "ORDER BY dead_at, id LIMIT ?",
                    (start[0], start[1], limit),
                )
            return [load_dead_letter(body) for (body,) in rows]

        return await self._db.run(fetch)

    async def purge(self, dead_letter_ids: Sequence[str] | None) -> int:
        """DELETE these rows (None: all)."""
        ids = None if dead_letter_ids is None else list(dead_letter_ids)

        def write(conn: sqlite3.Connection) -> int:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                if ids is None:
                    return conn.execute("DELETE FROM dead_letters").rowcount
                return conn.executemany(
                    "DELETE FROM dead_letters WHERE id = ?", [(i,) for i in ids]
                ).rowcount

        return await self._db.run(write)

    async def count(self) -> int:
        """COUNT(*) of the table."""
        return await self._db.run(
            lambda conn: int(conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])
        )
