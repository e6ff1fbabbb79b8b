"""The dedup marks' keys are a storage format: marks already in Redis/SQLite must match."""

from __future__ import annotations

from models.dedup import delivery_key, item_key


def test_the_delivery_key_is_d_and_128_bits_of_the_body_sha256() -> None:
    """Pinned values: a changed rule would forget every delivery marked in the window."""
    assert delivery_key(b"") == "d:e3b0c44298fc1c149afbf4c8996fb924"
    assert delivery_key(b'{"object":"whatsapp_business_account"}') == (
        "d:84beda0a3f54e00fc981d1d72f4dedd3"
    )


def test_the_item_key_is_i_and_128_bits_of_sha256_over_tenant_nul_event_id() -> None:
    """Pinned values (UTF-8 for a non-ASCII tenant): the same marks as before the move."""
    assert item_key("acme", "wamid.1") == "i:f6f387700ed283affaacd7a22a6b7a99"
    assert item_key("tenánt", "wamid.HBgL=:read:16505550001") == (
        "i:eeefc1c37ad551376ff64d54a8251e73"
    )


def test_the_tenant_is_part_of_the_item_key() -> None:
    """Two tenants' events with one id are two marks; the separator keeps `a`+`bc` from
    `ab`+`c`."""
    assert item_key("acme", "wamid.1") != item_key("other", "wamid.1")
    assert item_key("a", "bc") != item_key("ab", "c")
