"""Embedded archive: one gzip file per delivery and tenant under a local folder.

The layout is the S3 one (models/archive.py) below the root (`WA_DATA_DIR`):
`<root>/archive/<tenant>/<yyyy>/<mm>/<dd>/<delivery_id>`. A write goes to a hidden
temporary file in the day's folder, is fsynced, renamed over the final name and the
folder fsynced, so a crash leaves either the whole object or none (a leftover temporary
file is ignored by every listing and removed by the sweep). Blocking file calls run on a
worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from datetime import datetime
from pathlib import Path

from adapters.archive_codec import ArchiveFormatError, pack, unpack
from adapters.errors import TransientError
from models.archive import (
    ARCHIVE_PREFIX,
    RawDelivery,
    archive_key,
    day_prefix,
    days,
    ms_of,
    received_day,
    received_ms,
)

_TMP = ".tmp-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalArchive:
    """The Archive port on a local folder."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._base = root / ARCHIVE_PREFIX

    def _write(self, delivery: RawDelivery) -> None:
        blob = pack(delivery)
        for tenant_id in delivery.tenants:
            path = self._root / archive_key(tenant_id, delivery.delivery_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{_TMP}{uuid.uuid4().hex}")
            with tmp.open("wb") as out:
                out.write(blob)
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(path)
            _fsync_dir(path.parent)

    async def put(self, delivery: RawDelivery) -> None:
        """Write (fsynced, renamed into place) one file per tenant."""
        try:
            await asyncio.to_thread(self._write, delivery)
        except OSError as exc:
            raise TransientError(f"archive folder: {exc}") from exc

    def _find(self, delivery_id: str) -> RawDelivery | None:
        day = received_day(delivery_id)
        if day is None or not self._base.is_dir():
            return None
        for tenant in sorted(self._base.iterdir()):
            path = self._root / day_prefix(tenant.name, day) / delivery_id
            if path.is_file():
                return unpack(path.read_bytes())
        return None

    async def get(self, delivery_id: str) -> RawDelivery | None:
        """The first tenant folder's file for the id's day; None if there is none."""
        try:
            return await asyncio.to_thread(self._find, delivery_id)
        except (OSError, ArchiveFormatError) as exc:
            raise TransientError(f"archive folder: {exc}") from exc

    def _ids(self, tenant_id: str, start: datetime, end: datetime) -> list[str]:
        low, high = ms_of(start), ms_of(end)
        found: list[tuple[int, str]] = []
        for day in days(start, end):
            folder = self._root / day_prefix(tenant_id, day)
            names = os.listdir(folder) if folder.is_dir() else []
            for name in names:
                ms = received_ms(name)
                if ms is not None and low <= ms < high:
                    found.append((ms, name))
        return [name for _, name in sorted(found)]

    async def delivery_ids(self, tenant_id: str, start: datetime, end: datetime) -> list[str]:
        """The files of each day in the range, by the time their ids carry."""
        try:
            return await asyncio.to_thread(self._ids, tenant_id, start, end)
        except OSError as exc:
            raise TransientError(f"archive folder: {exc}") from exc

    def _sweep(self, before: datetime) -> int:
        cutoff, cutoff_day = ms_of(before), received_day_of(before)
        deleted = 0
        for day_dir in self._base.glob("*/*/*/*"):
            _, year, month, day = day_dir.relative_to(self._base).parts
            if not (year.isdigit() and month.isdigit() and day.isdigit()):
                continue
            if (int(year), int(month), int(day)) < cutoff_day:
                deleted += sum(1 for f in day_dir.iterdir() if not f.name.startswith(_TMP))
                shutil.rmtree(day_dir)
                continue
            for path in day_dir.iterdir():
                ms = received_ms(path.name)
                if ms is not None and ms < cutoff:
                    path.unlink(missing_ok=True)
                    deleted += 1
        for folder in sorted(self._base.glob("*/*/*"), reverse=True):  # months, emptied
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        return deleted

    async def sweep(self, before: datetime) -> int:
        """Whole days before `before`'s day removed; that day's older files one by one."""
        if not self._base.is_dir():
            return 0
        try:
            return await asyncio.to_thread(self._sweep, before)
        except OSError as exc:
            raise TransientError(f"archive folder: {exc}") from exc

    async def ping(self) -> None:
        """The root exists (created if need be) and is a writable folder."""

        def check() -> None:
            self._base.mkdir(parents=True, exist_ok=True)
            if not os.access(self._base, os.W_OK):
                raise PermissionError(f"{self._base} is not writable")

        try:
            await asyncio.to_thread(check)
        except OSError as exc:
            raise TransientError(f"archive folder: {exc}") from exc

    async def close(self) -> None:
        """Nothing to release."""


def received_day_of(moment: datetime) -> tuple[int, int, int]:
    """(year, month, day) of a moment's UTC day, as the folders name it."""
    day = days(moment, moment)[0]
    return day.year, day.month, day.day
