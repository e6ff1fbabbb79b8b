"""Meta's usage headers, parsed into a per-tenant snapshot for the tenant rate limiters.

Meta's rate-limiting guide documents two headers. `X-App-Usage` (Platform rate limits, the
app's own allowance): `{"call_count": 28, "total_time": 25, "total_cputime": 25}`, each a
whole-number percentage of the allowance used in the rolling window.
`X-Business-Use-Case-Usage` (Business Use Case limits, what WhatsApp Business Management
calls with a system user token count against): a JSON object keyed by business object id,
each a list of `{type, call_count, total_cputime, total_time,
estimated_time_to_regain_access}`, the counts in percent and the wait in minutes (0 when
not throttled).

A header that does not parse is ignored, never an error: usage is advice, the call itself
succeeded or failed on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class AppUsage:
    """`X-App-Usage`: percent of the app's allowance used."""

    call_count: float
    total_cputime: float
    total_time: float

    @property
    def peak_pct(self) -> float:
        """The highest of the three: how close the app is to being throttled."""
        return max(self.call_count, self.total_cputime, self.total_time)


@dataclass(frozen=True, slots=True)
class BusinessUsage:
    """One entry of `X-Business-Use-Case-Usage`: a business object's use-case usage."""

    business_id: str
    type: str  # e.g. "whatsapp_business_management"
    call_count: float
    total_cputime: float
    total_time: float
    regain_s: float  # estimated_time_to_regain_access, converted from minutes

    @property
    def peak_pct(self) -> float:
        """The highest of the three percentages."""
        return max(self.call_count, self.total_cputime, self.total_time)


@dataclass(frozen=True, slots=True)
class GraphUsage:
    """What the last Graph responses for a tenant said about its usage."""

    at: float  # unix time of the latest response that carried a usage header
    app: AppUsage | None
    business: tuple[BusinessUsage, ...]

    @property
    def peak_pct(self) -> float:
        """The highest percentage of any allowance (0 when none was reported)."""
        pcts = [b.peak_pct for b in self.business]
        if self.app is not None:
            pcts.append(self.app.peak_pct)
        return max(pcts, default=0.0)

    @property
    def regain_s(self) -> float:
        """Seconds until Meta says every throttled use case works again (0: none is)."""
        return max((b.regain_s for b in self.business), default=0.0)

    def merged(self, newer: GraphUsage) -> GraphUsage:
        """This snapshot updated by a newer one (a header it lacks keeps the old value)."""
        by_key = {(b.business_id, b.type): b for b in self.business}
        by_key.update({(b.business_id, b.type): b for b in newer.business})
        return GraphUsage(newer.at, newer.app or self.app, tuple(by_key.values()))


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def parse_app_usage(value: str | None) -> AppUsage | None:
    """`X-App-Usage`, or None when absent or malformed."""
    if not value:
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    return AppUsage(
        _num(doc.get("call_count")), _num(doc.get("total_cputime")), _num(doc.get("total_time"))
    )


def parse_business_usage(value: str | None) -> tuple[BusinessUsage, ...]:
    """`X-Business-Use-Case-Usage` entries ((), when absent or malformed)."""
    if not value:
        return ()
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return ()
    if not isinstance(doc, dict):
        return ()
    entries: list[BusinessUsage] = []
    for business_id, items in doc.items():
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            entries.append(
                BusinessUsage(
                    business_id=str(business_id),
                    type=str(item.get("type", "")),
                    call_count=_num(item.get("call_count")),
                    total_cputime=_num(item.get("total_cputime")),
                    total_time=_num(item.get("total_time")),
                    regain_s=60.0 * _num(item.get("estimated_time_to_regain_access")),
                )
            )
    return tuple(entries)


def usage_from_headers(headers: Mapping[str, str], at: float) -> GraphUsage | None:
    """The usage a response reports (headers case-insensitive, or lowercase names), or
    None when it carries neither header."""
    app = parse_app_usage(headers.get("x-app-usage"))
    business = parse_business_usage(headers.get("x-business-use-case-usage"))
    if app is None and not business:
        return None
    return GraphUsage(at, app, business)
