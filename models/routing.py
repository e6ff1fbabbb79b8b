"""Conversation keys, conversation ids and partitions: the stable hashing that orders events.

Ordering is per conversation. A conversation is (tenant, business phone_number_id,
customer), where the customer is the `wa_id` when Meta sends one and the business-scoped
`user_id` otherwise, so that a customer keeps one key while Meta rolls out usernames.
Items that belong to no conversation (account, template, ... events) share one key per
tenant, so they stay ordered among themselves; a field change about exactly one customer
or group (user_preferences, group_*) is keyed by that conversation (models/parties.py).
"""

from __future__ import annotations

import hashlib


def conversation_key(tenant_id: str, phone_number_id: str | None, customer: str | None) -> str:
    """The canonical key of a conversation, or the tenant's key for non-conversation items."""
    if customer is None:
        return f"{tenant_id}|~tenant"
    return f"{tenant_id}|{phone_number_id or '-'}|{customer}"


def conversation_id(key: str) -> str:
    """A stable, opaque id for a conversation key (no phone number in clear)."""
    return hashlib.blake2b(key.encode(), digest_size=16, person=b"wa-conv").hexdigest()


def partition_of(key: str, partitions: int) -> int:
    """The inbox partition of a conversation key: stable across processes and restarts."""
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"wa-part").digest()
    return int.from_bytes(digest, "big") % partitions


UNOWNED_PARTITION = -1
"""The inbox partition no shard reads: the changes of a signed delivery whose business number
no tenant owns, kept aside in the same append as the delivery's other items (one entry per
change, the raw change as Meta sent it) so that they can be replayed once the number is
configured. Partitions read by shards are 0..WA_SHARDS-1."""
