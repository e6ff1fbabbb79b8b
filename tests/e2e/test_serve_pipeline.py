"""End to end: the Serve app on a local Ray cluster with Redis Streams and RabbitMQ."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson
import pytest

from tests.conftest import RABBITMQ_URL, REDIS_URL
from tests.support.app import signed
from tests.support.bodies import two_customers_and_a_status
from tests.support.service import running_service

pytestmark = [pytest.mark.ray, pytest.mark.redis, pytest.mark.rabbitmq]

SECRET = "e2e-secret"


async def consume(queue: aio_pika.abc.AbstractQueue, n: int, timeout_s: float) -> list[Any]:
    """Up to n messages (routing key, body), waiting at most timeout_s in total."""
    got: list[Any] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(got) < n and asyncio.get_running_loop().time() < deadline:
        message = await queue.get(fail=False)
        if message is None:
            await asyncio.sleep(0.1)
            continue
        await message.ack()
        got.append((message.routing_key, orjson.loads(message.body)))
    return got


async def test_signed_post_reaches_a_bound_queue_in_conversation_order(
    tmp_path: Path, exchange_name: str, redis_prefix: str
) -> None:
    """3 items in one POST -> exactly 3 events, right keys and per-conversation sequences;
    a bad signature publishes nothing; SIGTERM drains and exits 0."""
    env = {
        "WA_APP_SECRET": SECRET,
        "WA_TENANT_ID": "acme",
        "WA_REDIS_URL": REDIS_URL,
        "WA_REDIS_PREFIX": redis_prefix,
        "WA_RABBITMQ_URL": RABBITMQ_URL,
        "WA_RABBITMQ_EXCHANGE": exchange_name,
    }
    with running_service(tmp_path / "svc", env) as service:
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(f"e2e.{uuid.uuid4().hex[:8]}", exclusive=True)
            await queue.bind(exchange_name, routing_key="acme.#")  # /readyz declared it

            raw, headers = signed(two_customers_and_a_status(), SECRET)
            async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
                response = await client.post("/webhook", content=raw, headers=headers)
                assert response.status_code == 200, response.text
                events = await consume(queue, 3, timeout_s=30)
                assert len(events) == 3, service.tail()
                keys = sorted(key for key, _ in events)
                assert keys == ["acme.message.text", "acme.message.text", "acme.status.read"]
                by_id = {body["event_id"]: body for _, body in events}
                first, status = by_id["wamid.A1"], by_id["wamid.OUT1:read"]
                assert first["conversation_id"] == status["conversation_id"]
                assert (first["sequence"], status["sequence"]) == (1, 2)
                assert by_id["wamid.B1"]["sequence"] == 1
                assert by_id["wamid.B1"]["conversation_id"] != first["conversation_id"]

                forged, forged_headers = signed(two_customers_and_a_status(), "not-the-secret")
                response = await client.post("/webhook", content=forged, headers=forged_headers)
                assert response.status_code == 403
                assert await consume(queue, 1, timeout_s=3) == []
        assert service.terminate() == 0, service.tail()
