"""The fairness test of issue 13 on the running service (real Serve app, Redis, RabbitMQ).

Tenant A is limited to 50 events/s (`rules.publish_rate_per_s` in the tenants file) and
receives a 2,000-item burst (40 deliveries of 50 messages, 20 conversations); while its
backlog drains, tenant B sends 100 items (one a delivery, 10 a second). B's ack->published
latency (the POST's 200 to the event consumed from a queue bound to the exchange) stays
under 1 s at p99, A is published at its rate (measured over its messages' arrival), nothing
is lost, each conversation's order is kept, and the acknowledgement of A's burst is never
slowed by its budget (the inbox absorbs the backlog). The figures are printed (-s).

The reorder window is off (WA_REORDER_WINDOW_MS=0): it holds every inbound message 1 s on
purpose, which is not the limiter's latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson
import pytest
import redis

from tests.conftest import RABBITMQ_URL, REDIS_URL, _delete_exchange
from tests.support.app import signed
from tests.support.bodies import envelope, messages_value, text_message
from tests.support.service import running_service

pytestmark = [
    pytest.mark.ray,
    pytest.mark.redis,
    pytest.mark.rabbitmq,
    pytest.mark.timeout(600),
]

ADMIN_TOKEN = "e2e-fairness-admin-token-0123"
A_SECRET, B_SECRET = "fairness-secret-a", "fairness-secret-b"
A_PHONE, B_PHONE = "106540352242001", "106540352242002"
A_RATE = 50.0
A_ITEMS, A_PER_DELIVERY, A_CONVERSATIONS = 2000, 50, 20
B_ITEMS, B_PER_S = 100, 10.0


def tenants_file(path: Path) -> Path:
    path.write_bytes(
        orjson.dumps(
            {
                "tenants": [
                    {
                        "id": "tenant-a",
                        "app_secrets": [A_SECRET],
                        "phone_number_ids": [A_PHONE],
                        "rules": {"publish_rate_per_s": A_RATE},
                    },
                    {"id": "tenant-b", "app_secrets": [B_SECRET], "phone_number_ids": [B_PHONE]},
                ]
            }
        )
    )
    return path


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    exchange = f"watest.e2e.fair.{uuid.uuid4().hex[:8]}"
    prefix = f"watest:{uuid.uuid4().hex[:12]}:"
    yield {
        "WA_TENANTS_FILE": str(tenants_file(tmp_path / "tenants.json")),
        "WA_REDIS_URL": REDIS_URL,
        "WA_REDIS_PREFIX": prefix,
        "WA_RABBITMQ_URL": RABBITMQ_URL,
        "WA_RABBITMQ_EXCHANGE": exchange,
        "WA_ADMIN_TOKEN": ADMIN_TOKEN,
        "WA_REORDER_WINDOW_MS": "0",
        "WA_SHARDS": "2",
        "WA_LIMITER_ENABLED": "true",
    }
    asyncio.run(_delete_exchange(exchange))
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def delivery(phone: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    return envelope(("messages", messages_value(messages=messages, phone_number_id=phone)))


async def scenario(url: str, exchange: str) -> dict[str, Any]:
    """Send both tenants' traffic, consume everything; the figures."""
    arrived: dict[str, float] = {}  # event_id -> consumed at (monotonic)
    order: dict[str, list[str]] = {}  # conversation -> message event ids, consume order
    everything = asyncio.Event()
    connection = await aio_pika.connect_robust(RABBITMQ_URL)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=500)
    queue = await channel.declare_queue(
        f"watest.fair.{uuid.uuid4().hex[:8]}", durable=False, arguments={"x-expires": 900_000}
    )
    await queue.bind(exchange, routing_key="#")

    async def consume(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        event = orjson.loads(message.body)
        if event["category"] == "message":
            arrived[event["event_id"]] = time.monotonic()
            order.setdefault(event["conversation_id"], []).append(event["event_id"])
            if len(arrived) >= A_ITEMS + B_ITEMS:
                everything.set()
        await message.ack()

    await queue.consume(consume)
    acked: dict[str, float] = {}
    a_sent: dict[int, list[str]] = {}  # A's customer -> wamids in send order
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def post(secret: str, body: dict[str, Any], wamids: list[str]) -> None:
            raw, headers = signed(body, secret)
            response = await client.post("/webhook", content=raw, headers=headers)
            assert response.status_code == 200, response.text
            now = time.monotonic()
            for wamid in wamids:
                acked[wamid] = now

        burst_started = time.monotonic()
        for d in range(A_ITEMS // A_PER_DELIVERY):
            messages = []
            for i in range(A_PER_DELIVERY):
                n = d * A_PER_DELIVERY + i
                customer = n % A_CONVERSATIONS
                wamid = f"wamid.A.{n}"
                a_sent.setdefault(customer, []).append(wamid)
                messages.append(text_message(wamid, f"1650555{customer:04d}", f"a {n}"))
            await post(A_SECRET, delivery(A_PHONE, messages), [m["id"] for m in messages])
        burst_acked_s = time.monotonic() - burst_started

        for n in range(B_ITEMS):
            wamid = f"wamid.B.{n}"
            body = delivery(B_PHONE, [text_message(wamid, f"4477009{n % 10:05d}", f"b {n}")])
            await post(B_SECRET, body, [wamid])
            await asyncio.sleep(1 / B_PER_S)

        with contextlib.suppress(TimeoutError):  # fewer arrived: the asserts say how many
            await asyncio.wait_for(everything.wait(), timeout=A_ITEMS / A_RATE + 60)
        stats = (
            await client.get(
                "/admin/tenants/tenant-a/stats",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
        ).json()
    await queue.delete(if_unused=False, if_empty=False)
    await connection.close()

    b_latency = sorted(
        arrived[w] - acked[w] for w in acked if w.startswith("wamid.B.") and w in arrived
    )
    a_times = sorted(t for w, t in arrived.items() if w.startswith("wamid.A."))
    # The rate over the drain's steady part: the first second's banked burst left out.
    steady = [t for t in a_times if t >= a_times[0] + 1.0] if a_times else []
    a_rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    slow_b = {  # which of B's items were slow (by send index), for the report
        w: round(arrived[w] - acked[w], 3)
        for w in acked
        if w.startswith("wamid.B.") and w in arrived and arrived[w] - acked[w] > 0.25
    }
    return {
        "slow_b": slow_b,
        "a_sent": a_sent,
        "order": order,
        "arrived": arrived,
        "b_latency": b_latency,
        "a_rate": a_rate,
        "a_span_s": (a_times[-1] - a_times[0]) if a_times else 0.0,
        "burst_acked_s": burst_acked_s,
        "stats": stats,
    }


def test_a_tenant_over_its_rate_does_not_delay_another(
    stack: dict[str, str], tmp_path: Path
) -> None:
    with running_service(tmp_path / "svc", stack) as svc:
        figures = asyncio.run(scenario(svc.url, stack["WA_RABBITMQ_EXCHANGE"]))
        log_tail = svc.tail()
    arrived, b_latency = figures["arrived"], figures["b_latency"]
    a_got = sum(1 for w in arrived if w.startswith("wamid.A."))
    p50 = statistics.median(b_latency) if b_latency else None
    p99 = b_latency[max(0, round(0.99 * len(b_latency)) - 1)] if b_latency else None
    top = b_latency[-1] if b_latency else None
    print(  # the figures the closing note reports (pytest -s)
        f"\nfairness: A {a_got}/{A_ITEMS} published at {figures['a_rate']:.1f}/s over "
        f"{figures['a_span_s']:.1f} s (burst acknowledged in {figures['burst_acked_s']:.2f} s); "
        f"B {len(b_latency)}/{B_ITEMS}, ack->published p50 {p50} s, p99 {p99} s, max {top} s; "
        f"A's limiter: {figures['stats'].get('limiter')}; B's slow items: {figures['slow_b']}"
    )
    assert a_got == A_ITEMS, log_tail
    assert len(b_latency) == B_ITEMS, log_tail
    for customer, wamids in figures["a_sent"].items():
        mine = set(wamids)
        published = [w for seen in figures["order"].values() for w in seen if w in mine]
        assert published == wamids, f"customer {customer}'s order"
    assert p99 is not None
    assert p99 < 1.0, b_latency[-10:]
    assert figures["a_rate"] <= A_RATE * 1.1, "A is never published faster than its rate"
    assert figures["a_rate"] >= A_RATE * 0.7, "A is published at about its rate"
    limiter = figures["stats"].get("limiter")
    assert limiter is not None, figures["stats"]
    assert limiter["publish_rate_per_s"] == A_RATE, limiter
