"""The TenantRegistry port on SQLite: tables in the inbox's database file.

`tenants` holds one row per tenant (Tenant.stored(), secrets in clear: the file is as
trusted as the inbox beside it), `tenants_deleted` the ids deleted through the registry
(seeding never brings them back), `tenants_version` one row, the change counter. The
registry opens its own connection on the inbox's file, as the account store does.

Each write reads the whole set, decides (adapters/tenant_sets.py checks the resulting set)
and writes inside one `BEGIN IMMEDIATE` transaction, which holds the database's write lock
from the read: a concurrent writer (another process's put, a replica seeding) waits for it
through `busy_timeout` and then sees this change. `load` reads inside one read
transaction, a consistent snapshot under WAL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from adapters.sqlite_db import SqliteDb
from adapters.tenant_sets import checked_delete, checked_put, seeded
from models.tenant import Tenant

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tenants_deleted (
    id TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS tenants_version (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    version INTEGER NOT NULL
);
"""


def _version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT version FROM tenants_version WHERE one = 1").fetchone()
    return 0 if row is None else int(row[0])


def _current(conn: sqlite3.Connection) -> dict[str, Tenant]:
    rows = conn.execute("SELECT id, body FROM tenants ORDER BY rowid")
    return {str(tenant_id): Tenant.from_stored(body) for tenant_id, body in rows}


def _bump(conn: sqlite3.Connection) -> int:
    conn.execute(
        "INSERT INTO tenants_version (one, version) VALUES (1, 1) "
        "ON CONFLICT (one) DO UPDATE SET version = version + 1"
    )
    return _version(conn)


class SqliteTenantRegistry:
    """TenantRegistry (adapters/ports.py) in the embedded database at `path`."""

    def __init__(self, path: Path) -> None:
        self._db = SqliteDb(path, SCHEMA)

    async def version(self) -> int:
        """See TenantRegistry."""
        return await self._db.run(_version)

    async def load(self) -> tuple[int, list[Tenant]]:
        """See TenantRegistry: one read transaction."""

        def read(conn: sqlite3.Connection) -> tuple[int, list[Tenant]]:
            with conn:
                conn.execute("BEGIN")
                return _version(conn), list(_current(conn).values())

        return await self._db.run(read)

    async def get(self, tenant_id: str) -> Tenant | None:
        """See TenantRegistry."""

        def fetch(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT body FROM tenants WHERE id = ?", (tenant_id,)).fetchone()
            return None if row is None else str(row[0])

        body = await self._db.run(fetch)
        return None if body is None else Tenant.from_stored(body)

    async def put(self, tenant: Tenant, *, create: bool) -> int:
        """See TenantRegistry: one write transaction."""

        def write(conn: sqlite3.Connection) -> int:
            stored = checked_put(_current(conn), tenant, create=create)
            conn.execute(
                "INSERT INTO tenants (id, body) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                (stored.id, stored.stored().decode()),
            )
            return _bump(conn)

        return await self._write(write)

    async def delete(self, tenant_id: str) -> int:
        """See TenantRegistry: one write transaction."""

        def write(conn: sqlite3.Connection) -> int:
            checked_delete(_current(conn), tenant_id)
            conn.execute("DELETE FROM tenants WHERE id = ?", (tenant_id,))
            conn.execute("INSERT OR IGNORE INTO tenants_deleted (id) VALUES (?)", (tenant_id,))
            return _bump(conn)

        return await self._write(write)

    async def seed(self, tenants: Sequence[Tenant]) -> list[str]:
        """See TenantRegistry: one write transaction (nothing new: no version bump)."""

        def write(conn: sqlite3.Connection) -> list[str]:
            deleted = {str(r[0]) for r in conn.execute("SELECT id FROM tenants_deleted")}
            new = seeded(_current(conn), deleted, tenants)
            if new:
                conn.executemany(
                    "INSERT INTO tenants (id, body) VALUES (?, ?)",
                    [(t.id, t.stored().decode()) for t in new],
                )
                _bump(conn)
            return [t.id for t in new]

        return await self._write(write)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run(conn: sqlite3.Connection) -> T:
            with conn:  # commits, or rolls back on any exception (a refused change)
                conn.execute("BEGIN IMMEDIATE")
                return fn(conn)

        return await self._db.run(run)

    async def ping(self) -> None:
        """See TenantRegistry."""
        await self._db.run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        """See TenantRegistry."""
        await self._db.close()
