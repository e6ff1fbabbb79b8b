"""Customer enrichment from the wa_id (issue 12 point 5): E.164, calling code, region, the
prefix's time zones and the line type, offline; what is not a number yields nothing."""

from __future__ import annotations

import pytest

from actors.enrich import build_customer, phone_facts


@pytest.mark.parametrize(
    ("wa_id", "e164", "region", "zones", "line"),
    [
        ("16505551234", "+16505551234", "US", ("America/Los_Angeles",), "fixed_line_or_mobile"),
        ("4915112345678", "+4915112345678", "DE", ("Europe/Berlin",), "mobile"),
        ("5511912345678", "+5511912345678", "BR", ("America/Sao_Paulo",), "mobile"),
        # A toll-free prefix spans the whole plan: no time zone rather than 42.
        ("18005551234", "+18005551234", "US", None, "toll_free"),
    ],
)
def test_a_number_is_enriched_offline(
    wa_id: str, e164: str, region: str, zones: tuple[str, ...] | None, line: str
) -> None:
    customer = build_customer(wa_id, None, None)
    assert customer is not None
    assert (customer.phone_e164, customer.region, customer.time_zones, customer.line_type) == (
        e164,
        region,
        zones,
        line,
    )
    # Published as JSON lists.
    dumped = customer.model_dump(mode="json")
    assert dumped["time_zones"] == (list(zones) if zones else None)


@pytest.mark.parametrize("wa_id", ["12345", "not-a-number", "", None, "999999999999999999"])
def test_what_is_not_a_number_yields_nothing(wa_id: str | None) -> None:
    assert phone_facts(wa_id) == (None, None, None, None, None)


def test_repeated_customers_are_looked_up_once() -> None:
    phone_facts.cache_clear()
    for _ in range(3):
        phone_facts("447911123456")
    info = phone_facts.cache_info()
    assert (info.misses, info.hits) == (1, 2)
