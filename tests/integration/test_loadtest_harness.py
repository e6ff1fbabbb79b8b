"""The harness against the real ingress app and shard loop, in one process, on loopback."""

from __future__ import annotations

import asyncio
import io
import socket
from pathlib import Path

import uvicorn

from actors.shard import ConversationShard
from adapters.outbox import OutboxPublisher, read_outbox
from ingress.app import IngressDeps, create_app
from loadtest.consumers import OutboxSource
from loadtest.harness import RunConfig, run_load
from loadtest.sender import RetryPolicy
from loadtest.tenants import generate_tenants, to_tenants_file
from loadtest.traffic import TrafficGenerator
from models.conversation import ConversationKind
from models.routing import conversation_id, conversation_key
from models.tenant import TenantDirectory
from tests.support.configs import ingress_config, shard_config, sqlite_inbox
from tests.support.events import check_streams, is_state_event

PARTITIONS = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_harness_counts_no_loss_and_no_order_breaks(tmp_path: Path) -> None:
    """Three seconds at 40 req/s of batched, duplicated, reordered traffic: every acked
    item is published, no conversation goes backwards (state events included), nothing is
    published more often than the generator sent it, and the `conversation.created` /
    `.updated` events are counted apart, as the outbox holds them."""
    tenants = generate_tenants(2, seed=7)
    directory = TenantDirectory(to_tenants_file(tenants).tenants)
    inbox_path, outbox_path = tmp_path / "inbox.db", tmp_path / "outbox.db"
    deps = IngressDeps(ingress_config(partitions=PARTITIONS), directory, sqlite_inbox(inbox_path))
    shard_inbox, publisher = sqlite_inbox(inbox_path), OutboxPublisher(outbox_path)
    shards = [
        ConversationShard(shard_config(partition=p, block_ms=20), shard_inbox, publisher)
        for p in range(PARTITIONS)
    ]
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(deps),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws="none",
            lifespan="off",
        )
    )
    serving = asyncio.create_task(server.serve())
    shard_tasks = [asyncio.create_task(s.run()) for s in shards]
    try:
        while not server.started:  # noqa: ASYNC110 -- uvicorn exposes a flag, not an event
            await asyncio.sleep(0.02)
        generator = TrafficGenerator(
            tenants,
            conversations=30,
            batch=3,
            dup_rate=0.2,
            reorder_rate=0.3,
            field_rate=0.05,
            seed=11,
        )
        cfg = RunConfig(
            url=f"http://127.0.0.1:{port}/webhook",
            rate=40,
            duration_s=3,
            connections=16,
            grace_s=20,
            retry=RetryPolicy(max_attempts=3, base_s=0.1),
            progress=False,
        )
        _state, report = await run_load(cfg, generator, OutboxSource(outbox_path), io.StringIO())
    finally:
        for shard in shards:
            shard.stop()
        server.should_exit = True
        await asyncio.gather(serving, *shard_tasks)
        await deps.inbox.close()
        await shard_inbox.close()
        await publisher.close()

    events = report["events"]
    assert report["requests"]["acked"] == 120
    assert report["requests"]["errors_by_status"] == {}
    assert events["keys_acked"] > 300
    assert events["lost"] == 0, events["lost_examples"]
    assert events["order_violations"] == 0
    assert events["foreign_events"] == 0
    assert generator.stats.resent_bodies + generator.stats.reused_items > 0
    assert events["deliberate_copies"] > 0
    # Whether or not the service deduplicates deliveries, it never publishes an item more
    # often than it was sent.
    assert events["published_duplicates"] <= events["deliberate_copies"]
    assert events["unexpected_duplicates"] == 0
    assert report["ack_to_published_ms"]["count"] == events["keys_acked"]

    # The harness's counts against the whole stream the outbox holds (all of it this run's):
    # each customer conversation opened by its one `conversation.created`, every
    # conversation numbered 1..n with its state events; the tenants' field events none.
    published = [row["event"] for row in read_outbox(outbox_path, limit=100_000)]
    tenant_streams = {conversation_id(conversation_key(t.id, None, None)) for t in tenants}
    kinds: dict[str, ConversationKind] = {  # the generator makes no group conversations
        e["conversation_id"]: "tenant" if e["conversation_id"] in tenant_streams else "customer"
        for e in published
    }
    check_streams(published, kinds)
    state = [e for e in published if is_state_event(e)]
    customers = sum(1 for kind in kinds.values() if kind == "customer")
    assert customers > 0
    assert events["published_events"] == len(published) - len(state)
    assert events["state_events"] == len(state)
    assert sum(events["state_events_by_type"].values()) == len(state)
    assert events["state_events_by_type"]["created"] == customers
    assert (events["conversations_created"], events["repeated_created"]) == (customers, 0)
    assert events["sequence_gaps"] == 0
