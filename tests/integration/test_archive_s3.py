"""The raw-delivery archive on real services: the ingress on the real Redis (a key prefix
per test), the archiver writing to a SeaweedFS S3 server of the test's own (stopped and
started by pid for the outage), and `deliveries show` / `replay` configured by WA_S3_*."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import orjson
import pytest

from actors.archiver import Archiver, ArchiverConfig
from adapters.archive_s3 import S3Archive
from adapters.ports import Archive, Inbox
from ingress.app import IngressDeps, create_app
from ingress.archive_health import archive_backlog_check
from models.tenant import TenantDirectory
from tests.conftest import REDIS_URL
from tests.support.app import signed, tenant
from tests.support.bodies import envelope, messages_value, text_message
from tests.support.configs import ingress_config, redis_inbox
from tests.support.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server, own_s3

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]


class Counts:
    """ArchiverMetrics as plain counters."""

    def __init__(self) -> None:
        self.confirmed = self.failures = 0

    def archived(self, count: int) -> None:
        self.confirmed += count

    def failed(self) -> None:
        self.failures += 1

    def backlog(self, deliveries: int) -> None:
        """Not needed here."""

    def swept(self, count: int) -> None:
        """Not needed here."""


def body_of(wamid: str) -> bytes:
    """A webhook body with one text message, pretty-printed (not what a re-encoding gives)."""
    value = messages_value([text_message(wamid, "16505550001")])
    return orjson.dumps(envelope(("messages", value)), option=orjson.OPT_INDENT_2)


def s3_of(server: S3Server, bucket: str) -> S3Archive:
    """The S3 adapter on the server's bucket."""
    return S3Archive(
        bucket,
        endpoint_url=server.endpoint_url,
        region=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )


@pytest.fixture
async def own_server(tmp_path: Path) -> AsyncIterator[S3Server]:
    """An S3 server of this test only (it is stopped and started again)."""
    with own_s3(tmp_path / "s3") as server:
        yield server


async def wait_for(
    condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60.0
) -> None:
    """Poll an async predicate until true; fail naming `what` after a generous deadline."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.05)


async def post(client: httpx.AsyncClient, body: bytes) -> str:
    """POST a signed body; its delivery id (the 200 is asserted)."""
    raw, headers = signed(body)
    reply = await client.post("/webhook", content=raw, headers=headers)
    assert reply.status_code == 200, reply.text
    delivery_id: str = reply.json()["delivery_id"]
    return delivery_id


async def test_bodies_reach_s3_survive_its_outage_and_drain_after(
    own_server: S3Server, redis_prefix: str
) -> None:
    """Acknowledged while S3 is down (the webhook never waits for it), kept in Redis and
    reported degraded by /readyz, written once S3 is back, byte for byte."""
    bucket = own_server.create_bucket()
    inbox: Inbox = redis_inbox(redis_prefix)
    archive: Archive = s3_of(own_server, bucket)
    readiness = archive_backlog_check(inbox, 60, clock=lambda: time.time() + 61)
    deps = IngressDeps(
        ingress_config(partitions=2),
        TenantDirectory([tenant()]),
        inbox,
        ready_checks={"archive": readiness},
    )
    config = ArchiverConfig(64, 0.02, 0.2, 7 * 24 * 3600, 3600.0, 60.0)
    counts = Counts()
    archiver = Archiver(config, redis_inbox(redis_prefix), s3_of(own_server, bucket), counts)
    loop = asyncio.create_task(archiver.run())
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        before = await post(client, body_of("wamid.before"))
        await wait_for(lambda: _got(archive, before), "the first body archived")
        own_server.stop()
        bodies = [body_of(f"wamid.during.{n}") for n in range(3)]
        during = [await post(client, body) for body in bodies]
        await wait_for(lambda: _at_least(counts, 2), "failed archive writes while S3 is down")
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["archive"].startswith("degraded: 3 raw deliveries")
        own_server.start()
        await wait_for(lambda: _drained(inbox), "the backlog drained once S3 is back")
        ready = await client.get("/readyz")
        assert ready.json()["checks"]["archive"] == "ok"
    archiver.stop()
    await loop
    for body, delivery_id in zip(bodies, during, strict=True):
        found = await archive.get(delivery_id)
        assert found is not None
        assert found.body == body
    assert counts.confirmed == 4
    await asyncio.gather(inbox.close(), archive.close(), archiver.close())


async def _got(archive: Archive, delivery_id: str) -> bool:
    return await archive.get(delivery_id) is not None


async def _at_least(counts: Counts, failures: int) -> bool:
    return counts.failures >= failures


async def _drained(inbox: Inbox) -> bool:
    return (await inbox.archive_backlog()).deliveries == 0


def cli(env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    """`python -m cluster ...` configured by `env_extra` only (no other WA_ variable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    return subprocess.run(
        [sys.executable, "-m", "cluster", *args],
        cwd=ROOT,
        env={**env, **env_extra},
        capture_output=True,
        timeout=120,
        check=False,
    )


async def test_the_cli_shows_and_replays_from_s3(
    s3_server: S3Server, s3_bucket: str, redis_prefix: str, tmp_path: Path
) -> None:
    """WA_S3_* select the S3 archive: `deliveries show` prints the archived bytes and
    `replay` appends the items again to the Redis inbox."""
    inbox = redis_inbox(redis_prefix)
    deps = IngressDeps(ingress_config(partitions=2), TenantDirectory([tenant()]), inbox)
    transport = httpx.ASGITransport(app=create_app(deps))
    body = body_of("wamid.cli")
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        delivery_id = await post(client, body)
    archive = s3_of(s3_server, s3_bucket)
    config = ArchiverConfig(64, 0.02, 0.2, 7 * 24 * 3600, 3600.0, 60.0)
    assert await Archiver(config, inbox, archive, Counts()).step() == 1
    env = {
        "WA_DATA_DIR": str(tmp_path),
        "WA_REDIS_URL": REDIS_URL,
        "WA_REDIS_PREFIX": redis_prefix,
        "WA_SHARDS": "2",
        "WA_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "WA_S3_BUCKET": s3_bucket,
        "WA_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "WA_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "WA_S3_REGION": REGION,
    }
    shown = cli(env, "deliveries", "show", delivery_id)
    assert (shown.returncode, shown.stdout) == (0, body), shown.stderr
    replayed = cli(env, "replay", "--delivery", delivery_id)
    assert replayed.returncode == 0, replayed.stderr
    assert orjson.loads(replayed.stdout)["items"] == 1
    entries = [s.item for p in range(2) for s in await inbox.read(p, 10, 10)]
    assert [e.replayed for e in entries] == [False, True]
    await asyncio.gather(inbox.close(), archive.close())
