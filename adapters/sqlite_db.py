"""A SQLite connection used from async code: one worker thread owns it, WAL mode.

Several processes (ingress replicas, shard actors, the CLI) open the same file; WAL lets
readers and one writer proceed together and `busy_timeout` serializes writers.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from adapters.errors import TransientError

T = TypeVar("T")


class SqliteDb:
    """Runs blocking sqlite3 calls on one dedicated thread, never on the event loop."""

    def __init__(self, path: Path, schema: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._schema = schema
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{path.stem}")
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: a commit is on disk before append() returns, which is the ack point.
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA busy_timeout=30000")
                conn.executescript(self._schema)
            except BaseException:
                # Not a database, locked, or read-only: every call retries the set-up, so a
                # failed one must not leave its connection (a file descriptor) behind.
                conn.close()
                raise
            self._conn = conn
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(connection) on the owner thread; sqlite errors become TransientError."""

        def call() -> T:
            try:
                return fn(self._connect())
            except sqlite3.Error as exc:
                raise TransientError(f"sqlite: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def run_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(connection) on the owner thread from synchronous code (CLI)."""
        return self._executor.submit(lambda: fn(self._connect())).result()

    async def close(self) -> None:
        """Close the connection and stop the thread."""

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=False)
