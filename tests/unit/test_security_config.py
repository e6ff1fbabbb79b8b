"""Source addresses, the allowlist CLI and the security settings checks."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from adapters.codec import dump_item, load_item
from cluster.__main__ import main
from cluster.allowlist import WhoisParseError, routes_from_whois
from cluster.settings import MAX_JSON_DEPTH, Settings, SettingsError
from cluster.wiring import Wiring
from ingress.bounds import BodyOutOfBounds, check_bounds
from ingress.client_ip import SourcePolicy, mask_address, parse_address, parse_networks
from models.envelope import DeliveryContext, split_signed
from tests.support.bodies import envelope, messages_value, text_message

WHOIS = Path(__file__).resolve().parents[1] / "fixtures" / "whois" / "as32934_routes.txt"
POLICY = SourcePolicy(
    trusted_proxies=parse_networks(["127.0.0.0/8", "::1/128", "10.0.0.0/8"]),
    allowed=parse_networks(["203.0.113.0/24", "2001:db8::/32"]),
)


@pytest.mark.parametrize(
    ("peer", "xff", "client"),
    [
        ("203.0.113.7", [], "203.0.113.7"),
        ("198.51.100.1", ["203.0.113.7"], "198.51.100.1"),  # untrusted peer: header ignored
        ("127.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        ("127.0.0.1", ["203.0.113.7, 10.0.0.9"], "203.0.113.7"),  # two proxy hops
        ("127.0.0.1", ["1.2.3.4, 198.51.100.2"], "198.51.100.2"),  # right-most untrusted
        ("127.0.0.1", ["1.2.3.4", "198.51.100.2"], "198.51.100.2"),  # several header lines
        ("10.0.0.5", ["[2001:db8::5]:443"], "2001:db8::5"),
        ("::ffff:203.0.113.7", [], "203.0.113.7"),  # IPv4-mapped IPv6 peer
        ("127.0.0.1", ["garbage"], None),
        (None, [], None),
    ],
)
def test_the_client_is_the_first_untrusted_hop(
    peer: str | None, xff: list[str], client: str | None
) -> None:
    """Walk from the peer through trusted proxies only."""
    found = POLICY.client(peer, xff)
    assert (str(found) if found else None) == client


def test_the_allowlist_holds_v4_and_v6_and_off_allows_all() -> None:
    """Inside a network: allowed; outside or unknown: refused; no allowlist: all allowed."""
    assert POLICY.allows(parse_address("203.0.113.250"))
    assert POLICY.allows(parse_address("2001:db8:1::1"))
    assert not POLICY.allows(parse_address("203.0.114.1"))
    assert not POLICY.allows(None)
    assert SourcePolicy().allows(None)


def test_addresses_are_logged_masked() -> None:
    """A /24 or /48, never the full address."""
    assert mask_address(parse_address("203.0.113.77")) == "203.0.113.0/24"
    assert mask_address(parse_address("2001:db8:1:2::5")) == "2001:db8:1::/48"


def test_whois_routes_become_a_collapsed_allowlist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """route:/route6: lines -> sorted CIDRs, duplicates and covered networks removed."""
    networks = routes_from_whois(WHOIS.read_text())
    as_text = [str(n) for n in networks]
    assert "31.13.64.0/19" not in as_text
    assert "31.13.64.0/18" in as_text
    assert as_text.count("31.13.24.0/21") == 1
    assert "2a03:2880::/31" in as_text  # 2a03:2880::/32 + 2a03:2881::/32
    assert all(isinstance(n, ipaddress.IPv4Network) for n in networks[:3])
    out = tmp_path / "allow.txt"
    assert main(["allowlist", "from-whois", str(WHOIS), "-o", str(out)]) == 0
    settings = Settings(profile="embedded", allowlist_enabled=True, allowlist_file=out)
    assert settings.allowed_networks() == tuple(networks)
    assert main(["allowlist", "from-whois", str(tmp_path / "missing.txt")]) == 2


def test_whois_without_routes_or_with_a_bad_route_is_refused() -> None:
    """An empty or corrupt capture never yields an empty or wrong allowlist."""
    with pytest.raises(WhoisParseError):
        routes_from_whois("% no entries found\n")
    with pytest.raises(WhoisParseError):
        routes_from_whois("route: 31.13.24.1/21\n")


def _production(**kw: object) -> Settings:
    base: dict[str, object] = {
        "profile": "production",
        "redis_url": "redis://x",
        "rabbitmq_url": "amqp://x",
        "app_secret": SecretStr("prod-app-secret"),
    }
    return Settings(**{**base, **kw})  # type: ignore[arg-type]


def test_production_turns_the_allowlist_on_and_refuses_it_empty() -> None:
    """Fail closed: production without CIDRs does not start unless explicitly disabled."""
    with pytest.raises(SettingsError, match="allowlist"):
        _production().check()
    _production(allowlist_enabled=False).check()
    wiring = Wiring.from_settings(_production(allowed_cidrs="157.240.0.0/17, 2a03:2880::/32"))
    assert wiring.ingress.source_policy.allows(parse_address("157.240.1.1"))
    assert not wiring.ingress.source_policy.allows(parse_address("8.8.8.8"))
    embedded = Wiring.from_settings(Settings(profile="embedded"))
    assert embedded.ingress.source_policy.allowed is None


@pytest.mark.parametrize(
    "kw",
    [
        {"admin_token": SecretStr("prod-app-secret")},
        {"admin_token": SecretStr("short")},
        {
            "access_token": SecretStr("an-access-token-0123"),
            "admin_token": SecretStr("an-access-token-0123"),
        },
        {"allowed_cidrs": "300.1.1.0/24"},
        {"max_item_age_s": 8 * 86400},
        {"rate_limit_per_ip": 0},
        {"max_unverified_bytes": 1024},
        {"max_item_bytes": 4 * 1024 * 1024},
        {"max_json_depth": 300},
        {"max_items_per_delivery": 0},
    ],
)
def test_unsafe_security_settings_refuse_to_start(kw: dict[str, object]) -> None:
    """An admin token equal to an app secret, a bad CIDR, age > window, zero limits."""
    settings = _production(**{"allowlist_enabled": False, **kw})
    with pytest.raises(SettingsError):
        settings.check()


def test_a_body_at_the_highest_depth_cap_stores_items_a_shard_can_read_back() -> None:
    """WA_MAX_JSON_DEPTH is capped so that an item of any accepted body round-trips
    through the inbox's encoding (orjson stops at 255 levels, pydantic's reader at 200):
    a body nested exactly MAX_JSON_DEPTH deep passes the bounds, splits, and every item
    reads back equal; one level more is refused by the settings."""
    message = text_message("wamid.deep", "16505550001")
    levels: list[dict[str, Any]] = [{}]
    message["hologram"] = levels[0]
    body = envelope(("messages", messages_value([message])))
    while True:  # deepen the message until the body is one level past the cap
        try:
            check_bounds(body, MAX_JSON_DEPTH, 10_000, 1_000_000)
        except BodyOutOfBounds:
            break
        levels[-1]["x"] = {}
        levels.append(levels[-1]["x"])
    del levels[-2]["x"]  # one level back: exactly at the cap
    check_bounds(body, MAX_JSON_DEPTH, 10_000, 1_000_000)
    assert len(levels) > MAX_JSON_DEPTH - 12
    ctx = DeliveryContext("d" * 32, datetime.now(UTC), 4)
    (item,) = split_signed(body, ctx, lambda phone, waba: "acme").items
    assert load_item(dump_item(item)) == item
    with pytest.raises(SettingsError):
        _production(allowlist_enabled=False, max_json_depth=MAX_JSON_DEPTH + 1).check()
