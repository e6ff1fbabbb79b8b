"""`python -m cluster allowlist from-whois FILE [-o OUT]`: Meta's routes as an allowlist.

Meta documents its webhook source ranges as the routes of its autonomous system:

    whois -h whois.radb.net -- '-i origin AS32934' | grep ^route

Saved to a file, that output (`route:` IPv4 and `route6:` IPv6 lines) becomes the
allowlist file read by WA_ALLOWLIST_FILE: one CIDR per line, sorted, duplicates and
networks covered by a larger one removed. Meta's ranges change: regenerate it regularly.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

_ROUTE = re.compile(r"^route6?:\s*(\S+)", re.IGNORECASE)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class WhoisParseError(ValueError):
    """The file holds no route, or a route that is not a CIDR."""


def routes_from_whois(text: str) -> list[Network]:
    """The collapsed IPv4 then IPv6 networks of every `route:` / `route6:` line."""
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _ROUTE.match(line.strip())
        if not match:
            continue
        try:
            network = ipaddress.ip_network(match.group(1), strict=True)
        except ValueError as exc:
            raise WhoisParseError(f"line {number}: {exc}") from exc
        (v4 if isinstance(network, ipaddress.IPv4Network) else v6).append(network)  # type: ignore[arg-type]
    if not v4 and not v6:
        raise WhoisParseError("no route: or route6: line found")
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def render_allowlist(networks: list[Network], source: str) -> str:
    """The allowlist file's text, with a header saying where it came from."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = [
        "# WhatsApp webhook source allowlist (WA_ALLOWLIST_FILE)",
        f"# from {source} (whois -h whois.radb.net -- '-i origin AS32934') at {stamp}",
        f"# {len(networks)} networks",
    ]
    return "\n".join([*header, *map(str, networks)]) + "\n"


def allowlist_command(action: str, path: str, out: str | None) -> int:
    """Run `allowlist from-whois`; exit code 2 on an unreadable or empty whois file."""
    if action != "from-whois":
        return 2
    try:
        networks = routes_from_whois(Path(path).read_text(encoding="utf-8"))
    except (OSError, WhoisParseError) as exc:
        print(f"allowlist: {exc}", file=sys.stderr)
        return 2
    text = render_allowlist(networks, Path(path).name)
    if out is None:
        sys.stdout.write(text)
    else:
        Path(out).write_text(text, encoding="utf-8")
        print(f"wrote {len(networks)} networks to {out}", file=sys.stderr)
    return 0
