"""Hot reload of the tenant registry on the running service (issue 13): two ingress
replicas (WA_INGRESS_REPLICAS=2), Redis and RabbitMQ. A tenant POSTed through the admin
API has its signed webhooks answered 200 by both replicas and published within 5 s,
without a restart; PATCHed disabled, its webhooks are refused 403 `tenant_disabled`
within 5 s; re-enabled, they are accepted again. Each round sends 20 webhooks at once, so
both replicas (each polling the registry on its own) serve some."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
import redis

from tests.conftest import RABBITMQ_URL, REDIS_URL, _delete_exchange
from tests.support.app import signed
from tests.support.bodies import envelope, messages_value, text_message
from tests.support.published import PublishedStream
from tests.support.service import Service, running_service

pytestmark = [pytest.mark.ray, pytest.mark.redis, pytest.mark.rabbitmq, pytest.mark.timeout(600)]

ADMIN_TOKEN = "e2e-reload-admin-token-0123"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FILE_SECRET = "e2e-reload-file-secret"
NEW_SECRET = "e2e-reload-new-tenant-secret"
NEW_PHONE = "106540352249001"
ROUND = 20
RELOAD_BOUND_S = 5.0  # the issue's: every replica and shard within 5 s, no restart


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Service, str]]:
    exchange = f"watest.e2e.reload.{uuid.uuid4().hex[:8]}"
    prefix = f"watest:{uuid.uuid4().hex[:12]}:"
    env = {
        "WA_APP_SECRET": FILE_SECRET,
        "WA_TENANT_ID": "filed",
        "WA_REDIS_URL": REDIS_URL,
        "WA_REDIS_PREFIX": prefix,
        "WA_RABBITMQ_URL": RABBITMQ_URL,
        "WA_RABBITMQ_EXCHANGE": exchange,
        "WA_ADMIN_TOKEN": ADMIN_TOKEN,
        "WA_INGRESS_REPLICAS": "2",
        "WA_REORDER_WINDOW_MS": "0",
    }
    with running_service(tmp_path / "svc", env) as started:
        yield started, exchange
        assert started.terminate() == 0, started.tail()
    asyncio.run(_delete_exchange(exchange))
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def delivery(n: int) -> dict[str, Any]:
    message = text_message(f"wamid.reload.{n}", f"1555000{n:04d}")
    return envelope(("messages", messages_value([message], phone_number_id=NEW_PHONE)))


async def send_round(client: httpx.AsyncClient, first: int) -> list[httpx.Response]:
    """ROUND signed webhooks of the new tenant at once (numbered from `first`)."""

    async def post(n: int) -> httpx.Response:
        raw, headers = signed(delivery(n), NEW_SECRET)
        return await client.post("/webhook", content=raw, headers=headers)

    return list(await asyncio.gather(*(post(first + i) for i in range(ROUND))))


async def until(
    client: httpx.AsyncClient, status: int, since: float, counter: list[int]
) -> list[httpx.Response]:
    """Rounds until every webhook of one is answered `status`, within RELOAD_BOUND_S of
    `since` (the write's answer); the last round's answers."""
    while True:
        replies = await send_round(client, counter[0])
        counter[0] += ROUND
        if all(r.status_code == status for r in replies):
            return replies
        waited = time.monotonic() - since
        assert waited < RELOAD_BOUND_S, [(r.status_code, r.text[:80]) for r in replies]
        await asyncio.sleep(0.2)


async def test_a_tenant_added_disabled_and_enabled_through_the_api_reaches_every_replica(
    service: tuple[Service, str],
) -> None:
    running, exchange = service
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection, httpx.AsyncClient(base_url=running.url, timeout=30) as client:
        channel = await connection.channel()
        stream = await PublishedStream.bind(channel, exchange, "newco.message.#")
        counter = [0]
        # Before: nobody owns the number; the file's default tenant does not hold the secret.
        before = await send_round(client, 10_000)
        assert {r.status_code for r in before} == {403}

        created = await client.post(
            "/admin/tenants",
            headers=AUTH,
            json={"id": "newco", "app_secrets": [NEW_SECRET], "phone_number_ids": [NEW_PHONE]},
        )
        assert created.status_code == 201, created.text
        assert NEW_SECRET not in created.text
        accepted = await until(client, 200, time.monotonic(), counter)
        published = await stream.take(ROUND, timeout_s=30)
        assert len(published) == ROUND, running.tail()
        assert {p.event["tenant_id"] for p in published} == {"newco"}
        assert len(accepted) == ROUND

        patched = await client.patch("/admin/tenants/newco", headers=AUTH, json={"disabled": True})
        assert patched.status_code == 200, patched.text
        refused = await until(client, 403, time.monotonic(), counter)
        assert {r.json()["error"]["code"] for r in refused} == {"tenant_disabled"}

        enabled = await client.patch("/admin/tenants/newco", headers=AUTH, json={"disabled": False})
        assert enabled.status_code == 200, enabled.text
        await until(client, 200, time.monotonic(), counter)

        listed = await client.get("/admin/tenants", headers=AUTH)
        assert [t["id"] for t in listed.json()["tenants"]] == ["filed", "newco"]
        assert NEW_SECRET not in listed.text
        assert FILE_SECRET not in listed.text
        await stream.delete()
    log = running.log.read_text(errors="replace")
    assert NEW_SECRET not in log
