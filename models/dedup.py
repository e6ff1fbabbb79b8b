"""The keys of the deduplication marks: one rule per mark, shared by the ingress and the shards.

Both marks live in the inbox store (Redis keys, SQLite rows) for the dedup window, so these
strings are a storage format: change a rule and every mark already written stops matching,
and Meta's retries of the last seven days are published again. 128 bits of SHA-256 keep
collisions out of reach and the keys short (the Redis memory per mark is measured by
tests/bench/redis_dedup_memory.py).
"""

from __future__ import annotations

import hashlib


def delivery_key(body: bytes) -> str:
    """The delivery's mark, `d:` + 32 hex of SHA-256 over the raw body: a retry repeats it."""
    return "d:" + hashlib.sha256(body).hexdigest()[:32]


def item_key(tenant_id: str, event_id: str) -> str:
    """The item's mark, `i:` + 32 hex of SHA-256 over `<tenant>\\0<event_id>` (UTF-8).

    The event id is the consumers' idempotency key; the tenant keeps two tenants' ids apart.
    """
    digest = hashlib.sha256(f"{tenant_id}\0{event_id}".encode()).hexdigest()
    return "i:" + digest[:32]
