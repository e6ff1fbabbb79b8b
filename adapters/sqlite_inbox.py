"""Embedded inbox: a SQLite table per installation, used when no Redis is configured.

Dedup marks are rows of `seen (key, expires)`, written in the same transaction as the
items they guard (a delivery) or the commit that published them (an item); expired rows
are ignored at once and deleted at most once a minute, so the table holds one window.

Conversation state (issue 10) is kept the same way: a row of `conversations` per
conversation (the record as compact JSON, adapters/codec.py, beside the columns the
customer look-up is indexed on; `expires` NULL: kept for ever, else one retention after
its last write) and a row of `messages` per message record (expiring after the
message-state TTL), both written by the commit's transaction and purged with the marks.
The `sequences` table of earlier versions is only read, as a fallback for a conversation
without a record, and its row is deleted by the commit that writes the record.

Reads and out-of-order commits: each partition's reader keeps a cursor, the highest id it
has handed out, and reads only above it; ids grow in commit order (one writer at a time),
so no entry appears below it later. An entry this process holds uncommitted while later
ones are committed is therefore never handed out again by it, failed reads included (the
cursor moves only once a read's entries are decoded). A new process (a restart) starts
at 0 and re-reads every uncommitted entry, its `deliveries` counted up.

A batch's order (the shard's crash-consistent republish, adapters/ports.py): a row of
`batch_order (partition, entry_ids)` (the JSON list of ids), upserted in its own
transaction and deleted by the commit's; `entries` selects them by id, leaving the cursor
and the `deliveries` counts alone.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import orjson

from adapters.archive_pending_sqlite import SCHEMA as ARCHIVE_SCHEMA
from adapters.archive_pending_sqlite import SqliteArchivePending, insert_pending, pending_row
from adapters.codec import (
    dump_conversation,
    dump_item,
    dump_message,
    load_conversation,
    load_item,
    load_message,
)
from adapters.errors import Fenced
from adapters.failed_store import FailedStoreMethods
from adapters.ports import (
    ArchiveBacklog,
    Delivery,
    InboxDurability,
    InboxStats,
    PendingArchive,
    StateWrite,
    raw_of,
)
from adapters.sqlite_db import SqliteDb
from adapters.sqlite_dead_letters import SCHEMA as DEAD_LETTER_SCHEMA
from adapters.sqlite_dead_letters import SqliteDeadLetters
from models.archive import RawDelivery
from models.conversation import ConversationRecord, MessageRecord
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
CREATE TABLE IF NOT EXISTS conversations (
    conversation_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    wa_id TEXT,
    user_id TEXT,
    body BLOB NOT NULL,
    expires REAL
);
CREATE INDEX IF NOT EXISTS conversations_wa_id ON conversations (tenant_id, wa_id);
CREATE INDEX IF NOT EXISTS conversations_user_id ON conversations (tenant_id, user_id);
CREATE INDEX IF NOT EXISTS conversations_expires ON conversations (expires);
CREATE TABLE IF NOT EXISTS messages (
    key TEXT PRIMARY KEY,
    body BLOB NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_expires ON messages (expires);
CREATE TABLE IF NOT EXISTS seen (
    key TEXT PRIMARY KEY,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_expires ON seen (expires);
CREATE TABLE IF NOT EXISTS batch_order (
    partition INTEGER PRIMARY KEY,
    entry_ids TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS shard_epochs (
    partition INTEGER PRIMARY KEY,
    epoch INTEGER NOT NULL
);
"""
_PURGE_EVERY_S = 60.0
# A customer's conversations: one indexed search per id, merged (with `wa_id = ? OR
# user_id = ?` SQLite 3.40 searched one index by the tenant alone and filtered all of the
# tenant's rows). An absent id is bound as NULL, and `column = NULL` matches no row.
_FIND = """
SELECT conversation_id, body FROM conversations
WHERE tenant_id = ?1 AND wa_id = ?2 AND (expires IS NULL OR expires > ?4)
UNION
SELECT conversation_id, body FROM conversations
WHERE tenant_id = ?1 AND user_id = ?3 AND (expires IS NULL OR expires > ?4)
ORDER BY conversation_id
"""

_IDLE_POLL_S = (0.002, 0.05)  # sqlite has no blocking read: poll, backing off while idle
# Values per `IN (...)`: SQLite builds before 3.32 allow 999 parameters per statement.
_IN_CHUNK = 500


def _select_in(
    conn: sqlite3.Connection, query: str, values: Sequence[str | int], *leading: object
) -> list[tuple[Any, ...]]:
    """Rows of `query` for every value: its `{marks}` becomes one `?` per value of a chunk,
    bound after `leading`; one statement per chunk of at most _IN_CHUNK values."""
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(values), _IN_CHUNK):
        chunk = values[start : start + _IN_CHUNK]
        statement = query.format(marks=",".join("?" * len(chunk)))  # only '?' interpolated
        rows.extend(conn.execute(statement, (*leading, *chunk)).fetchall())
    return rows


def _pending(raw: RawDelivery | None) -> tuple[int, bytes, bytes] | None:
    """A delivery's `archive_pending` row, encoded before the transaction starts."""
    return None if raw is None else pending_row(raw)


def _customer_ids(record: ConversationRecord) -> tuple[str | None, str | None]:
    """The (wa_id, user_id) `find_conversations` finds the record by: customer
    conversations only, so a group's or a tenant's record is never found."""
    if record.kind != "customer" or record.customer is None:
        return None, None
    return record.customer.wa_id, record.customer.user_id


class SqliteInbox(FailedStoreMethods):
    """The Inbox port on SQLite (WAL). One reader per partition, in this process."""

    def __init__(
        self,
        path: Path,
        window_s: int,
        *,
        retention_s: int | None,
        message_ttl_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`retention_s`: a conversation record expires after this many seconds without a
        write, None: never; `message_ttl_s`: each message record's TTL, from its last
        write. The clock (every expiry: marks, records, messages) is injectable for tests."""
        self._db = SqliteDb(path, _SCHEMA + DEAD_LETTER_SCHEMA + ARCHIVE_SCHEMA)
        self._dead = SqliteDeadLetters(self._db)
        self._archive = SqliteArchivePending(self._db)
        self._window_s = window_s
        self._retention_s = retention_s
        self._message_ttl_s = message_ttl_s
        self._clock = clock
        self._purged_at = 0.0
        # Per-partition cursor: entries above it were handed out and not committed yet.
        # It starts at 0, so a restarted reader re-reads everything left uncommitted.
        self._cursor: dict[int, int] = {}
        # Per partition: the epoch this object claimed (absent: never claimed, unfenced).
        self._epochs: dict[int, int] = {}

    def _check_fence(self, conn: sqlite3.Connection, partition: int) -> None:
        """Raise Fenced if a later claim of the partition exists (inside the caller's
        transaction, so the check and the read or write it guards are one step). A stored
        epoch that is missing or lower (the table restored from a backup) is set back to
        this object's: only a later claim fences."""
        epoch = self._epochs.get(partition)
        if epoch is None:
            return
        row = conn.execute(
            "SELECT epoch FROM shard_epochs WHERE partition = ?", (partition,)
        ).fetchone()
        stored = 0 if row is None else int(row[0])
        if stored > epoch:
            raise Fenced(f"partition {partition}: epoch {stored} claimed since this {epoch}")
        if stored < epoch:
            conn.execute(
                "INSERT INTO shard_epochs (partition, epoch) VALUES (?, ?) "
                "ON CONFLICT (partition) DO UPDATE SET epoch = excluded.epoch",
                (partition, epoch),
            )

    async def claim(self, partition: int) -> int:
        """Bump the partition's row of `shard_epochs`; this object's reads of it start
        again at 0 (every uncommitted entry)."""

        def write(conn: sqlite3.Connection) -> int:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute(
                    "INSERT INTO shard_epochs (partition, epoch) VALUES (?, 1) "
                    "ON CONFLICT (partition) DO UPDATE SET epoch = epoch + 1 RETURNING epoch",
                    (partition,),
                ).fetchone()
            return int(row[0])

        epoch = await self._db.run(write)
        self._epochs[partition] = epoch
        self._cursor.pop(partition, None)
        return epoch

    def _mark(self, conn: sqlite3.Connection, key: str, now: float) -> bool:
        """Mark a key seen unless a live mark exists (inside the caller's transaction)."""
        conn.execute("DELETE FROM seen WHERE key = ? AND expires <= ?", (key, now))
        cursor = conn.execute(
            "INSERT OR IGNORE INTO seen (key, expires) VALUES (?, ?)", (key, now + self._window_s)
        )
        return cursor.rowcount == 1

    def _purge(self, conn: sqlite3.Connection, now: float) -> None:
        if now - self._purged_at >= _PURGE_EVERY_S:
            conn.execute("DELETE FROM seen WHERE expires <= ?", (now,))
            conn.execute("DELETE FROM conversations WHERE expires <= ?", (now,))
            conn.execute("DELETE FROM messages WHERE expires <= ?", (now,))
            self._purged_at = now

    async def append_deliveries(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """One transaction: per delivery, mark its key or skip it as a duplicate; a new
        delivery's raw body (when it carries one) goes into `archive_pending` with its items."""
        encoded = [
            (d[0], [(i.partition, dump_item(i)) for i in d[1]], _pending(raw_of(d)))
            for d in deliveries
        ]

        def write(conn: sqlite3.Connection) -> list[bool]:
            now = self._clock()
            stored: list[bool] = []
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                for key, rows, raw in encoded:
                    fresh = self._mark(conn, key, now)
                    if fresh:
                        conn.executemany("INSERT INTO inbox (partition, body) VALUES (?, ?)", rows)
                        if raw is not None:
                            insert_pending(conn, raw)
                    stored.append(fresh)
            return stored

        return await self._db.run(write) if encoded else []

    async def seen(self, keys: Collection[str]) -> set[str]:
        """The keys with a live mark."""
        wanted = list(keys)

        def fetch(conn: sqlite3.Connection) -> set[str]:
            query = "SELECT key FROM seen WHERE expires > ? AND key IN ({marks})"
            return {row[0] for row in _select_in(conn, query, wanted, self._clock())}

        return await self._db.run(fetch) if wanted else set()

    async def read(self, partition: int, count: int, block_ms: int) -> list[StoredItem]:
        """Uncommitted entries of a partition above this reader's cursor, oldest first."""
        cursor = self._cursor.get(partition, 0)

        def select(conn: sqlite3.Connection) -> list[tuple[int, bytes, int]]:
            rows: list[tuple[int, bytes, int]] = conn.execute(
                "SELECT id, body, deliveries FROM inbox WHERE partition = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                (partition, cursor, count),
            ).fetchall()
            return rows

        def fetch(conn: sqlite3.Connection) -> list[tuple[int, bytes, int]]:
            if partition in self._epochs:
                # Fenced: the check and the hand-over in one transaction, taken only when
                # there is something to hand over (a probe without the lock while idle).
                probe = conn.execute(
                    "SELECT 1 FROM inbox WHERE partition = ? AND id > ? LIMIT 1",
                    (partition, cursor),
                ).fetchone()
                if probe is None:
                    return []
                with conn:
                    conn.execute("BEGIN IMMEDIATE")
                    self._check_fence(conn, partition)
                    return take(conn)
            return take(conn)

        def take(conn: sqlite3.Connection) -> list[tuple[int, bytes, int]]:
            rows = select(conn)
            if not rows:
                return rows
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
        stored = [
            StoredItem(entry_id=str(row_id), item=load_item(body), deliveries=deliveries + 1)
            for row_id, body, deliveries in rows
        ]
        if rows:  # only once decoded: a failure leaves the entries to be read again
            self._cursor[partition] = rows[-1][0]
        return stored

    async def commit(
        self,
        partition: int,
        entry_ids: Sequence[str],
        state: StateWrite,
        seen: Collection[str] = (),
    ) -> None:
        """Delete the entries and the partition's recorded order, upsert the conversation
        and message records, delete the records' superseded legacy sequences and store the
        marks: one transaction."""
        ids = [(int(entry_id),) for entry_id in entry_ids]
        keys = list(seen)
        records = [
            (cid, record.tenant_id, *_customer_ids(record), dump_conversation(record))
            for cid, record in state.conversations.items()
        ]
        messages = [(key, dump_message(record)) for key, record in state.messages.items()]

        def write(conn: sqlite3.Connection) -> None:
            now = self._clock()
            expires = now + self._retention_s if self._retention_s is not None else None
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                self._check_fence(conn, partition)
                conn.executemany(
                    "INSERT INTO seen (key, expires) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET expires = excluded.expires",
                    [(key, now + self._window_s) for key in keys],
                )
                self._purge(conn, now)
                conn.executemany("DELETE FROM inbox WHERE id = ?", ids)
                conn.execute("DELETE FROM batch_order WHERE partition = ?", (partition,))
                conn.executemany(
                    "INSERT INTO conversations "
                    "(conversation_id, tenant_id, wa_id, user_id, body, expires) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (conversation_id) DO UPDATE SET "
                    "tenant_id = excluded.tenant_id, wa_id = excluded.wa_id, "
                    "user_id = excluded.user_id, body = excluded.body, expires = excluded.expires",
                    [(*row, expires) for row in records],
                )
                conn.executemany(
                    "DELETE FROM sequences WHERE conversation_id = ?", [(r[0],) for r in records]
                )
                conn.executemany(
                    "INSERT INTO messages (key, body, expires) VALUES (?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET body = excluded.body, "
                    "expires = excluded.expires",
                    [(*row, now + self._message_ttl_s) for row in messages],
                )

        await self._db.run(write)

    async def record_order(self, partition: int, entry_ids: Sequence[str]) -> None:
        """Upsert the partition's row of `batch_order`: one transaction, fsynced (FULL)."""
        body = orjson.dumps(list(entry_ids)).decode()

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                self._check_fence(conn, partition)
                conn.execute(
                    "INSERT INTO batch_order (partition, entry_ids) VALUES (?, ?) "
                    "ON CONFLICT (partition) DO UPDATE SET entry_ids = excluded.entry_ids",
                    (partition, body),
                )

        await self._db.run(write)

    async def recorded_order(self, partition: int) -> list[str]:
        """The partition's row of `batch_order`, [] without one."""

        def fetch(conn: sqlite3.Connection) -> list[str]:
            row = conn.execute(
                "SELECT entry_ids FROM batch_order WHERE partition = ?", (partition,)
            ).fetchone()
            return [] if row is None else [str(entry_id) for entry_id in orjson.loads(row[0])]

        return await self._db.run(fetch)

    async def entries(self, partition: int, entry_ids: Sequence[str]) -> list[StoredItem]:
        """The partition's rows with these ids, in the order given: a SELECT only, so the
        reader's cursor and the rows' `deliveries` counts stay as they were."""
        wanted = [int(entry_id) for entry_id in entry_ids]

        def fetch(conn: sqlite3.Connection) -> dict[int, bytes]:
            query = "SELECT id, body FROM inbox WHERE partition = ? AND id IN ({marks})"
            return {row_id: body for row_id, body in _select_in(conn, query, wanted, partition)}

        bodies = await self._db.run(fetch) if wanted else {}
        return [
            StoredItem(entry_id=str(row_id), item=load_item(bodies[row_id]), deliveries=2)
            for row_id in wanted
            if row_id in bodies
        ]

    async def conversations(
        self, conversation_ids: Collection[str]
    ) -> dict[str, ConversationRecord]:
        """Live records; a conversation without one falls back to a legacy sequence."""
        wanted = list(conversation_ids)

        def fetch(conn: sqlite3.Connection) -> dict[str, ConversationRecord]:
            query = (
                "SELECT conversation_id, body FROM conversations "
                "WHERE (expires IS NULL OR expires > ?) AND conversation_id IN ({marks})"
            )
            found = {
                cid: load_conversation(body)
                for cid, body in _select_in(conn, query, wanted, self._clock())
            }
            rest = [cid for cid in wanted if cid not in found]
            query = "SELECT conversation_id, seq FROM sequences WHERE conversation_id IN ({marks})"
            for cid, seq in _select_in(conn, query, rest):
                found[cid] = ConversationRecord.legacy(cid, int(seq))
            return found

        return await self._db.run(fetch) if wanted else {}

    async def messages(self, keys: Collection[str]) -> dict[str, MessageRecord]:
        """Live message records."""
        wanted = list(keys)

        def fetch(conn: sqlite3.Connection) -> dict[str, MessageRecord]:
            query = "SELECT key, body FROM messages WHERE expires > ? AND key IN ({marks})"
            rows = _select_in(conn, query, wanted, self._clock())
            return {key: load_message(body) for key, body in rows}

        return await self._db.run(fetch) if wanted else {}

    async def find_conversations(
        self, tenant_id: str, *, wa_id: str | None = None, user_id: str | None = None
    ) -> list[ConversationRecord]:
        """Live customer records of the tenant by wa_id or user_id (both indexed)."""
        if wa_id is None and user_id is None:
            return []

        def fetch(conn: sqlite3.Connection) -> list[ConversationRecord]:
            rows = conn.execute(_FIND, (tenant_id, wa_id, user_id, self._clock())).fetchall()
            return [load_conversation(body) for _, body in rows]

        return await self._db.run(fetch)

    async def append_replayed(self, items: Sequence[InboxItem]) -> None:
        """See Inbox (adapters/archive_pending_sqlite.py): one transaction, no mark."""
        await self._archive.append_replayed(items)

    async def archive_pending(self, limit: int) -> list[PendingArchive]:
        """See Inbox: the oldest rows of `archive_pending`."""
        return await self._archive.pending(limit)

    async def archive_done(self, entry_ids: Sequence[str]) -> None:
        """See Inbox: delete the rows."""
        await self._archive.done(entry_ids)

    async def archive_backlog(self) -> ArchiveBacklog:
        """See Inbox."""
        return await self._archive.backlog()

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

    async def durability(self) -> InboxDurability:
        """The connection's journal mode and synchronous level, as SQLite reports them.

        FULL (2) or EXTRA (3) fsyncs each commit before it returns; lower would not.
        """

        def read(conn: sqlite3.Connection) -> tuple[str, int]:
            return (
                str(conn.execute("PRAGMA journal_mode").fetchone()[0]),
                int(conn.execute("PRAGMA synchronous").fetchone()[0]),
            )

        journal, synchronous = await self._db.run(read)
        unsafe = () if synchronous >= 2 else (f"PRAGMA synchronous={synchronous}: not fsynced",)
        return InboxDurability(
            store=f"sqlite {sqlite3.sqlite_version}",
            settings=(("journal_mode", journal), ("synchronous", str(synchronous))),
            unsafe=unsafe,
        )

    async def stats(self) -> InboxStats:
        """Live rows of `seen` (the marks) and the file's pages in use; no memory limit."""

        def read(conn: sqlite3.Connection) -> InboxStats:
            marks = conn.execute("SELECT COUNT(*) FROM seen WHERE expires > ?", (self._clock(),))
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            return InboxStats(
                expiring_keys=int(marks.fetchone()[0]),
                used_memory_bytes=int(pages) * int(page_size),
                max_memory_bytes=None,
            )

        return await self._db.run(read)

    async def close(self) -> None:
        """Close the connection."""
        await self._db.close()
