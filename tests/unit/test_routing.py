"""Conversation keys and partitions."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from models.routing import conversation_id, conversation_key, partition_of


def test_partition_is_stable_across_processes() -> None:
    """Python's hash() is salted per process; the partition must not be."""
    key = conversation_key("acme", "123", "16505550001")
    code = f"from models.routing import partition_of;print(partition_of({key!r}, 16))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert int(other) == partition_of(key, 16)


def test_partitions_spread_conversations_evenly() -> None:
    """10,000 customers over 8 partitions: none gets less than half or more than 1.5x its share."""
    counts = Counter(
        partition_of(conversation_key("t", "p", f"1650555{i:05d}"), 8) for i in range(10_000)
    )
    assert set(counts) == set(range(8))
    assert all(625 < n < 1875 for n in counts.values())


def test_conversation_id_hides_the_phone_number_and_differs_per_tenant() -> None:
    """The id is opaque (no number in clear) and the same customer of two tenants differs."""
    a = conversation_id(conversation_key("a", "p", "16505550001"))
    b = conversation_id(conversation_key("b", "p", "16505550001"))
    assert "16505550001" not in a
    assert a != b
    assert a == conversation_id(conversation_key("a", "p", "16505550001"))


def test_non_conversation_items_share_the_tenant_key() -> None:
    """Account/template events have no customer: one key per tenant keeps them ordered."""
    assert conversation_key("acme", "1", None) == conversation_key("acme", "2", None)
