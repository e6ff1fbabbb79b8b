"""Production media store: objects in an S3 bucket (or MinIO, SeaweedFS: any S3-compatible
store), stored files under `media/<key>`, rejected ones under `quarantine/<key>`.

boto3 is synchronous, so every network call runs on a worker thread (asyncio.to_thread),
never on the event loop; the client is created once per process that holds the store and is
thread-safe. As in the archive (adapters/archive_s3.py), botocore retries once with short
timeouts: the media pipeline retries with its own budget, and a store that is down must
fail a call in seconds. Every botocore error becomes TransientError, except a key that is
not there (head: None).

A file is sent by one PutObject with the open file as its body (streamed from disk; botocore
rewinds it for its retry), not a multipart upload: Meta's largest media (100 MB) is far
under PutObject's 5 GB, one request is atomic, and a failure leaves no parts behind.

URLs are presigned GETs (SigV4 query signing, a local computation) of `media/<key>` only, so
a quarantined object is never reachable through one. SigV4 signs the Host header, so a URL
must name the host its consumers reach the store by: `public_url` (e.g. MinIO behind a
proxy or another DNS name) gets a second client, used only to presign, never to connect.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from adapters.errors import TransientError
from adapters.media_meta import checked_key, checked_metadata, decode_values, encode_values
from adapters.ports import StoredObject
from models.media import is_tenant_id

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
MAX_URL_TTL_S = 7 * 24 * 3600  # SigV4's longest presigned URL


def _prefix(prefix: str) -> str:
    if not prefix or prefix.startswith("/") or ".." in prefix.split("/"):
        raise ValueError(f"not an object prefix: {prefix!r}")
    return prefix if prefix.endswith("/") else prefix + "/"


class S3MediaStore:
    """The MediaStore port on an S3 bucket."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        public_url: str | None = None,
        media_prefix: str = "media/",
        quarantine_prefix: str = "quarantine/",
    ) -> None:
        """None credentials: boto3's own chain (environment, instance profile). `public_url`:
        the endpoint presigned URLs name (default: `endpoint_url`, then AWS's own)."""
        self._bucket = bucket
        self._media, self._quarantine = _prefix(media_prefix), _prefix(quarantine_prefix)
        if self._media == self._quarantine:
            raise ValueError("the media and quarantine prefixes must differ")
        options: dict[str, Any] = {
            "region_name": region,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "config": Config(
                connect_timeout=5,
                read_timeout=30,  # a 100 MB PUT's answer comes after the whole body
                retries={"max_attempts": 2, "mode": "standard"},
                s3={"addressing_style": "path"},
                signature_version="s3v4",
            ),
        }
        self._client: S3Client = boto3.client("s3", endpoint_url=endpoint_url, **options)
        self._signer: S3Client = (
            self._client
            if public_url is None or public_url == endpoint_url
            else boto3.client("s3", endpoint_url=public_url, **options)
        )

    async def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except (BotoCoreError, ClientError) as exc:
            raise TransientError(f"s3 {what}: {exc}") from exc

    def _put(self, name: str, path: Path, content_type: str, metadata: dict[str, str]) -> None:
        with path.open("rb") as body:
            self._client.put_object(
                Bucket=self._bucket,
                Key=name,
                Body=body,
                ContentType=content_type,
                Metadata=metadata,
            )

    async def put(
        self,
        key: str,
        path: Path,
        content_type: str,
        metadata: Mapping[str, str],
        *,
        quarantine: bool = False,
    ) -> None:
        """One PutObject streamed from `path`; returns once the store answered 200.
        ValueError for a key or metadata name out of their alphabets."""
        prefix = self._quarantine if quarantine else self._media
        name = prefix + checked_key(key)
        values = encode_values(checked_metadata(metadata))
        try:
            await self._call("put", self._put, name, path, content_type, values)
        except OSError as exc:  # the file to send could not be read
            raise TransientError(f"s3 put: {exc}") from exc

    def _head(self, key: str) -> StoredObject | None:
        try:
            reply = self._client.head_object(Bucket=self._bucket, Key=self._media + key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise
        return StoredObject(
            key=key,
            size=reply["ContentLength"],
            content_type=reply.get("ContentType", "application/octet-stream"),
            metadata=decode_values(reply.get("Metadata", {})),
        )

    async def head(self, key: str) -> StoredObject | None:
        """HeadObject of `media/<key>` (never the quarantine); None when absent."""
        found: StoredObject | None = await self._call("head", self._head, checked_key(key))
        return found

    def url(self, key: str, ttl_s: float) -> tuple[str, datetime]:
        """A presigned GET of `media/<key>` on the public endpoint, valid `ttl_s` (whole
        seconds, 1 to 7 days). The expiry returned is counted from before the signature's
        own time, so the URL works at least until then."""
        seconds = math.ceil(ttl_s)
        if not 1 <= seconds <= MAX_URL_TTL_S:
            raise ValueError(f"a presigned URL lives 1 s to {MAX_URL_TTL_S} s, not {ttl_s}")
        signed_at = math.floor(time.time())  # botocore signs with the wall clock
        url = self._signer.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._bucket, "Key": self._media + checked_key(key)},
            ExpiresIn=seconds,
        )
        return url, datetime.fromtimestamp(signed_at + seconds, UTC)

    def _sweep(self, tenant_id: str, older_than: datetime) -> int:
        deleted = 0
        paginator = self._client.get_paginator("list_objects_v2")
        for prefix in (self._media, self._quarantine):
            for page in paginator.paginate(Bucket=self._bucket, Prefix=f"{prefix}{tenant_id}/"):
                old: list[ObjectIdentifierTypeDef] = [
                    {"Key": o["Key"]}
                    for o in page.get("Contents", [])
                    if o["LastModified"] < older_than
                ]
                for start in range(0, len(old), 1000):  # DeleteObjects takes 1,000 at most
                    chunk = old[start : start + 1000]
                    reply = self._client.delete_objects(
                        Bucket=self._bucket, Delete={"Objects": chunk, "Quiet": True}
                    )
                    errors = reply.get("Errors", [])
                    if errors:
                        raise TransientError(f"s3 sweep: {len(errors)} not deleted: {errors[:1]}")
                    deleted += len(chunk)
        return deleted

    async def sweep(self, tenant_id: str, older_than: datetime) -> int:
        """Delete the tenant's objects under both prefixes last modified before
        `older_than` (listed, then DeleteObjects in chunks of 1,000)."""
        if not is_tenant_id(tenant_id):
            raise ValueError(f"not a tenant id: {tenant_id[:64]!r}")
        deleted: int = await self._call("sweep", self._sweep, tenant_id, older_than)
        return deleted

    async def ping(self) -> None:
        """HEAD the bucket."""
        await self._call("ping", lambda: self._client.head_bucket(Bucket=self._bucket))

    async def close(self) -> None:
        """Close the clients' connection pools."""
        await asyncio.to_thread(self._client.close)
        if self._signer is not self._client:
            await asyncio.to_thread(self._signer.close)
