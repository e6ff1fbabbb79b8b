"""Embedded publisher: a local SQLite outbox, read with `python -m cluster events tail`.

A tenant's routing rule is recorded as RabbitPublisher applies it: the prefixed routing
key, and the rule's exchange and vhost in their own columns (NULL: the service's),
added to an outbox made by an earlier version when it is first written to."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from adapters.codec import dead_letter_wire, encode_events
from adapters.ports import Rejection, Routes
from adapters.sqlite_db import SqliteDb
from models.dead_letter import DeadLetter
from models.event import NormalizedEvent

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    routing_key TEXT NOT NULL,
    headers BLOB NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dead (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dead_letter_id TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    headers BLOB NOT NULL,
    body BLOB NOT NULL
);
"""


class OutboxPublisher:
    """The Publisher port on a SQLite table: a commit is the broker's confirm."""

    def __init__(self, path: Path, routes: Routes | None = None) -> None:
        """`routes`: each tenant's routing rule (None: the service's for every event)."""
        self._db = SqliteDb(path, _SCHEMA)
        self._routes = routes
        self._routed = False  # the route columns are known to exist

    async def publish(self, events: Sequence[NormalizedEvent]) -> list[Rejection]:
        """Append the events in order, in one transaction; none if any is rejected.

        The rejections are RabbitPublisher's (adapters/codec.py), so an event the broker
        would refuse is refused here too.
        """
        encoded, rejected = encode_events(events, routes=self._routes)
        if rejected:
            return rejected
        rows = [
            (e.routing_key, orjson.dumps(e.headers), e.body, e.exchange, e.vhost) for e in encoded
        ]

        def write(conn: sqlite3.Connection) -> None:
            if not self._routed:
                _add_route_columns(conn)
                self._routed = True
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO outbox (routing_key, headers, body, exchange, vhost) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )

        if rows:
            await self._db.run(write)
        return []

    async def publish_dead(self, letters: Sequence[DeadLetter]) -> list[str]:
        """Append the dead letters to the `dead` table (the dead-letter exchange of the
        embedded default), one transaction; one too large goes without its raw item, one
        that cannot be encoded at all is refused."""
        rows: list[tuple[str, str, bytes, bytes]] = []
        refused: list[str] = []
        for letter in letters:
            try:
                try:
                    wire = dead_letter_wire(letter)
                except ValueError:  # too large: without the raw item (the store keeps it)
                    wire = dead_letter_wire(letter, omit_item=True)
            except MemoryError:
                raise
            except Exception:  # noqa: BLE001 -- refused, as the broker would: stays in the store
                refused.append(letter.dead_letter_id)
                continue
            rows.append(
                (letter.dead_letter_id, wire.routing_key, orjson.dumps(wire.headers), wire.body)
            )

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO dead (dead_letter_id, routing_key, headers, body) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )

        if rows:
            await self._db.run(write)
        return refused

    async def ping(self) -> None:
        """The outbox file opens and answers."""
        await self._db.run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        """Close the connection."""
        await self._db.close()


def _add_route_columns(conn: sqlite3.Connection) -> None:
    """The route columns, added to an outbox an earlier version created without them."""
    known = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
    with conn:
        for column in ("exchange", "vhost"):
            if column not in known:
                conn.execute(f"ALTER TABLE outbox ADD COLUMN {column} TEXT")


def read_outbox(path: Path, after: int = 0, limit: int = 1000) -> Iterator[dict[str, Any]]:
    """Outbox rows after `after` as dicts {seq, routing_key, headers, event}, oldest first,
    with `exchange` and `vhost` when a tenant's routing rule named them."""
    if not path.exists():
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        known = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
        routed = "exchange" in known
        columns = "seq, routing_key, headers, body" + (", exchange, vhost" if routed else "")
        rows = conn.execute(
            f"SELECT {columns} FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",  # noqa: S608
            (after, limit),
        ).fetchall()
    except sqlite3.OperationalError:  # table not created yet: nothing published
        rows = []
    finally:
        conn.close()
    for seq, routing_key, headers, body, *route in rows:
        row: dict[str, Any] = {
            "seq": seq,
            "routing_key": routing_key,
            "headers": orjson.loads(headers),
            "event": orjson.loads(body),
        }
        exchange, vhost = route or (None, None)
        if exchange is not None:
            row["exchange"] = exchange
        if vhost is not None:
            row["vhost"] = vhost
        yield row


def read_dead(path: Path, after: int = 0, limit: int = 1000) -> Iterator[dict[str, Any]]:
    """Rows of the embedded dead-letter exchange (`dead` table) after `after`, as dicts
    {seq, dead_letter_id, routing_key, headers, dead_letter}, oldest first."""
    if not path.exists():
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT seq, dead_letter_id, routing_key, headers, body FROM dead WHERE seq > ? "
            "ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
    except sqlite3.OperationalError:  # table not created yet: nothing dead-lettered
        rows = []
    finally:
        conn.close()
    for seq, dead_letter_id, routing_key, headers, body in rows:
        yield {
            "seq": seq,
            "dead_letter_id": dead_letter_id,
            "routing_key": routing_key,
            "headers": orjson.loads(headers),
            "dead_letter": orjson.loads(body),
        }
