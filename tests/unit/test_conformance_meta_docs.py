"""Conformance: every payload of Meta's documentation goes through the whole pipeline.

Reads `../shared/fixtures/payloads/meta-docs/*.json` (relative to the repository; the
module is skipped only when that folder is absent), signs each body, POSTs it to the
ingress app (httpx ASGI transport, SQLite inbox), drives the conversation shards over
every partition into the SQLite outbox until the inbox is empty, and checks that the
body was accepted and yielded exactly one event per item, each customer or group
conversation's stream led by its one `conversation.created` and numbered 1..n.

What is allowed (per MANIFEST.md): files marked *template* carry `<PLACEHOLDER>` values.
An event of such a file may be `unsupported` only when every validation issue points at
a placeholder string (in practice `"<WEBHOOK_TRIGGER_TIMESTAMP>"` where Meta puts unix
seconds: a timestamp is never guessed). The same body with its placeholder timestamps
replaced by real ones must then normalize with no `unsupported` event at all.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from actors.shard import ConversationShard
from adapters.outbox import OutboxPublisher, read_outbox
from adapters.sqlite_inbox import SqliteInbox
from ingress.app import IngressDeps, create_app
from ingress.signature import sign
from models.envelope import DeliveryContext, split_delivery
from models.event import NormalizedEvent, UnsupportedData
from models.tenant import Tenant, TenantDirectory
from tests.support.configs import ingress_config, shard_config, sqlite_inbox
from tests.support.events import check_streams, conversation_kinds, item_events
from tests.support.webhooks import RECEIVED_AT, run_pipeline

PAYLOADS = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "payloads"
FILES = sorted((PAYLOADS / "meta-docs").glob("*.json"))
PARTITIONS = 4
SECRET = "conformance-secret"
PLACEHOLDER = re.compile(r"<[A-Z0-9_]+>")

pytestmark = pytest.mark.skipif(
    not (PAYLOADS / "meta-docs").is_dir(), reason=f"{PAYLOADS} is absent"
)


def _value_at(raw: Any, loc: str) -> Any:
    """The raw value a validation issue points at. A message's loc starts with the union
    tag (e.g. `text.timestamp`), which is not a key of the item: try without it too."""
    parts = loc.split(".")
    for path in (parts, parts[1:]):
        node = raw
        for part in path:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                break
        else:
            return node
    return None


def _fill_placeholder_timestamps(node: Any, key: str = "") -> Any:
    """The body with `<PLACEHOLDER>` timestamps replaced by real unix seconds."""
    if isinstance(node, dict):
        return {k: _fill_placeholder_timestamps(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill_placeholder_timestamps(v, key) for v in node]
    if isinstance(node, str) and "timestamp" in key and PLACEHOLDER.search(node):
        return "1767225600"
    return node


async def _drive_shards(inbox: SqliteInbox, publisher: OutboxPublisher) -> None:
    # No age limit: the documentation's timestamps are years old, and under one its items
    # would be published as `replay`, which is not what this test is about.
    config = functools.partial(shard_config, block_ms=0, max_item_age_s=None)
    shards = [ConversationShard(config(partition=p), inbox, publisher) for p in range(PARTITIONS)]
    for _ in range(100):
        if sum([await shard.run_once() for shard in shards]) == 0:
            break
    assert sum([await inbox.backlog(p) for p in range(PARTITIONS)]) == 0


@pytest.mark.skipif(not FILES, reason="no meta-docs payloads")
@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
async def test_meta_docs_payload_is_accepted_and_fully_normalized(
    path: Path, tmp_path: Path
) -> None:
    """200, one event per item, and `unsupported` only where a placeholder is the cause."""
    raw = path.read_bytes()  # noqa: ASYNC240 -- a small local fixture, read once per test
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    publisher = OutboxPublisher(tmp_path / "outbox.db")
    tenant = Tenant(id="conformance", app_secrets=(SecretStr(SECRET),), default=True)
    app = create_app(
        IngressDeps(
            config=ingress_config(partitions=PARTITIONS),
            directory=TenantDirectory([tenant]),
            inbox=inbox,
        )
    )
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": sign(SECRET.encode(), raw),
    }
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post("/webhook", content=raw, headers=headers)
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        await _drive_shards(inbox, publisher)
    finally:
        await inbox.close()
        await publisher.close()

    rows = list(read_outbox(tmp_path / "outbox.db", limit=10_000))
    published = [NormalizedEvent.model_validate(row["event"]) for row in rows]
    assert all(row["routing_key"] == e.routing_key for row, e in zip(rows, published, strict=True))
    ctx = DeliveryContext("conformance", RECEIVED_AT, PARTITIONS)
    split = split_delivery(orjson.loads(raw), ctx, lambda _number, _waba: tenant.id)
    check_streams([row["event"] for row in rows], conversation_kinds(split))
    events = item_events(published)
    assert len(events) == items == len(split) >= 1

    template = PLACEHOLDER.search(raw.decode("utf-8")) is not None
    for event in events:
        if not isinstance(event.data, UnsupportedData):
            continue
        assert template, f"{path.name}: well-formed item published as unsupported"
        for issue in event.data.issues:
            culprit = _value_at(event.data.raw, issue.loc)
            assert isinstance(culprit, str), issue
            assert PLACEHOLDER.search(culprit), issue

    if template:
        filled = _fill_placeholder_timestamps(copy.deepcopy(orjson.loads(raw)))
        _, normalized = run_pipeline(filled)
        assert [e.category for e in normalized if e.category == "unsupported"] == []
