"""The AccountStore port on SQLite: two tables in the inbox's database file.

`accounts` holds one row per tenant (the snapshot's JSON, models/account.py); `tenant_stats`
one row per tenant and counter, added to with an upsert. The store opens its own
connection on the inbox's file (WAL: the inbox's writers and this one serialize through
`busy_timeout`, as the ingress replicas and shards already do), so it needs nothing from
the inbox object and the embedded deployment keeps one database file.

`apply` reads, applies (`apply_change`) and writes a tenant's snapshot inside one
`BEGIN IMMEDIATE` transaction, which holds the database's write lock from the read: no
other writer (another shard's change, a refresh's `put`) can come in between.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from adapters.sqlite_db import SqliteDb
from models.account import AccountSnapshot
from models.account_change import AccountChange, apply_change

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    tenant_id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tenant_stats (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
"""


def _load(body: str | bytes) -> AccountSnapshot:
    return AccountSnapshot.model_validate_json(body)


class SqliteAccountStore:
    """AccountStore (adapters/ports.py) in the embedded database at `path`."""

    def __init__(self, path: Path) -> None:
        self._db = SqliteDb(path, SCHEMA)

    async def get(self, tenant_id: str) -> AccountSnapshot | None:
        """See AccountStore."""

        def fetch(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT body FROM accounts WHERE tenant_id = ?", (tenant_id,)
            ).fetchone()
            return None if row is None else str(row[0])

        body = await self._db.run(fetch)
        return None if body is None else _load(body)

    async def get_many(self, tenant_ids: Collection[str]) -> dict[str, AccountSnapshot]:
        """See AccountStore: one SELECT per 500 tenants."""
        wanted = list(tenant_ids)

        def fetch(conn: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT tenant_id, body FROM accounts WHERE tenant_id IN ({marks})",  # noqa: S608 -- placeholders only
                    chunk,
                )
                found.update({str(t): str(b) for t, b in rows})
            return found

        bodies = await self._db.run(fetch) if wanted else {}
        return {tenant: _load(body) for tenant, body in bodies.items()}

    async def put(self, snapshot: AccountSnapshot) -> None:
        """See AccountStore: INSERT OR REPLACE."""
        body = snapshot.model_dump_json()

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT OR REPLACE INTO accounts (tenant_id, body) VALUES (?, ?)",
                    (snapshot.tenant_id, body),
                )

        await self._db.run(write)

    async def apply(self, changes: Sequence[AccountChange]) -> None:
        """See AccountStore: every change in one write transaction (the module docstring)."""
        if not changes:
            return

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                current: dict[str, AccountSnapshot | None] = {}
                for change in changes:
                    tenant = change.tenant_id
                    if tenant not in current:
                        row = conn.execute(
                            "SELECT body FROM accounts WHERE tenant_id = ?", (tenant,)
                        ).fetchone()
                        current[tenant] = None if row is None else _load(row[0])
                    current[tenant] = apply_change(current[tenant], change)
                conn.executemany(
                    "INSERT OR REPLACE INTO accounts (tenant_id, body) VALUES (?, ?)",
                    [(t, s.model_dump_json()) for t, s in current.items() if s is not None],
                )

        await self._db.run(write)

    async def add_counts(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        """See AccountStore: one upsert per counter, one transaction."""
        rows = [(t, name, n) for t, per_name in counts.items() for name, n in per_name.items()]
        if not rows:
            return

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO tenant_stats (tenant_id, name, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (tenant_id, name) DO UPDATE SET value = value + excluded.value",
                    rows,
                )

        await self._db.run(write)

    async def counts(self, tenant_id: str) -> dict[str, int]:
        """See AccountStore."""

        def fetch(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT name, value FROM tenant_stats WHERE tenant_id = ?", (tenant_id,)
            )
            return {str(name): int(value) for name, value in rows}

        return await self._db.run(fetch)

    async def ping(self) -> None:
        """See AccountStore."""
        await self._db.run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        """See AccountStore."""
        await self._db.close()
