"""RabbitMQ down, as the ingress sees it: webhooks are still acknowledged into the inbox,
/readyz stays 200 and names the broker and the backlog, and both come back by themselves.

The broker is a node of this module's own (tests/support/rabbitmq_server.py), stopped and
started with `stop_app`/`start_app`, or a port nobody listens on; the machine's broker is
never touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aio_pika
import httpx
import orjson
import pytest
import structlog

from actors.shard import ConversationShard
from actors.shard_metrics import ShardStats
from adapters.consumer_queues import ConsumerQueue
from adapters.errors import TransientError
from adapters.rabbitmq import RabbitPublisher
from cluster.settings import Settings
from cluster.wiring import Wiring, ingress_deps
from ingress.app import create_app
from ingress.health import inbox_backlog, publisher_check
from tests.support.app import ingress_client, signed
from tests.support.bodies import envelope, messages_value, text_message, two_customers_and_a_status
from tests.support.configs import rabbit_publisher, shard_config, sqlite_inbox
from tests.support.events import check_streams, event
from tests.support.rabbitmq_server import RabbitNode, rabbitmq_node

__all__ = ["rabbitmq_node"]  # the module's own broker node (a fixture)

pytestmark = pytest.mark.rabbitmq

_RECOVERY_BOUND_S = 30.0  # aio-pika reconnects every 5 s; a bound, not a speed


async def until(predicate: Callable[[], Awaitable[bool]], bound_s: float) -> None:
    """Poll `predicate` until it is true, within `bound_s` (else the test fails)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    while not await predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


async def test_a_stopped_broker_keeps_the_ingress_ready_and_storing(
    rabbitmq_node: RabbitNode, tmp_path: Path
) -> None:
    """stop_app: 200 accepted, /readyz 200 with the publisher degraded and the backlog;
    a shard's publish fails as an outage (retried); start_app: ok again and the same
    publisher publishes, without a restart."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    publisher = rabbit_publisher("watest.outage", url=rabbitmq_node.url)
    check = publisher_check(publisher.ping, inbox_backlog(inbox, 4))
    raw, headers = signed(two_customers_and_a_status())
    try:
        async with ingress_client(tmp_path, inbox=inbox, ready_checks={"publisher": check}) as (
            client,
            _,
        ):
            assert (await client.get("/readyz")).json()["checks"]["publisher"] == "ok"
            rabbitmq_node.stop_app()
            try:
                accepted = await client.post("/webhook", content=raw, headers=headers)
                ready = await client.get("/readyz")
                with pytest.raises(TransientError):
                    await publisher.publish([event(1)])
            finally:
                rabbitmq_node.start_app()
            assert (accepted.status_code, accepted.json()["status"]) == (200, "accepted")
            assert ready.status_code == 200
            detail = ready.json()["checks"]["publisher"]
            assert detail.startswith("degraded: unreachable (TransientError)"), detail
            assert detail.endswith("inbox backlog 3 entries"), detail

            async def publisher_ok() -> bool:
                return bool((await client.get("/readyz")).json()["checks"]["publisher"] == "ok")

            started = asyncio.get_running_loop().time()
            await until(publisher_ok, _RECOVERY_BOUND_S)
            took = asyncio.get_running_loop().time() - started
            print(f"broker back: /readyz publisher ok {took:.1f}s after start_app returned")
        assert await publisher.publish([event(1)]) == []
    finally:
        await publisher.close()


async def test_the_service_wiring_reports_an_unreachable_broker_without_failing_readiness(
    tmp_path: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ingress's deps as a replica builds them, WA_RABBITMQ_URL refused: /readyz 200,
    the publisher `degraded` with the backlog (the check the service runs, not a stand-in)."""
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)  # ingress_deps sets it
    url = f"amqp://guest:guest@127.0.0.1:{closed_port}/"
    wiring = Wiring.from_settings(Settings.model_construct(rabbitmq_url=url, data_dir=tmp_path))
    deps = ingress_deps(wiring)
    try:
        transport = httpx.ASGITransport(app=create_app(deps))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            ready = await client.get("/readyz")
    finally:
        await deps.close()
        # ingress_deps configures the replica's logging (loggers cached on first use):
        # undo it, or every later test's loggers would be bound to this configuration.
        structlog.reset_defaults()
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["publisher"] == (
        "degraded: unreachable (TransientError): deliveries are stored and published when "
        "it is back; inbox backlog 0 entries"
    )


async def test_shards_back_off_while_the_broker_is_down_and_drain_in_order_after(
    rabbitmq_node: RabbitNode, tmp_path: Path
) -> None:
    """A shard's loop with the broker stopped: deliveries are acknowledged and wait in the
    inbox (/readyz names them), the shard retries with backoff; start_app: the backlog
    drains by itself into a provisioned consumer queue, each conversation in sequence."""
    queue_name = "watest.outage.svc"
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    queues = [ConsumerQueue(queue_name, ("#",), 5)]
    exchange = "watest.outage.drain"
    ingress_publisher = RabbitPublisher(rabbitmq_node.url, exchange, 30.0, queues=queues)
    shard_publisher = RabbitPublisher(rabbitmq_node.url, exchange, 30.0, queues=queues)
    await ingress_publisher.ping()  # the topology, the consumer queue included
    stats = ShardStats()
    shard = ConversationShard(shard_config(partition=0, block_ms=10), inbox, shard_publisher, stats)
    check = publisher_check(ingress_publisher.ping, inbox_backlog(inbox, 1))
    loop = asyncio.create_task(shard.run())
    senders = [f"1650555{n:04d}" for n in range(5)]
    try:
        async with ingress_client(
            tmp_path, inbox=inbox, partitions=1, ready_checks={"publisher": check}
        ) as (client, _):
            rabbitmq_node.stop_app()
            try:
                for n, sender in enumerate(senders):
                    message = text_message(f"wamid.drain.{n}", sender)
                    raw, headers = signed(envelope(("messages", messages_value([message]))))
                    answer = await client.post("/webhook", content=raw, headers=headers)
                    assert answer.json()["status"] == "accepted"

                async def retried() -> bool:
                    return stats.publish_failures >= 2

                await until(retried, _RECOVERY_BOUND_S)
                detail = (await client.get("/readyz")).json()["checks"]["publisher"]
            finally:
                rabbitmq_node.start_app()
            assert detail.endswith(f"inbox backlog {len(senders)} entries"), detail

            async def drained() -> bool:
                return await inbox.backlog(0) == 0

            back = asyncio.get_running_loop().time()
            await until(drained, 2 * _RECOVERY_BOUND_S)
            took = asyncio.get_running_loop().time() - back
            print(f"broker back: backlog drained {took:.1f}s after start_app returned")
    finally:
        shard.stop()
        await loop
        await asyncio.gather(ingress_publisher.close(), shard_publisher.close())
    connection = await aio_pika.connect(rabbitmq_node.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name, ensure=True)
        events = []
        while (delivered := await queue.get(fail=False)) is not None:
            events.append(orjson.loads(delivered.body))
            await delivered.ack()
        await channel.queue_delete(queue_name)
    # Each sender's conversation: its `conversation.created`, then its message (1, 2).
    check_streams(events, {e["conversation_id"]: "customer" for e in events})
    assert sorted(e["event_id"] for e in events if e["category"] == "message") == [
        f"wamid.drain.{n}" for n in range(len(senders))
    ]
