"""Tenants' routing rules on a real RabbitMQ (docs/tenants.md "Processing rules"): another
exchange, a routing-key prefix, another vhost (made with rabbitmqctl, deleted after), a
vhost that does not exist yet (an outage: TransientError, nothing lost once it exists),
rules read live; and the embedded outbox recording the same routes."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractQueue
from pydantic import SecretStr

from actors.shard import ConversationShard
from actors.shard_metrics import ShardStats
from adapters.codec import encode_events
from adapters.errors import TransientError
from adapters.outbox import OutboxPublisher, read_outbox
from adapters.rabbitmq import RabbitPublisher
from models.event import NormalizedEvent
from models.inbox import InboxItem
from models.routing import conversation_id, conversation_key
from models.tenant import AppSecret, RoutingRule, Tenant, TenantDirectory, TenantRules
from tests.conftest import RABBITMQ_URL
from tests.support.configs import shard_config, sqlite_inbox
from tests.support.events import event, inbox_item

CONFIRM_TIMEOUT_S = 30.0


def of(tenant_id: str, n: int) -> NormalizedEvent:
    return event(n).model_copy(update={"tenant_id": tenant_id})


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


def vhost_url(vhost: str) -> str:
    return RABBITMQ_URL.rstrip("/") + "/" + quote(vhost, safe="")


@pytest.fixture
def vhost() -> Iterator[str]:
    """A fresh vhost name, not created; deleted after the test if it was."""
    name = f"watest-{uuid.uuid4().hex[:12]}"
    yield name
    subprocess.run(["rabbitmqctl", "delete_vhost", name], capture_output=True, timeout=60)


def make_vhost(name: str) -> None:
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")


async def take(queue: AbstractQueue, n: int) -> list[tuple[str, dict[str, Any]]]:
    got: list[tuple[str, dict[str, Any]]] = []
    async with queue.iterator(timeout=10) as messages:
        async for message in messages:
            async with message.process():
                got.append((message.routing_key or "", orjson.loads(message.body)))
            if len(got) >= n:
                break
    return got


@pytest.fixture
async def broker() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(RABBITMQ_URL)
    yield await connection.channel()
    await connection.close()


async def bound_queue(channel: aio_pika.abc.AbstractChannel, exchange: str) -> AbstractQueue:
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key="#")
    return queue


async def delete_events_exchange(channel: aio_pika.abc.AbstractChannel, name: str) -> None:
    await channel.exchange_delete(name)
    await channel.exchange_delete(f"{name}.unrouted")
    await channel.queue_delete(f"{name}.unrouted")


@pytest.mark.rabbitmq
async def test_a_tenant_exchange_and_prefix(
    exchange_name: str, broker: aio_pika.abc.AbstractChannel
) -> None:
    """acme's events go to its own exchange (declared durable topic on first use, with its
    unrouted alternate) under `eu.acme.<category>.<type>`, in order; beta's, in the same
    batch, to the service's exchange under `beta.…`."""
    own = f"{exchange_name}.acme"
    rules = {"acme": RoutingRule(exchange=own, routing_key_prefix="eu")}
    publisher = RabbitPublisher(RABBITMQ_URL, exchange_name, CONFIRM_TIMEOUT_S, routes=rules.get)
    try:
        await publisher.ping()
        main = await bound_queue(broker, exchange_name)
        assert await publisher.publish([of("acme", 1), of("beta", 2), of("acme", 3)]) == []
        # The exchange exists now, durable: a queue binds to it; what went before it was
        # bound is in its unrouted queue.
        unrouted = await broker.declare_queue(f"{own}.unrouted", durable=True, passive=True)
        got = await take(unrouted, 2)
        assert [(k, b["event_id"]) for k, b in got] == [
            ("eu.acme.message.text", "wamid.1"),
            ("eu.acme.message.text", "wamid.3"),
        ]
        assert [(k, b["event_id"]) for k, b in await take(main, 1)] == [
            ("beta.message.text", "wamid.2")
        ]
        theirs = await bound_queue(broker, own)
        assert await publisher.publish([of("acme", 4)]) == []
        assert [k for k, _ in await take(theirs, 1)] == ["eu.acme.message.text"]
    finally:
        await publisher.close()
        await delete_events_exchange(broker, own)


@pytest.mark.rabbitmq
async def test_a_tenant_vhost_and_the_outage_of_one_that_does_not_exist(
    exchange_name: str, vhost: str, broker: aio_pika.abc.AbstractChannel
) -> None:
    """acme's vhost does not exist: the batch is an outage (TransientError; nothing of it
    counts as sent), and the service's own route keeps working for a batch without
    acme. Once the vhost exists, the same batch is published: acme's events on the
    service's exchange name in its vhost, confirmed; the dead-letter exchange stays in
    the service's vhost."""
    rules = {"acme": RoutingRule(vhost=vhost)}
    publisher = RabbitPublisher(RABBITMQ_URL, exchange_name, CONFIRM_TIMEOUT_S, routes=rules.get)
    batch = [of("acme", 1), of("beta", 2)]
    try:
        await publisher.ping()
        main = await bound_queue(broker, exchange_name)
        with pytest.raises(TransientError, match="vhost"):
            await publisher.publish(batch)
        assert await publisher.publish([of("beta", 3)]) == []
        assert [b["event_id"] for _, b in await take(main, 1)] == ["wamid.3"]

        make_vhost(vhost)
        assert await publisher.publish(batch) == []
        connection = await aio_pika.connect(vhost_url(vhost))
        async with connection:
            channel = await connection.channel()
            unrouted = await channel.declare_queue(
                f"{exchange_name}.unrouted", durable=True, passive=True
            )
            got = await take(unrouted, 1)
            assert [(k, b["event_id"]) for k, b in got] == [("acme.message.text", "wamid.1")]
            with pytest.raises(aio_pika.exceptions.ChannelClosed):
                await channel.declare_exchange(f"{exchange_name}.dead", passive=True)
        assert [b["event_id"] for _, b in await take(main, 1)] == ["wamid.2"]
    finally:
        await publisher.close()


@pytest.mark.rabbitmq
async def test_rules_are_read_at_each_publish(
    exchange_name: str, broker: aio_pika.abc.AbstractChannel
) -> None:
    """The routes callable is the live directory's: a rule changed applies to the next
    batch without a new publisher."""
    rules: dict[str, RoutingRule] = {}
    publisher = RabbitPublisher(RABBITMQ_URL, exchange_name, CONFIRM_TIMEOUT_S, routes=rules.get)
    try:
        await publisher.ping()
        main = await bound_queue(broker, exchange_name)
        await publisher.publish([of("acme", 1)])
        rules["acme"] = RoutingRule(routing_key_prefix="v2")
        await publisher.publish([of("acme", 2)])
        assert [k for k, _ in await take(main, 2)] == ["acme.message.text", "v2.acme.message.text"]
    finally:
        await publisher.close()


async def test_the_outbox_records_the_same_routes(tmp_path: Path) -> None:
    rules = {"acme": RoutingRule(exchange="acme.events", vhost="acme", routing_key_prefix="eu")}
    outbox = OutboxPublisher(tmp_path / "outbox.db", routes=rules.get)
    try:
        assert await outbox.publish([of("acme", 1), of("beta", 2)]) == []
    finally:
        await outbox.close()
    rows = list(read_outbox(tmp_path / "outbox.db"))
    assert [(r["routing_key"], r.get("exchange"), r.get("vhost")) for r in rows] == [
        ("eu.acme.message.text", "acme.events", "acme"),
        ("beta.message.text", None, None),
    ]


async def test_an_outbox_of_an_earlier_version_gets_the_route_columns(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    conn = sqlite3.connect(path)  # the outbox table as the version before routes made it
    conn.executescript(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " routing_key TEXT NOT NULL, headers BLOB NOT NULL, body BLOB NOT NULL);"
    )
    conn.execute(
        "INSERT INTO outbox (routing_key, headers, body) VALUES (?, ?, ?)",
        ("beta.message.text", b"{}", orjson.dumps(of("beta", 1).model_dump(mode="json"))),
    )
    conn.commit()
    conn.close()
    assert [r["routing_key"] for r in read_outbox(path)] == ["beta.message.text"]
    rules = {"acme": RoutingRule(exchange="acme.events")}
    outbox = OutboxPublisher(path, routes=rules.get)
    await outbox.publish([of("acme", 2)])
    await outbox.close()
    assert [r.get("exchange") for r in read_outbox(path)] == [None, "acme.events"]


def test_the_longest_prefix_on_the_longest_key_fits_amqp() -> None:
    """Each segment is bounded (models/event_keys.py) and a tenant id is at most 63
    characters, so even a 64-character prefix keeps the key within AMQP's 255 bytes:
    a routing rule never makes an event unpublishable."""
    tenant = "a" * 63
    longest = event(1).model_copy(
        update={"tenant_id": tenant, "category": "c" * 100, "type": "t" * 100}
    )
    rules = {tenant: RoutingRule(routing_key_prefix="p" * 64)}
    encoded, rejected = encode_events([longest], "wa.events", routes=rules.get)
    assert rejected == []
    assert encoded[0].routing_key.startswith("p" * 64 + "." + tenant + ".")
    assert len(encoded[0].routing_key.encode()) <= 255


def inbox_item_of(tenant_id: str, n: int) -> InboxItem:
    key = conversation_key(tenant_id, "106540352242922", "16505550001")
    return inbox_item(n).model_copy(
        update={
            "tenant_id": tenant_id,
            "delivery_id": f"d{tenant_id}{n}",
            "conversation_key": key,
            "conversation_id": conversation_id(key),
            "item": {**inbox_item(n).item, "id": f"wamid.{tenant_id}.{n}"},
        }
    )


async def turns(shard: ConversationShard, n: int) -> None:
    """`n` rounds of the shard's loop, which retries a batch that raised an outage."""
    for _ in range(n):
        with contextlib.suppress(TransientError):
            await shard.run_once()


@pytest.mark.rabbitmq
async def test_a_tenants_broken_vhost_holds_only_its_conversations(
    tmp_path: Path, exchange_name: str, vhost: str, broker: aio_pika.abc.AbstractChannel
) -> None:
    """One partition, two tenants: acme's vhost does not exist. beta's events are
    published at once; acme's conversations wait (uncommitted, no attempt counted, never
    dead-lettered) and go out, numbered from 1, once the vhost exists."""
    directory = TenantDirectory(
        [
            Tenant(
                id="acme",
                app_secrets=(AppSecret(secret=SecretStr("a")),),
                rules=TenantRules(routing=RoutingRule(vhost=vhost)),
            ),
            Tenant(id="beta", app_secrets=(AppSecret(secret=SecretStr("b")),)),
        ]
    )
    publisher = RabbitPublisher(
        RABBITMQ_URL,
        exchange_name,
        CONFIRM_TIMEOUT_S,
        routes=lambda tenant_id: directory.rules(tenant_id).routing,
    )
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    stats = ShardStats()
    config = shard_config(block_ms=1, linger_ms=0, max_item_age_s=None, max_attempts=2)
    shard = ConversationShard(config, inbox, publisher, stats, tenants=directory)
    try:
        await publisher.ping()
        main = await bound_queue(broker, exchange_name)
        items = [inbox_item_of("acme", 1), inbox_item_of("beta", 2), inbox_item_of("acme", 3)]
        assert await inbox.append_deliveries([("d:routes", items)]) == [True]
        await turns(shard, 8)
        got = await take(main, 2)
        assert [(b["tenant_id"], b["type"], b["sequence"]) for _, b in got] == [
            ("beta", "created", 1),
            ("beta", "text", 2),
        ]
        assert await inbox.backlog(0) == 2  # acme's: waiting, not dead
        assert stats.dead == 0

        make_vhost(vhost)
        connection = await aio_pika.connect(vhost_url(vhost))
        async with connection:
            channel = await connection.channel()
            for _ in range(1000):  # held ~1 s (the shard's route-down wait), bounded
                await turns(shard, 1)
                if await inbox.backlog(0) == 0:
                    break
                await asyncio.sleep(0.01)
            assert await inbox.backlog(0) == 0
            unrouted = await channel.declare_queue(
                f"{exchange_name}.unrouted", durable=True, passive=True
            )
            got = await take(unrouted, 3)
            assert [(b["event_id"], b["sequence"]) for _, b in got][1:] == [
                ("wamid.acme.1", 2),
                ("wamid.acme.3", 3),
            ]
        assert stats.dead == 0
    finally:
        await publisher.close()
        await inbox.close()
