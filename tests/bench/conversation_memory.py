"""Bench (not a test): a shard's memory per resident conversation, over 100k conversations.

    .venv/bin/python -m tests.bench.conversation_memory [--conversations 100000]

Applies one customer message (with a profile name) to each of N new conversations through
the real conversation actor (actors/conversation.py) and keeps each resulting record in a
ConversationCache sized for all of them, as a shard does; prints the traced bytes
(tracemalloc) and the RSS growth per resident conversation. The drafts are made and freed
outside the measure.
"""

from __future__ import annotations

import argparse
import gc
import resource
import tracemalloc
from datetime import UTC, datetime

from actors.conversation import apply
from actors.conversation_cache import ConversationCache
from actors.normalize import normalize
from models.conversation import ConversationRecord
from models.inbox import InboxItem
from models.routing import conversation_id, conversation_key


def _record(n: int, at: datetime) -> ConversationRecord:
    customer = f"1650{n:07d}"
    key = conversation_key("acme", "106540352242922", customer)
    draft = normalize(
        InboxItem(
            tenant_id="acme",
            delivery_id=f"d{n}",
            received_at=at,
            kind="message",
            field="messages",
            position=(0, 0, 0),
            phone_number_id="106540352242922",
            display_phone_number="15550100001",
            conversation_key=key,
            conversation_id=conversation_id(key),
            partition=0,
            contact={"wa_id": customer, "profile": {"name": f"Customer Number {n}"}},
            item={
                "from": customer,
                "id": f"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA{n}",
                "timestamp": str(int(at.timestamp())),
                "type": "text",
                "text": {"body": "hello"},
            },
        )
    )
    return apply(None, draft, {}).record.model_copy(update={"last_sequence": 2})


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    """Measure and print bytes per resident conversation."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=100_000)
    args = parser.parse_args()
    at = datetime(2026, 3, 1, tzinfo=UTC)
    cache = ConversationCache(args.conversations, idle_s=10**9)
    _record(0, at)  # imports and caches warm
    gc.collect()
    rss_before = _rss_kib()
    tracemalloc.start()
    traced_before = tracemalloc.get_traced_memory()[0]
    for start in range(0, args.conversations, 1000):
        cache.put(
            {r.conversation_id: r for r in (_record(n, at) for n in range(start, start + 1000))}
        )
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - traced_before
    tracemalloc.stop()
    rss = (_rss_kib() - rss_before) * 1024
    assert len(cache) == args.conversations
    n = args.conversations
    print(f"conversations={n} resident={len(cache)}")
    print(f"traced: {traced} bytes = {traced / n:.0f} B per resident conversation")
    print(f"RSS growth (incl. tracemalloc's own overhead): {rss / n:.0f} B per conversation")


if __name__ == "__main__":
    main()
