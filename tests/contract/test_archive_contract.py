"""One suite, both Archive adapters: the embedded folder and S3 (a real SeaweedFS server,
tests/support/s3_server.py, a bucket per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.archive_local import LocalArchive
from adapters.archive_s3 import S3Archive
from adapters.errors import TransientError
from adapters.ports import Archive
from models.archive import RawDelivery, archive_key, new_delivery_id
from tests.support.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server

T0 = datetime(2026, 3, 9, 23, 59, 58, 123456, tzinfo=UTC)
# Bytes a JSON re-encoding would change: key order, spacing, escapes, a non-ASCII text.
BODY = b'{"object":"whatsapp_business_account", "entry":[{"z":1,"a":"\\u00e9 caf\xc3\xa9"}]}\n'


def raw(at: datetime, *tenants: str, body: bytes = BODY) -> RawDelivery:
    """A delivery received at `at`, filed under `tenants` (default: acme)."""
    filed = tenants or ("acme",)
    return RawDelivery(
        delivery_id=new_delivery_id(at),
        received_at=at,
        tenants=filed,
        signed_by=filed,
        owners=(("1650555", None, filed[0]), (None, "waba-1", filed[0])),
        signature="sha256=" + "ab" * 32,
        body=body,
    )


def s3_archive(server: S3Server, bucket: str, secret: str = SECRET_ACCESS_KEY) -> S3Archive:
    """The S3 adapter on the test server's bucket."""
    return S3Archive(
        bucket,
        endpoint_url=server.endpoint_url,
        region=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=secret,
    )


@pytest.fixture(params=["folder", "s3"])
async def archive(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Archive]:
    """Each adapter over a fresh store."""
    made: Archive
    if request.param == "folder":
        made = LocalArchive(tmp_path / "data")
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        made = s3_archive(server, request.getfixturevalue("s3_bucket"))
    yield made
    await made.close()


async def test_a_delivery_comes_back_byte_for_byte_with_what_it_was_accepted_with(
    archive: Archive,
) -> None:
    """get returns the body exactly as stored and every header field."""
    delivery = raw(T0)
    await archive.put(delivery)
    assert await archive.get(delivery.delivery_id) == delivery


async def test_an_unknown_or_foreign_id_is_not_found(archive: Archive) -> None:
    """An id never stored, and a string that is no delivery id, both give None."""
    await archive.put(raw(T0))
    assert await archive.get(new_delivery_id(T0)) is None
    assert await archive.get("not-a-delivery-id") is None
    assert await archive.get("0" * 32) is None


async def test_a_delivery_of_several_tenants_is_filed_under_each(archive: Archive) -> None:
    """Each tenant's listing holds it; other tenants' do not."""
    delivery = raw(T0, "acme", "globex")
    await archive.put(delivery)
    window = (T0 - timedelta(seconds=1), T0 + timedelta(seconds=1))
    assert await archive.delivery_ids("acme", *window) == [delivery.delivery_id]
    assert await archive.delivery_ids("globex", *window) == [delivery.delivery_id]
    assert await archive.delivery_ids("initech", *window) == []
    assert await archive.get(delivery.delivery_id) == delivery


async def test_listing_is_the_half_open_range_in_received_order_across_days(
    archive: Archive,
) -> None:
    """[start, end) by receipt time, across a day boundary, oldest first."""
    times = [T0 + timedelta(seconds=s) for s in (3, 0, 1, 2, 5)]  # 2026-03-09 → 2026-03-10
    stored = {at: raw(at) for at in times}
    for delivery in stored.values():
        await archive.put(delivery)
    got = await archive.delivery_ids("acme", T0 + timedelta(seconds=1), T0 + timedelta(seconds=5))
    assert got == [stored[T0 + timedelta(seconds=s)].delivery_id for s in (1, 2, 3)]


async def test_writing_a_delivery_again_changes_nothing(archive: Archive) -> None:
    """put is idempotent: one object, the same bytes (the archiver may write twice)."""
    delivery = raw(T0)
    await archive.put(delivery)
    await archive.put(delivery)
    window = (T0, T0 + timedelta(seconds=1))
    assert await archive.delivery_ids("acme", *window) == [delivery.delivery_id]
    assert await archive.get(delivery.delivery_id) == delivery


async def test_sweep_deletes_what_was_received_before_the_cutoff_and_keeps_the_rest(
    archive: Archive,
) -> None:
    """Older days go whole, the cutoff's day one by one; the count is of objects."""
    old_day = raw(T0 - timedelta(days=3), "acme", "globex")  # two objects
    same_day_old = raw(T0 - timedelta(seconds=5))
    same_day_new = raw(T0)
    next_day = raw(T0 + timedelta(days=1))
    for delivery in (old_day, same_day_old, same_day_new, next_day):
        await archive.put(delivery)
    assert await archive.sweep(T0 - timedelta(seconds=1)) == 3
    assert await archive.get(old_day.delivery_id) is None
    assert await archive.get(same_day_old.delivery_id) is None
    assert await archive.get(same_day_new.delivery_id) == same_day_new
    assert await archive.get(next_day.delivery_id) == next_day
    assert await archive.sweep(T0 - timedelta(seconds=1)) == 0


async def test_an_empty_archive_answers(archive: Archive) -> None:
    """ping, listing and sweep work before anything was written."""
    await archive.ping()
    assert await archive.delivery_ids("acme", T0, T0 + timedelta(days=2)) == []
    assert await archive.sweep(T0) == 0


def test_the_key_is_tenant_then_the_received_day_then_the_id() -> None:
    """archive/<tenant>/<yyyy>/<mm>/<dd>/<delivery_id>, the day of receipt in UTC."""
    delivery = raw(T0)
    assert archive_key("acme", delivery.delivery_id) == (
        f"archive/acme/2026/03/09/{delivery.delivery_id}"
    )


Unreachable = Callable[[], Archive]


@pytest.fixture(params=["folder", "s3"])
def unreachable(request: pytest.FixtureRequest, tmp_path: Path, closed_port: int) -> Unreachable:
    """An adapter whose store cannot be written: the folder's root is a file; S3 refuses
    connections."""
    if request.param == "folder":
        root = tmp_path / "file"
        root.write_bytes(b"")
        return lambda: LocalArchive(root)
    return lambda: S3Archive(
        "wa-test-bucket",
        endpoint_url=f"http://127.0.0.1:{closed_port}",
        region=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )


async def test_a_store_that_cannot_be_written_fails_transiently(unreachable: Unreachable) -> None:
    """Every call raises TransientError (the archiver retries later), none hangs."""
    archive = unreachable()
    with pytest.raises(TransientError):
        await archive.put(raw(T0))
    with pytest.raises(TransientError):
        await archive.ping()
    await archive.close()


async def test_s3_checks_the_signature(s3_server: S3Server, s3_bucket: str) -> None:
    """A wrong secret key is refused by the server (TransientError), as S3 does."""
    wrong = s3_archive(s3_server, s3_bucket, secret="not-the-secret")
    with pytest.raises(TransientError, match="SignatureDoesNotMatch"):
        await wrong.put(raw(T0))
    await wrong.close()
    right = s3_archive(s3_server, s3_bucket)
    assert await right.get(raw(T0).delivery_id) is None
    await right.close()
