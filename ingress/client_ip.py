"""Who sent a request: the peer address, or the X-Forwarded-For hop a trusted proxy names.

Walk from the TCP peer towards the client: while the address in hand is a trusted proxy,
step to the previous X-Forwarded-For entry (the right-most one first, which that proxy
appended). The first untrusted address is the client. A header sent by an untrusted peer
is therefore never read, and a client cannot spoof its address by prepending entries.

Behind Ray Serve's HAProxy ingress: its generated config has no `option forwardfor`, so it
passes X-Forwarded-For through unchanged and adds none; and the replica's uvicorn
(`proxy_headers` on, `forwarded_allow_ips` = $FORWARDED_ALLOW_IPS or 127.0.0.1) already
replaces the peer with the header's right-most untrusted hop when the peer is loopback.
Walking the whole header again here gives the same answer as long as uvicorn's trusted set
is contained in ours, which is why loopback is always trusted by default.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK = ("127.0.0.0/8", "::1/128")


def parse_address(text: str | None) -> IpAddress | None:
    """An address from a peer or an X-Forwarded-For entry (ports and brackets removed)."""
    if not text:
        return None
    value = text.strip().strip('"')
    if value.startswith("["):  # [v6]:port
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(lines: Iterable[str]) -> tuple[IpNetwork, ...]:
    """CIDRs from text: comma, space or newline separated, `#` comments; ValueError if bad."""
    networks: list[IpNetwork] = []
    for line in lines:
        for token in line.split("#", 1)[0].replace(",", " ").split():
            networks.append(ipaddress.ip_network(token, strict=False))
    return tuple(networks)


def mask_address(address: IpAddress | None) -> str:
    """A loggable form: the /24 (IPv4) or /48 (IPv6) network, never the full address."""
    if address is None:
        return "unknown"
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


@dataclass(frozen=True, slots=True)
class SourcePolicy:
    """Trusted proxies and the allowlist (None: every source is allowed)."""

    trusted_proxies: tuple[IpNetwork, ...] = ()
    allowed: tuple[IpNetwork, ...] | None = None

    def _trusted(self, address: IpAddress) -> bool:
        return any(address in net for net in self.trusted_proxies)

    def client(self, peer: str | None, forwarded_for: Iterable[str]) -> IpAddress | None:
        """The client address, or None when it cannot be known (an unparsable hop)."""
        address = parse_address(peer)
        hops = [h for header in forwarded_for for h in header.split(",") if h.strip()]
        while address is not None and self._trusted(address) and hops:
            address = parse_address(hops.pop())
        return address

    def allows(self, address: IpAddress | None) -> bool:
        """True when the allowlist is off or the address is inside one of its networks."""
        if self.allowed is None:
            return True
        return address is not None and any(address in net for net in self.allowed)
