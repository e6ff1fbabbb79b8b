"""End to end: conversations through the running service (issue 10), Redis + RabbitMQ.

One scenario through `python -m cluster run` on a local Ray cluster, read back from a
queue bound to the service's exchange with `#`: a new customer, messages out of order,
late statuses, a reply chain, a group, a restart on the same store and exchange, and the
admin look-ups; then checks over everything published.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
import redis

from models.event import NormalizedEvent
from models.routing import conversation_id, conversation_key
from tests.conftest import RABBITMQ_URL, REDIS_URL, _delete_exchange
from tests.support.app import signed
from tests.support.bodies import DISPLAY, PHONE_ID, envelope, messages_value, status
from tests.support.published import Published, PublishedStream
from tests.support.service import Service, free_port, start_service

# Two Serve starts (about 20-40 s each) and a drain: more than the suite's 300 s default
# on a loaded machine would mean a hang, which the per-step timeouts below report first.
pytestmark = [
    pytest.mark.ray,
    pytest.mark.redis,
    pytest.mark.rabbitmq,
    pytest.mark.timeout(600),
]

SECRET = "e2e-conversations-secret"
ADMIN_TOKEN = "e2e-admin-token-0123456789"
TENANT = "acme"
CUSTOMER = "16505550101"
BUSINESS_MESSAGE = "wamid.BIZ1"  # sent by the business: the service knows it from statuses
GROUP = "120363000000000042@g.us"
MEMBER_A, MEMBER_B = "447700900201", "447700900202"
STEP_TIMEOUT_S = 30.0  # per step: the reorder window is 1 s, a batch takes milliseconds

CUSTOMER_CID = conversation_id(conversation_key(TENANT, PHONE_ID, CUSTOMER))
GROUP_CID = conversation_id(conversation_key(TENANT, PHONE_ID, f"group:{GROUP}"))


@dataclass
class Stack:
    """What both runs of the service share: data dir, port, environment, exchange."""

    data_dir: Path
    port: int
    env: dict[str, str]
    exchange: str


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A Redis prefix and an exchange of the test's own, deleted afterwards."""
    exchange = f"watest.e2e.conv.{uuid.uuid4().hex[:8]}"
    prefix = f"watest:{uuid.uuid4().hex[:12]}:"
    env = {
        "WA_APP_SECRET": SECRET,
        "WA_TENANT_ID": TENANT,
        "WA_REDIS_URL": REDIS_URL,
        "WA_REDIS_PREFIX": prefix,
        "WA_RABBITMQ_URL": RABBITMQ_URL,
        "WA_RABBITMQ_EXCHANGE": exchange,
        "WA_ADMIN_TOKEN": ADMIN_TOKEN,
        "WA_REORDER_WINDOW_MS": "1000",
    }
    yield Stack(tmp_path / "svc", free_port(), env, exchange)
    asyncio.run(_delete_exchange(exchange))
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def text(
    wamid: str, sender: str, ts: int, parent: tuple[str, str] | None = None, group: str = ""
) -> dict[str, Any]:
    """A text message at Meta time `ts`; `parent` = (its sender, its id) makes it a reply."""
    message: dict[str, Any] = {
        "from": sender,
        "id": wamid,
        "timestamp": str(ts),
        "type": "text",
        "text": {"body": f"text of {wamid}"},
    }
    if parent is not None:
        message["context"] = {"from": parent[0], "id": parent[1]}
    if group:
        message["group_id"] = group
    return message


async def post(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    """A signed webhook POST the service must acknowledge."""
    raw, headers = signed(body, SECRET)
    response = await client.post("/webhook", content=raw, headers=headers)
    assert response.status_code == 200, response.text


async def post_messages(client: httpx.AsyncClient, *messages: dict[str, Any]) -> None:
    """One delivery holding these messages (contacts named after the senders)."""
    await post(client, envelope(("messages", messages_value(messages=list(messages)))))


async def expect(stream: PublishedStream, n: int, service: Service) -> list[dict[str, Any]]:
    """Exactly the next n events (more would show up in the next step's or the final
    drain's count)."""
    got = await stream.take(n, STEP_TIMEOUT_S)
    assert len(got) == n, ([p.routing_key for p in got], service.tail())
    return [p.event for p in got]


def at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def key_of(event: dict[str, Any]) -> str:
    return f"{event['tenant_id']}.{event['category']}.{event['type']}"


async def test_conversations_keep_order_context_and_state_across_a_restart(stack: Stack) -> None:
    """A new customer's first message publishes `conversation.created` and then the
    message with `context.new` and an open window; messages sent 300 ms apart in reverse
    Meta-timestamp order come out in timestamp order; a late `delivered` after `read` is
    stale and keeps `message_state = read`; a three-message reply chain resolves its
    root and parents; a group has a created event of kind group and counts participants;
    after a restart on the same store the customer's next message continues the count and
    the sequence with no second `conversation.created`; the admin API finds the record by
    id and by customer (404 JSON for an unknown id). Over the whole stream: sequences
    strictly increase per conversation in consume order, no event id is published twice."""
    base = int(time.time()) - 120  # Meta times in the recent past, one second apart or more
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        stream: PublishedStream | None = None
        try:
            first = start_service(stack.data_dir, stack.env, port=stack.port)
            try:
                await asyncio.to_thread(first.wait_ready)
                # The exchange exists once /readyz answered 200 (the publisher declared it).
                stream = await PublishedStream.bind(channel, stack.exchange, "#")
                async with httpx.AsyncClient(base_url=first.url, timeout=10) as client:
                    await _first_run(client, stream, first, base)
                # Blocking waits in a thread: the AMQP connection keeps its heartbeats.
                assert await asyncio.to_thread(first.terminate) == 0, first.tail()
            finally:
                first.cleanup()
            before = _last_sequences(stream.consumed)

            second = start_service(stack.data_dir, stack.env, port=stack.port)
            try:
                await asyncio.to_thread(second.wait_ready)
                async with httpx.AsyncClient(base_url=second.url, timeout=10) as client:
                    await _after_restart(client, stream, second, base, before)
                    await _admin_lookups(client)
                extra = await stream.drain(quiet_s=2.0)
                assert extra == [], [p.routing_key for p in extra]
                assert await asyncio.to_thread(second.terminate) == 0, second.tail()
            finally:
                second.cleanup()
            _check_whole_stream(stream.consumed)
        finally:
            if stream is not None:
                await stream.delete()


async def _first_run(
    client: httpx.AsyncClient, stream: PublishedStream, service: Service, base: int
) -> None:
    """Steps 1-5, each waiting for its events before the next is sent."""
    m1 = await _new_customer(client, stream, service, base)
    m3 = await _out_of_order(client, stream, service, base, m1)
    delivered = await _late_statuses(client, stream, service, base, m3)
    await _reply_chain(client, stream, service, base, delivered)
    await _group(client, stream, service, base)


async def _new_customer(
    client: httpx.AsyncClient, stream: PublishedStream, service: Service, base: int
) -> dict[str, Any]:
    # 1. A new customer's first message: created, then the message, in its stream.
    await post_messages(client, text("wamid.M1", CUSTOMER, base))
    created, m1 = await expect(stream, 2, service)
    assert (key_of(created), key_of(m1)) == ("acme.conversation.created", "acme.message.text")
    assert created["conversation_id"] == m1["conversation_id"] == CUSTOMER_CID
    assert (created["sequence"], m1["sequence"]) == (1, 2)
    state = created["data"]["state"]
    assert created["data"]["kind"] == "conversation"
    assert created["data"]["changes"] == []
    assert state["conversation_id"] == CUSTOMER_CID
    assert state["kind"] == "customer"
    assert state["customer"]["wa_id"] == CUSTOMER
    assert state["customer"]["name"] == f"Customer {CUSTOMER}"
    assert state["message_count"] == 1
    assert state["service_window"]["open"] is True
    assert m1["event_id"] == "wamid.M1"
    assert m1["late"] is False
    context = m1["context"]
    assert context["conversation_id"] == CUSTOMER_CID
    assert context["new"] is True
    assert context["message_count"] == 1
    assert context["service_window"]["open"] is True
    assert when(context["first_seen_at"]) == when(context["last_inbound_at"]) == at(base)
    assert when(context["service_window"]["expires_at"]) == at(base + 24 * 3600)
    return m1


async def _out_of_order(
    client: httpx.AsyncClient,
    stream: PublishedStream,
    service: Service,
    base: int,
    m1: dict[str, Any],
) -> dict[str, Any]:
    # 2. Two messages 300 ms apart, the later Meta timestamp first: timestamp order out.
    await post_messages(client, text("wamid.M3", CUSTOMER, base + 20))
    await asyncio.sleep(0.3)
    await post_messages(client, text("wamid.M2", CUSTOMER, base + 10))
    m2, m3 = await expect(stream, 2, service)
    assert (m2["event_id"], m3["event_id"]) == ("wamid.M2", "wamid.M3")
    assert m1["sequence"] < m2["sequence"] < m3["sequence"]
    assert (m2["late"], m3["late"]) == (False, False)
    assert (m2["context"]["message_count"], m3["context"]["message_count"]) == (2, 3)
    assert (m2["context"]["new"], m3["context"]["new"]) == (False, False)
    assert when(m3["context"]["last_inbound_at"]) == at(base + 20)
    return m3


async def _late_statuses(
    client: httpx.AsyncClient,
    stream: PublishedStream,
    service: Service,
    base: int,
    m3: dict[str, Any],
) -> dict[str, Any]:
    # 3. Statuses of a business message arriving late: read, then delivered.
    for state_name, ts in (("read", base + 25), ("delivered", base + 22)):
        statuses = [status(BUSINESS_MESSAGE, CUSTOMER, state_name, ts=ts)]
        await post(client, envelope(("messages", messages_value(statuses=statuses))))
    read, delivered = await expect(stream, 2, service)
    assert (key_of(read), key_of(delivered)) == ("acme.status.read", "acme.status.delivered")
    assert read["conversation_id"] == delivered["conversation_id"] == CUSTOMER_CID
    assert m3["sequence"] < read["sequence"] < delivered["sequence"]
    assert (read["data"]["message_state"], read["data"]["stale"]) == ("read", False)
    assert (delivered["data"]["message_state"], delivered["data"]["stale"]) == ("read", True)
    assert delivered["context"]["message_count"] == 3
    assert delivered["context"]["new"] is False
    return delivered


async def _reply_chain(
    client: httpx.AsyncClient,
    stream: PublishedStream,
    service: Service,
    base: int,
    delivered: dict[str, Any],
) -> None:
    # 4. A reply chain: to the business message (known from its statuses), then to itself.
    await post_messages(client, text("wamid.R1", CUSTOMER, base + 30, (DISPLAY, BUSINESS_MESSAGE)))
    await post_messages(client, text("wamid.R2", CUSTOMER, base + 31, (CUSTOMER, "wamid.R1")))
    await post_messages(client, text("wamid.R3", CUSTOMER, base + 32, (CUSTOMER, "wamid.R2")))
    r1, r2, r3 = await expect(stream, 3, service)
    assert [r["event_id"] for r in (r1, r2, r3)] == ["wamid.R1", "wamid.R2", "wamid.R3"]
    assert delivered["sequence"] < r1["sequence"] < r2["sequence"] < r3["sequence"]
    replies = [r["reply_to"] for r in (r1, r2, r3)]
    assert [r["message_id"] for r in replies] == [BUSINESS_MESSAGE, "wamid.R1", "wamid.R2"]
    assert [r["thread_root_id"] for r in replies] == [BUSINESS_MESSAGE] * 3
    # The business message was never seen as a message: no event to name.
    assert [r["event_id"] for r in replies] == [None, "wamid.R1", "wamid.R2"]
    assert r3["context"]["message_count"] == 6


async def _group(
    client: httpx.AsyncClient, stream: PublishedStream, service: Service, base: int
) -> None:
    # 5. A group: created (kind group) with its first sender; a second sender joins.
    await post_messages(
        client,
        text("wamid.G1", MEMBER_A, base + 40, group=GROUP),
        text("wamid.G2", MEMBER_B, base + 41, group=GROUP),
    )
    g_created, g1, g_updated, g2 = await expect(stream, 4, service)
    assert [key_of(e) for e in (g_created, g1, g_updated, g2)] == [
        "acme.conversation.created",
        "acme.message.text",
        "acme.conversation.updated",
        "acme.message.text",
    ]
    assert {e["conversation_id"] for e in (g_created, g1, g_updated, g2)} == {GROUP_CID}
    assert [e["sequence"] for e in (g_created, g1, g_updated, g2)] == [1, 2, 3, 4]
    group_state = g_created["data"]["state"]
    assert g_created["data"]["kind"] == "conversation"
    assert (group_state["kind"], group_state["group_id"]) == ("group", GROUP)
    assert group_state["customer"] is None
    assert (group_state["participants"], group_state["participants_count"]) == ([MEMBER_A], 1)
    assert (g1["event_id"], g1["group_id"]) == ("wamid.G1", GROUP)
    assert g1["context"]["new"] is True
    assert g1["context"]["participants_count"] == 1
    assert g_updated["data"]["changes"] == ["participants"]
    assert g_updated["data"]["state"]["participants"] == sorted([MEMBER_A, MEMBER_B])
    assert g2["context"]["participants_count"] == 2
    assert g2["context"]["message_count"] == 2
    assert g2["context"]["new"] is False


async def _after_restart(
    client: httpx.AsyncClient,
    stream: PublishedStream,
    service: Service,
    base: int,
    before: dict[str, tuple[int, dict[str, Any]]],
) -> None:
    # 6. The same customer and group again: their records continue from the store.
    await post_messages(client, text("wamid.M4", CUSTOMER, base + 50))
    await post_messages(client, text("wamid.G3", MEMBER_A, base + 51, group=GROUP))
    events = {e["conversation_id"]: e for e in await expect(stream, 2, service)}
    assert set(events) == {CUSTOMER_CID, GROUP_CID}, list(events)
    m4, g3 = events[CUSTOMER_CID], events[GROUP_CID]
    last_seq, last_m = before[CUSTOMER_CID]
    assert (key_of(m4), m4["event_id"]) == ("acme.message.text", "wamid.M4")
    assert m4["sequence"] == last_seq + 1
    assert m4["context"]["new"] is False
    assert m4["context"]["message_count"] == last_m["context"]["message_count"] + 1 == 7
    assert when(m4["context"]["first_seen_at"]) == at(base)
    group_seq, _ = before[GROUP_CID]
    assert (key_of(g3), g3["event_id"]) == ("acme.message.text", "wamid.G3")
    assert g3["sequence"] == group_seq + 1
    assert (g3["context"]["participants_count"], g3["context"]["message_count"]) == (2, 3)


async def _admin_lookups(client: httpx.AsyncClient) -> None:
    # 7. The admin API: the record by id and by customer; an unknown id is a JSON 404.
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = await client.get(f"/admin/conversations/{CUSTOMER_CID}", headers=auth)
    assert response.status_code == 200, response.text
    record = response.json()["conversation"]
    assert record["conversation_id"] == CUSTOMER_CID
    assert (record["tenant_id"], record["kind"]) == (TENANT, "customer")
    assert record["customer"]["wa_id"] == CUSTOMER
    assert record["message_count"] == 7
    assert record["last_sequence"] == 10  # created, M1-M3, two statuses, R1-R3, M4
    assert record["service_window"]["open"] is True

    response = await client.get(
        "/admin/conversations", params={"tenant_id": TENANT, "wa_id": CUSTOMER}, headers=auth
    )
    assert response.status_code == 200, response.text
    found = response.json()["conversations"]
    assert [c["conversation_id"] for c in found] == [CUSTOMER_CID]
    assert found[0]["message_count"] == 7

    response = await client.get(f"/admin/conversations/{'0' * 32}", headers=auth)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(response.json(), dict)

    response = await client.get(f"/admin/conversations/{CUSTOMER_CID}")
    assert response.status_code == 401


def _last_sequences(consumed: list[Published]) -> dict[str, tuple[int, dict[str, Any]]]:
    """Each conversation's last sequence and its last item event (not a state event)."""
    last: dict[str, tuple[int, dict[str, Any]]] = {}
    for published in consumed:
        event = published.event
        cid = event["conversation_id"]
        item = event if event["category"] != "conversation" else last.get(cid, (0, event))[1]
        last[cid] = (event["sequence"], item)
    return last


def _check_whole_stream(consumed: list[Published]) -> None:
    """Every event valid against the schema under its own routing key; per conversation,
    sequences strictly increase in consume order and one `conversation.created`; no event
    id twice."""
    assert len(consumed) == 2 + 2 + 2 + 3 + 4 + 2
    sequences: dict[str, list[int]] = {}
    created: dict[str, int] = {}
    for published in consumed:
        event = NormalizedEvent.model_validate(published.event)
        assert published.routing_key == event.routing_key
        sequences.setdefault(event.conversation_id, []).append(event.sequence)
        if event.category == "conversation" and event.type == "created":
            created[event.conversation_id] = created.get(event.conversation_id, 0) + 1
    for cid, seqs in sequences.items():
        assert all(a < b for a, b in itertools.pairwise(seqs)), (cid, seqs)
    assert sequences[CUSTOMER_CID] == list(range(1, 11))
    assert sequences[GROUP_CID] == list(range(1, 6))
    assert created == {CUSTOMER_CID: 1, GROUP_CID: 1}
    ids = [p.event["event_id"] for p in consumed]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
