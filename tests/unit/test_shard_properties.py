"""Property tests through the real shard: whatever an accepted item holds, the shard
publishes one event for it (or counts it a duplicate), each conversation's stream is
numbered 1..n with its `conversation.created` first, and its partition advances.

Items go through ConversationShard with the embedded SqliteInbox and OutboxPublisher.
Generated: arbitrary JSON text (valid JSON of any value, invalid JSON, nesting beyond
the decoder's and the encoder's limits, escaped lone surrogates, integers beyond 64 bits,
huge strings) in `nfm_reply.response_json`, the one string field the models decode as
JSON; and arbitrary lengths and characters (dots, `#`, `*`, control characters,
non-ASCII, over 255 bytes) in every value that reaches a routing key, an AMQP property or
a header: tenant id, field name, message type, status, ids.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.shard import ConversationShard
from actors.shard_metrics import ShardStats
from adapters.outbox import OutboxPublisher, read_outbox
from models.inbox import InboxItem, ItemKind
from tests.support.configs import defaults, shard_config, sqlite_inbox
from tests.support.events import check_streams, conversation_kinds, inbox_item, item_events, store

_SEGMENT = re.compile(r"[a-z0-9_-]+")
_CHARS = st.characters(exclude_categories=["Cs"])  # what the ingress's orjson can produce
text = st.text(_CHARS, max_size=24)
awkward = st.text(st.sampled_from(".#*\x00\x1f\x7f \n/é€😀A"), min_size=1, max_size=12)
over_long = st.builds(
    lambda s, n: s * n, st.text(_CHARS, min_size=1, max_size=4), st.integers(64, 700)
)
routed = text | awkward | over_long
ids = routed | st.just("") | st.builds("wamid.{}".format, st.integers(0, 3))

# What orjson can store: 64-bit integers, finite floats, text without lone surrogates.
stored_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
# What json.loads accepts (and more): any integer, NaN and infinities, escaped surrogates.
any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(), max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
json_texts = st.one_of(
    st.builds(json.dumps, any_json),
    text,
    st.builds(lambda d: "[" * d + "]" * d, st.integers(1, 6000)),
    st.builds(lambda d: '{"a":' * d + "1" + "}" * d, st.integers(1, 600)),
    st.builds(
        lambda s: json.dumps({"s": s}),
        st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),
    ),
    st.builds(lambda n: json.dumps({"n": n}), st.integers(2**64, 2**200)),
    st.builds(lambda n: '{"s": "' + "x" * n + '"}', st.integers(50_000, 400_000)),
)


@st.composite
def raw_items(draw: st.DrawFn, kind: ItemKind) -> Any:
    """The raw item of `kind`, its routed and decoded values drawn from the above."""
    if kind == "message":
        return {
            "from": draw(text),
            "id": draw(ids),
            "timestamp": "1750000000",
            "type": draw(st.sampled_from(["interactive", "text"]) | routed),
            "text": {"body": draw(text)},
            "interactive": {
                "type": "nfm_reply",
                "nfm_reply": {"name": draw(text), "response_json": draw(json_texts)},
            },
        }
    if kind == "status":
        return {
            "id": draw(ids),
            "status": draw(routed),
            "timestamp": "1750000000",
            "recipient_id": draw(text),
            "recipient_participant_id": draw(st.none() | routed),
        }
    if kind == "error":
        return {"code": draw(st.integers(-(2**63), 2**63 - 1)), "title": draw(routed)}
    return draw(stored_json)


@st.composite
def items(draw: st.DrawFn, n: int) -> InboxItem:
    """Item n of a generated batch: any kind, any tenant and field, routed values drawn."""
    kind: ItemKind = draw(st.sampled_from(["message", "status", "error", "field"]))
    field = draw(st.sampled_from(["messages", "calls", "user_preferences", "history"]) | routed)
    return inbox_item(n, conversation=f"c{n % 3}", kind=kind).model_copy(
        update={
            "item": draw(raw_items(kind)),  # any JSON value, null included
            "tenant_id": draw(st.sampled_from(["acme"]) | routed),
            "field": field,
            "waba_id": draw(st.none() | routed),
            "display_phone_number": draw(st.none() | routed),
        }
    )


batches = st.integers(1, 6).flatmap(lambda size: st.tuples(*(items(n) for n in range(size))))
# No age limit, or the default one: the items' Meta time (2025-06-15) is far older than
# their arrival (2026-01-01), so under the limit the messages and statuses are replays.
max_ages = st.sampled_from([None, float(defaults().max_item_age_s)])


def _check_row(row: dict[str, Any]) -> None:
    key: str = row["routing_key"]
    assert len(key.encode()) <= 255, key
    segments = key.split(".")
    assert len(segments) == 3, key
    assert all(_SEGMENT.fullmatch(segment) for segment in segments), key
    for name, value in row["headers"].items():
        assert isinstance(value, int) or (isinstance(value, str) and len(value.encode()) <= 255), (
            name,
            value,
        )


async def _publish_all(batch: tuple[InboxItem, ...], max_age_s: float | None, folder: Path) -> None:
    inbox = sqlite_inbox(folder / "inbox.db")
    outbox = OutboxPublisher(folder / "outbox.db")
    stats = ShardStats()
    try:
        await store(inbox, batch)
        config = shard_config(block_ms=0, max_item_age_s=max_age_s)
        shard = ConversationShard(config, inbox, outbox, stats)
        # Each run_once commits a batch or raises; a raise here is a batch the loop would
        # retry forever, so it fails the example.
        for _ in range(len(batch) + 1):
            if await inbox.backlog(0) == 0:
                break
            await shard.run_once()
        assert await inbox.backlog(0) == 0, "the partition did not advance"
    finally:
        await inbox.close()
        await outbox.close()
    rows = list(read_outbox(folder / "outbox.db"))
    events = [row["event"] for row in rows]
    assert len(item_events(events)) + stats.duplicates == len(batch)
    if max_age_s is None:
        check_streams(events, conversation_kinds(batch))
    else:  # replays: only the numbering is checked (whether they make state events aside)
        for cid in {e["conversation_id"] for e in events}:
            sequences = [e["sequence"] for e in events if e["conversation_id"] == cid]
            assert sequences == list(range(1, len(sequences) + 1)), cid
    for row in rows:
        _check_row(row)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batches, max_ages)
def test_every_accepted_item_is_published_and_the_partition_advances(
    batch: tuple[InboxItem, ...], max_age_s: float | None
) -> None:
    """Any batch of accepted items: one event (or a counted duplicate) per item, each
    conversation numbered 1..n in publish order (a new one's `conversation.created`
    first), bounded routing keys of exactly three safe segments (state events' too),
    bounded headers, and no batch retried."""
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_publish_all(batch, max_age_s, Path(folder)))
