"""End to end: the Serve app on a local Ray cluster with Redis Streams and RabbitMQ."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson
import pytest
import redis

from actors.unsupported import REPLAY_CATEGORY
from models.conversation import ConversationKind
from models.event import NormalizedEvent
from tests.conftest import RABBITMQ_URL, REDIS_URL, _delete_exchange
from tests.support.app import signed
from tests.support.bodies import two_customers_and_a_status
from tests.support.events import check_streams, conversation_kinds, is_state_event, item_events
from tests.support.service import Service, running_service
from tests.support.webhooks import run_pipeline

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


PAYLOADS = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "payloads"
EVERYTHING = 100_000
"""A count of events `consume` never reaches: it waits out its timeout."""


def check_docs_streams(
    events: Sequence[Mapping[str, Any]], kinds: Mapping[str, ConversationKind]
) -> None:
    """check_streams for a stream with replays (items older than WA_MAX_ITEM_AGE_S, as
    most of the documentation's are): they take sequences but change no record and
    publish no state events. So each conversation's events are numbered 1..n in consume
    order; a state event is of its own conversation's record (never a tenant's), and is
    followed by the event of the item that caused it (same delivery, not a replay); a
    customer or group conversation with an item that is not a replay has exactly one
    `conversation.created`, just before the first such item; one without has none."""
    streams: dict[str, list[Mapping[str, Any]]] = {}
    for event in events:
        streams.setdefault(event["conversation_id"], []).append(event)
    assert set(streams) <= set(kinds), set(streams) - set(kinds)
    for cid, stream in streams.items():
        assert [e["sequence"] for e in stream] == list(range(1, len(stream) + 1)), cid
        for i, event in enumerate(stream):
            if not is_state_event(event):
                continue
            assert kinds[cid] != "tenant", event
            assert event["data"]["state"]["conversation_id"] == cid, event
            assert i + 1 < len(stream), (cid, "a state event with no item after it")
            item = stream[i + 1]
            assert not is_state_event(item), item
            assert item["category"] != REPLAY_CATEGORY, item
            assert item["delivery_id"] == event["delivery_id"], (event, item)
        created = [i for i, e in enumerate(stream) if is_state_event(e) and e["type"] == "created"]
        live = [
            i
            for i, e in enumerate(stream)
            if not is_state_event(e) and e["category"] != REPLAY_CATEGORY
        ]
        if kinds[cid] == "tenant" or not live:
            assert created == [], (cid, [(e["category"], e["type"]) for e in stream])
        else:
            assert created == [live[0] - 1], (cid, [(e["category"], e["type"]) for e in stream])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str]]:
    """One Serve deployment on a local Ray cluster for the module (Redis + RabbitMQ)."""
    exchange = f"watest.e2e.{uuid.uuid4().hex[:8]}"
    prefix = f"watest:{uuid.uuid4().hex[:12]}:"
    env = {
        "WA_APP_SECRET": SECRET,
        "WA_TENANT_ID": "acme",
        "WA_REDIS_URL": REDIS_URL,
        "WA_REDIS_PREFIX": prefix,
        "WA_RABBITMQ_URL": RABBITMQ_URL,
        "WA_RABBITMQ_EXCHANGE": exchange,
    }
    with running_service(tmp_path_factory.mktemp("svc"), env) as started:
        yield started, exchange
        assert started.terminate() == 0, started.tail()
    asyncio.run(_delete_exchange(exchange))
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


async def bound_queue(
    channel: aio_pika.abc.AbstractChannel, exchange: str, key: str
) -> aio_pika.abc.AbstractQueue:
    """An exclusive queue bound to the service's exchange (declared by /readyz)."""
    queue = await channel.declare_queue(f"e2e.{uuid.uuid4().hex[:8]}", exclusive=True)
    await queue.bind(exchange, routing_key=key)
    return queue


async def test_signed_post_reaches_a_bound_queue_in_conversation_order(
    service: tuple[Service, str],
) -> None:
    """3 items of two new customers in one POST -> exactly 3 item events and the state
    events they cause, right keys, each conversation's whole stream numbered 1..n in
    consume order, led by its one `conversation.created`; a bad signature publishes
    nothing. (The fixture's teardown: SIGTERM drains, exit 0.)"""
    running, exchange_name = service
    body = two_customers_and_a_status()
    items, _ = run_pipeline(body)
    kinds = conversation_kinds(items)
    assert sorted(kinds.values()) == ["customer", "customer"]
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        queue = await bound_queue(channel, exchange_name, "acme.#")

        raw, headers = signed(body, SECRET)
        async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
            response = await client.post("/webhook", content=raw, headers=headers)
            assert response.status_code == 200, response.text
            events = await consume(queue, 3 + 3, timeout_s=30)
            assert len(events) == 3 + 3, running.tail()
            keys = sorted(key for key, _ in events)
            assert keys == [
                "acme.conversation.created",
                "acme.conversation.created",
                "acme.conversation.updated",
                "acme.message.text",
                "acme.message.text",
                "acme.status.read",
            ]
            bodies = [event for _, event in events]
            check_streams(bodies, kinds)
            by_id = {event["event_id"]: event for event in item_events(bodies)}
            first, status = by_id["wamid.A1"], by_id["wamid.OUT1:read"]
            assert first["conversation_id"] == status["conversation_id"]
            # The reorder window (1 s) holds the messages, not the status: the status
            # creates A's record; A1 then names the customer and opens the service window.
            stream = [e for e in bodies if e["conversation_id"] == first["conversation_id"]]
            assert [(e["category"], e["type"], e["sequence"]) for e in stream] == [
                ("conversation", "created", 1),
                ("status", "read", 2),
                ("conversation", "updated", 3),
                ("message", "text", 4),
            ]
            assert set(stream[2]["data"]["changes"]) == {"customer.name", "service_window"}
            assert first["context"]["message_count"] == 1
            assert by_id["wamid.B1"]["sequence"] == 2
            assert by_id["wamid.B1"]["conversation_id"] != first["conversation_id"]

            forged, forged_headers = signed(two_customers_and_a_status(), "not-the-secret")
            response = await client.post("/webhook", content=forged, headers=forged_headers)
            assert response.status_code == 403
            assert await consume(queue, 1, timeout_s=3) == []


@pytest.mark.skipif(not (PAYLOADS / "meta-docs").is_dir(), reason=f"{PAYLOADS} is absent")
async def test_every_meta_docs_payload_is_accepted_and_published_item_by_item(
    service: tuple[Service, str],
) -> None:
    """Conformance through the running service: each of Meta's documented bodies is
    accepted (200), every distinct event id among their items is published exactly once
    (documentation examples reuse wamids; the service deduplicates them), and each
    conversation's whole stream is numbered 1..n with its state events where they belong
    (check_docs_streams)."""
    running, exchange = service
    files = sorted((PAYLOADS / "meta-docs").glob("*.json"))
    conversations: dict[str, set[str]] = {}
    kinds: dict[str, ConversationKind] = {}
    for path in files:
        items, normalized = run_pipeline(orjson.loads(path.read_bytes()))
        kinds.update(conversation_kinds(items))
        for event in normalized:
            conversations.setdefault(event.event_id, set()).add(event.conversation_id)
    expected = set(conversations)
    # Item dedup is per conversation shard: the docs reuse a few placeholder wamids in
    # unrelated conversations (other numbers/senders), which two shards may publish
    # concurrently. Only those may appear twice (see docs/security.md).
    cross = {event_id for event_id, convs in conversations.items() if len(convs) > 1}
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        queue = await bound_queue(channel, exchange, "#")
        async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
            for path in files:
                raw, headers = signed(path.read_bytes(), SECRET)
                response = await client.post("/webhook", content=raw, headers=headers)
                assert response.status_code == 200, (path.name, response.text)
        # Everything published in 60 s: no count of events can end the wait early, as the
        # state events (how many depends on which items are replays) come on top.
        events = await consume(queue, EVERYTHING, timeout_s=60)
        bodies = [event for _, event in events]
        published = [event["event_id"] for event in item_events(bodies)]
        assert set(published) == expected
        repeated = {event_id for event_id in published if published.count(event_id) > 1}
        assert repeated <= cross
        for key, body in events:
            event = NormalizedEvent.model_validate(body)
            assert key == event.routing_key
        check_docs_streams(bodies, kinds)
        assert any(is_state_event(event) for event in bodies), "no conversation.created at all"
