"""The LimiterStateStore port on SQLite: a `limiter_state` table in the inbox's file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from adapters.sqlite_db import SqliteDb

SCHEMA = """
CREATE TABLE IF NOT EXISTS limiter_state (
    tenant_id TEXT PRIMARY KEY,
    body BLOB NOT NULL
);
"""


class SqliteLimiterState:
    """LimiterStateStore (adapters/ports.py) in the embedded database at `path`."""

    def __init__(self, path: Path) -> None:
        self._db = SqliteDb(path, SCHEMA)

    async def get(self, tenant_id: str) -> bytes | None:
        """See LimiterStateStore."""

        def fetch(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT body FROM limiter_state WHERE tenant_id = ?", (tenant_id,)
            ).fetchone()
            return None if row is None else bytes(row[0])

        return await self._db.run(fetch)

    async def put(self, tenant_id: str, state: bytes) -> None:
        """See LimiterStateStore."""

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute(
                    "INSERT OR REPLACE INTO limiter_state (tenant_id, body) VALUES (?, ?)",
                    (tenant_id, state),
                )

        await self._db.run(write)

    async def close(self) -> None:
        """See LimiterStateStore."""
        await self._db.close()
