"""Which hosts a media download may reach (WA_MEDIA_ALLOWED_HOSTS): the SSRF guard.

A media URL comes from Meta's lookup, but the service must not trust it blindly: a
compromised or spoofed answer (or a redirect) could point the tenant's bearer token and the
service's network position at an internal address. So every hop's host must match the
allowlist, and its DNS answers must be public addresses, unless the operator listed that
very host (or an IP/CIDR) explicitly, which is how tests reach the simulator on 127.0.0.1.

Entries: an exact name (`lookaside.fbsbx.com`), a `*.suffix` pattern (subdomains only,
never the bare suffix), an IP literal or a CIDR. Names compare in ASCII (IDNA) lowercase
without a trailing dot. The addresses checked are the addresses connected to
(adapters/graph.py pins them), so a second DNS answer cannot slip in between.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from adapters.errors import MediaRejected, TransientError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""(host, port) → the host's addresses, in the order to try them."""

# Where Meta's media lookups point: `lookaside.fbsbx.com/whatsapp_business/attachments/`
# (the Cloud API media reference and every BSP's copy of it), plus Meta's CDN domain a
# lookaside link may redirect to. Patterns rather than the exact name on purpose: an exact
# name is trusted with any address, a pattern's hosts must still resolve to public ones.
DEFAULT_MEDIA_HOSTS = ("*.fbsbx.com", "*.fbcdn.net")

Match = Literal["explicit", "pattern"]


def normalize_host(host: str) -> str:
    """Lowercase ASCII (IDNA) without a trailing dot; IPv6 without brackets."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def parse_ip(host: str) -> IPAddress | None:
    """The host as an IP address, or None when it is a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_public(ip: IPAddress) -> bool:
    """Globally routable unicast: not private, loopback, link-local, multicast, reserved,
    unspecified or shared (an IPv4-mapped IPv6 address is judged as its IPv4 address)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local)


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """The parsed allowlist."""

    names: frozenset[str]
    suffixes: tuple[str, ...]  # ".fbsbx.com" for "*.fbsbx.com"
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> HostPolicy:
        """Parse WA_MEDIA_ALLOWED_HOSTS entries; ValueError names a malformed one."""
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            if entry.startswith("*."):
                suffix = normalize_host(entry[1:])
                if suffix.count(".") < 2 or "*" in suffix:  # "*.com" would allow anything
                    raise ValueError(f"media host pattern too broad or malformed: {raw!r}")
                suffixes.append(suffix)
            elif "/" in entry or parse_ip(entry) is not None:
                try:
                    networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                except ValueError as exc:
                    raise ValueError(f"not an IP address or CIDR: {raw!r}") from exc
            elif "*" in entry or ":" in entry or " " in entry:
                raise ValueError(f"media host entry must be a name, *.suffix, IP or CIDR: {raw!r}")
            else:
                names.add(normalize_host(entry))
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def match(self, host: str) -> Match | None:
        """How the host is allowed: `explicit` (its name, or its IP literal's network, is
        listed: private addresses allowed), `pattern` (a `*.suffix`: public addresses
        only), or None (not allowed)."""
        ip = parse_ip(host)
        if ip is not None:
            return "explicit" if any(ip in net for net in self.networks) else None
        name = normalize_host(host)
        if name in self.names:
            return "explicit"
        if any(name.endswith(suffix) for suffix in self.suffixes):
            return "pattern"
        return None

    def address_allowed(self, ip: IPAddress, match: Match) -> bool:
        """An address the host resolved to may be connected to."""
        if match == "explicit" or any(ip in net for net in self.networks):
            return True
        return is_public(ip)


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """The host's addresses from the system resolver (getaddrinfo), in its order."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_addresses(
    policy: HostPolicy, host: str, port: int, resolver: Resolver
) -> tuple[Match, list[str]]:
    """The addresses a download may connect to for `host`, every one checked.

    MediaRejected("host_not_allowed") when the host is not on the list or any address it
    resolves to is not allowed (one private answer among public ones is refused whole: a
    mixed answer is what a rebinding attack looks like). TransientError when DNS fails.
    """
    match = policy.match(host)
    if match is None:
        raise MediaRejected("host_not_allowed", f"{normalize_host(host)} is not allowed")
    literal = parse_ip(host)
    if literal is not None:
        return match, [str(literal)]
    try:
        answers = await resolver(normalize_host(host), port)
    except OSError as exc:
        raise TransientError(f"resolving {normalize_host(host)}: {exc}") from exc
    addresses = [ip for ip in (parse_ip(a) for a in answers) if ip is not None]
    if not addresses:
        raise TransientError(f"resolving {normalize_host(host)}: no address")
    for ip in addresses:
        if not policy.address_allowed(ip, match):
            detail = f"{normalize_host(host)} resolves to a non-public address ({ip})"
            raise MediaRejected("host_not_allowed", detail)
    return match, [str(ip) for ip in addresses]
