"""Stores an adapter cannot reach, for the contract suites' transient-error cases."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from pathlib import Path

import pytest

from adapters.errors import TransientError

# How long an adapter may take to report an unreachable store. A refused connection fails
# at once and the silent cases use 0.2 s timeouts: this bounds them, it does not measure
# the adapters' own production timeouts (5-10 s).
WITHIN_S = 3.0

UNWRITABLE_DB_KINDS = ("read-only-filesystem", "path-is-a-directory")


def unwritable_db_path(kind: str, tmp_path: Path) -> Path:
    """A database path SQLite cannot open: a file on /proc (which refuses new files, root
    included), or a directory standing where the file should be."""
    if kind == "read-only-filesystem":
        return Path("/proc") / f"watest-{uuid.uuid4().hex[:12]}.db"
    directory = tmp_path / "store.db"
    directory.mkdir()
    return directory


async def fails_transiently(call: Awaitable[object]) -> None:
    """The call raises the project's TransientError (not a vendor's) within WITHIN_S."""
    with pytest.raises(TransientError):
        async with asyncio.timeout(WITHIN_S):
            await call
