"""The media-host allowlist and the public-address rule (adapters/media_hosts.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from adapters.errors import MediaRejected, TransientError
from adapters.media_hosts import (
    DEFAULT_MEDIA_HOSTS,
    HostPolicy,
    Resolver,
    checked_addresses,
    is_public,
)

POLICY = HostPolicy.parse(["lookaside.fbsbx.com", "*.fbcdn.net", "10.1.2.3", "192.168.7.0/24"])


@pytest.mark.parametrize(
    ("host", "match"),
    [
        ("lookaside.fbsbx.com", "explicit"),
        ("LOOKASIDE.fbsbx.com.", "explicit"),  # case and a trailing dot do not matter
        ("scontent.xx.fbcdn.net", "pattern"),
        ("fbcdn.net", None),  # `*.suffix` means subdomains only
        ("evilfbcdn.net", None),
        ("fbcdn.net.evil.com", None),
        ("lookaside.fbsbx.com.evil.com", None),
        ("other.fbsbx.com", None),
        ("10.1.2.3", "explicit"),
        ("192.168.7.99", "explicit"),
        ("192.168.8.1", None),
        ("127.0.0.1", None),
        ("[::1]", None),
    ],
)
def test_host_matching(host: str, match: str | None) -> None:
    """Exact names, `*.suffix` patterns and IPs/CIDRs; nothing else matches."""
    assert POLICY.match(host) == match


def test_default_hosts_are_metas_media_hosts() -> None:
    """The default allows Meta's lookaside host (public addresses only) and nothing local."""
    policy = HostPolicy.parse(DEFAULT_MEDIA_HOSTS)
    assert policy.match("lookaside.fbsbx.com") == "pattern"
    assert policy.match("scontent.xx.fbcdn.net") == "pattern"
    assert policy.match("localhost") is None
    assert policy.match("169.254.169.254") is None


@pytest.mark.parametrize("entry", ["*.com", "*", "a*.b.com", "10.0.0.0/33", "host:443", "a b"])
def test_malformed_entries_are_refused(entry: str) -> None:
    """A too broad pattern or a malformed entry is a configuration error, not ignored."""
    with pytest.raises(ValueError, match=r"entry|pattern|CIDR"):
        HostPolicy.parse([entry])


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("157.240.1.1", True),
        ("2a03:2880:f12f:83:face:b00c::25de", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),  # shared address space (carrier NAT)
        ("0.0.0.0", False),  # noqa: S104 -- an address under test, not a bind
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:157.240.1.1", True),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    """Only globally routable unicast counts as public."""
    assert is_public(ipaddress.ip_address(address)) is public


def _dns(answers: Sequence[str]) -> Resolver:
    async def resolve(host: str, port: int) -> Sequence[str]:
        return answers

    return resolve


async def test_a_pattern_host_must_resolve_to_public_addresses_only() -> None:
    """One private answer among public ones refuses the host (a rebinding's shape)."""
    match, addresses = await checked_addresses(POLICY, "a.fbcdn.net", 443, _dns(["157.240.1.1"]))
    assert (match, addresses) == ("pattern", ["157.240.1.1"])
    for answers in (["127.0.0.1"], ["157.240.1.1", "10.0.0.8"], ["::ffff:10.0.0.8"]):
        with pytest.raises(MediaRejected) as caught:
            await checked_addresses(POLICY, "a.fbcdn.net", 443, _dns(answers))
        assert caught.value.reason == "host_not_allowed"


async def test_an_explicit_host_or_listed_network_may_be_private() -> None:
    """Listing the name (or the address's network) is the operator's explicit consent."""
    assert (await checked_addresses(POLICY, "lookaside.fbsbx.com", 443, _dns(["10.9.9.9"])))[1] == [
        "10.9.9.9"
    ]
    listed = await checked_addresses(POLICY, "b.fbcdn.net", 443, _dns(["192.168.7.5"]))
    assert listed == ("pattern", ["192.168.7.5"])


async def test_dns_failure_is_transient() -> None:
    """A resolver error is retried later, not a rejection of the file."""

    async def broken(host: str, port: int) -> Sequence[str]:
        raise OSError("temporary failure in name resolution")

    with pytest.raises(TransientError):
        await checked_addresses(POLICY, "a.fbcdn.net", 443, broken)
    with pytest.raises(MediaRejected):  # refused by name before any lookup
        await checked_addresses(POLICY, "evil.example", 443, broken)
