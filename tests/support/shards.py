"""Shard test helpers: poison items (a flow reply whose `response_json` makes a per-item
step raise) and draining a shard batch by batch."""

from __future__ import annotations

from actors.shard import ConversationShard
from models.inbox import InboxItem
from tests.support.events import inbox_item


def flow_reply(n: int, response_json: str) -> InboxItem:
    """Item n: a completed WhatsApp Flow whose answers are `response_json`."""
    return inbox_item(
        n,
        raw={
            "from": "16505550001",
            "id": f"wamid.{n}",
            "timestamp": "1750000000",
            "type": "interactive",
            "interactive": {
                "type": "nfm_reply",
                "nfm_reply": {"name": "flow", "body": "Sent", "response_json": response_json},
            },
        },
    )


POISON = {
    # json.loads raises RecursionError, which pydantic does not turn into a ValidationError.
    "too_deep_to_decode": "[" * 5000 + "]" * 5000,
    # Decodes to an object; orjson refuses to serialize more than 255 levels.
    "too_deep_to_serialize": '{"a":' * 300 + "1" + "}" * 300,
    # Decodes to a str holding a lone surrogate, which is not UTF-8.
    "lone_surrogate": '{"a": "\\ud800"}',
    # Decodes to a Python int orjson cannot encode.
    "integer_beyond_64_bits": '{"n": 100000000000000000000000000000}',
}


async def drain(shard: ConversationShard, limit: int = 50) -> list[int]:
    """Batch sizes until a read comes back empty."""
    sizes: list[int] = []
    for _ in range(limit):
        done = await shard.run_once()
        if done == 0:
            return sizes
        sizes.append(done)
    raise AssertionError(f"not drained after {limit} batches: {sizes}")
