"""Production archive: one gzip object per delivery and tenant in an S3 bucket (or MinIO,
SeaweedFS: any S3-compatible store).

Keys follow models/archive.py: `archive/<tenant>/<yyyy>/<mm>/<dd>/<delivery_id>`. boto3 is
synchronous, so every call runs on a worker thread (asyncio.to_thread), never on the event
loop; the client is created once per process that holds the adapter and is thread-safe.
botocore's own retries are cut to one retry with short timeouts: the archiver retries with
its own backoff, and a store that is down must fail a call in seconds, not hang the loop's
thread pool. Every botocore error becomes TransientError (retried later), except a key
that is not there (get: None).

Retention is the archiver's sweep (a listing by day prefix, whole days deleted in batches of
1,000), not a lifecycle rule: lifecycle expirations count in whole days and the test server
(SeaweedFS) accepts the rule without expiring objects on the retention's timescale.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

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

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

_DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


class S3Archive:
    """The Archive port on an S3 bucket."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
    ) -> None:
        """None credentials: boto3's own chain (environment, instance profile)."""
        self._bucket = bucket
        self._client: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(
                connect_timeout=5,
                read_timeout=15,
                retries={"max_attempts": 2, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )

    async def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except (BotoCoreError, ClientError) as exc:
            raise TransientError(f"s3 {what}: {exc}") from exc

    def _put(self, delivery: RawDelivery) -> None:
        blob = pack(delivery)
        for tenant_id in delivery.tenants:
            self._client.put_object(
                Bucket=self._bucket,
                Key=archive_key(tenant_id, delivery.delivery_id),
                Body=blob,
                ContentType="application/gzip",
            )

    async def put(self, delivery: RawDelivery) -> None:
        """One PUT per tenant; returns once every PUT answered."""
        await self._call("put", self._put, delivery)

    def _keys(self, prefix: str) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def _children(self, prefix: str) -> list[str]:
        """The next level of `prefix` (its "folders"), listed with a delimiter."""
        paginator = self._client.get_paginator("list_objects_v2")
        found: list[str] = []
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix, Delimiter="/"):
            found += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        return found

    def _get(self, delivery_id: str) -> RawDelivery | None:
        day = received_day(delivery_id)
        if day is None:
            return None
        for tenant_prefix in self._children(f"{ARCHIVE_PREFIX}/"):
            tenant_id = tenant_prefix[len(ARCHIVE_PREFIX) + 1 : -1]
            try:
                reply = self._client.get_object(
                    Bucket=self._bucket, Key=day_prefix(tenant_id, day) + delivery_id
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _MISSING:
                    continue
                raise
            try:
                return unpack(reply["Body"].read())
            except ArchiveFormatError as exc:
                raise TransientError(f"s3 get: {exc}") from exc
        return None

    async def get(self, delivery_id: str) -> RawDelivery | None:
        """A GET under each tenant prefix (one listing of them) until one is found."""
        found: RawDelivery | None = await self._call("get", self._get, delivery_id)
        return found

    def _ids(self, tenant_id: str, start: datetime, end: datetime) -> list[str]:
        low, high = ms_of(start), ms_of(end)
        found: list[tuple[int, str]] = []
        for day in days(start, end):
            for key in self._keys(day_prefix(tenant_id, day)):
                name = key.rsplit("/", 1)[-1]
                ms = received_ms(name)
                if ms is not None and low <= ms < high:
                    found.append((ms, name))
        return [name for _, name in sorted(found)]

    async def delivery_ids(self, tenant_id: str, start: datetime, end: datetime) -> list[str]:
        """One listing per day of the range, filtered by the time the ids carry."""
        ids: list[str] = await self._call("list", self._ids, tenant_id, start, end)
        return ids

    def _delete(self, keys: list[str]) -> int:
        for i in range(0, len(keys), _DELETE_BATCH):
            chunk: list[ObjectIdentifierTypeDef] = [
                {"Key": key} for key in keys[i : i + _DELETE_BATCH]
            ]
            self._client.delete_objects(Bucket=self._bucket, Delete={"Objects": chunk})
        return len(keys)

    def _sweep(self, before: datetime) -> int:
        cutoff, cutoff_day = ms_of(before), days(before, before)[0]
        deleted = 0
        for tenant in self._children(f"{ARCHIVE_PREFIX}/"):
            for year in self._children(tenant):
                for month in self._children(year):
                    for day_prefix_ in self._children(month):
                        parts = day_prefix_.rstrip("/").rsplit("/", 3)[-3:]
                        if not all(p.isdigit() for p in parts):
                            continue
                        whole = tuple(int(p) for p in parts) < (
                            cutoff_day.year,
                            cutoff_day.month,
                            cutoff_day.day,
                        )
                        keys = [
                            key
                            for key in self._keys(day_prefix_)
                            if whole or (received_ms(key.rsplit("/", 1)[-1]) or cutoff) < cutoff
                        ]
                        deleted += self._delete(keys)
        return deleted

    async def sweep(self, before: datetime) -> int:
        """Walk tenants, years, months and days by delimiter listings; delete the days
        before `before`'s whole and that day's older objects."""
        deleted: int = await self._call("sweep", self._sweep, before)
        return deleted

    async def ping(self) -> None:
        """HEAD the bucket."""
        await self._call("ping", lambda: self._client.head_bucket(Bucket=self._bucket))

    async def close(self) -> None:
        """Close the client's connection pool."""
        await asyncio.to_thread(self._client.close)
