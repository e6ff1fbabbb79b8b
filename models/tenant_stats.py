"""Per-tenant analytics (issue 12, point 6): events by category and type, media files and
bytes by outcome, failures; counted from the events a shard committed.

Counters are flat names (`events:<category>:<type>`, `media_files:<status>`,
`media_bytes:<status>`, `failures:<kind>`) so a store adds them with one increment each
(Redis HINCRBY, an SQLite upsert), and `TenantStats.from_counters` shapes them for
`GET /admin/tenants/{id}/stats`. Only committed events are counted, once per commit: a
batch published twice after a crash before its commit is counted once, the second time.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from models.event import NormalizedEvent, UnsupportedData
from models.event_message import MediaData
from models.event_status import StatusData

MAX_NAME_CHARS = 64
"""A category or type longer than this is counted under its first 64 characters (Meta's
names are far shorter; an unknown field's name comes from the body)."""


_META_ID = re.compile(r"\d{1,20}")  # Meta's ids: digits (anything else is not counted)


def seen_ids(counters: Mapping[str, int], group: str) -> set[str]:
    """The phone numbers (`numbers`) or WABAs (`wabas`) a tenant's events came through."""
    prefix = f"{group}:"
    return {name[len(prefix) :] for name in counters if name.startswith(prefix)}


def _segment(value: str) -> str:
    return value.replace(":", "_")[:MAX_NAME_CHARS] or "_"


def event_counters(event: NormalizedEvent) -> Iterable[tuple[str, int]]:
    """The counter increments one committed event makes."""
    yield f"events:{_segment(event.category)}:{_segment(event.type)}", 1
    # The numbers and WABAs the tenant's webhooks came through: the account refresher reads
    # them too (a default tenant owns its numbers without naming them).
    for group, meta_id in (
        ("numbers", event.business.phone_number_id),
        ("wabas", event.business.waba_id),
    ):
        if meta_id is not None and _META_ID.fullmatch(meta_id):
            yield f"{group}:{meta_id}", 1
    data = event.data
    if isinstance(data, MediaData) and data.file is not None:
        yield f"media_files:{data.file.status}", 1
        if data.file.size:
            yield f"media_bytes:{data.file.status}", data.file.size
        if data.file.status in ("failed", "rejected"):
            yield f"failures:media_{data.file.status}", 1
    elif isinstance(data, UnsupportedData):
        yield ("failures:dead_lettered" if data.dead_letter_id else "failures:unsupported"), 1
    elif isinstance(data, StatusData) and data.status == "failed":
        yield "failures:status_failed", 1
    elif event.category == "error":
        yield "failures:error", 1


def tally(
    events: Iterable[NormalizedEvent], filtered: Iterable[NormalizedEvent] = ()
) -> dict[str, Counter[str]]:
    """The increments of a committed batch, per tenant; `filtered`: the events their
    tenant's forward rule kept back (`filtered:<category>:<type>`, nothing else)."""
    counts: dict[str, Counter[str]] = {}
    for event in events:
        per_tenant = counts.setdefault(event.tenant_id, Counter())
        for name, amount in event_counters(event):
            per_tenant[name] += amount
    for event in filtered:
        per_tenant = counts.setdefault(event.tenant_id, Counter())
        per_tenant[f"filtered:{_segment(event.category)}:{_segment(event.type)}"] += 1
    return counts


class TenantStats(BaseModel):
    """`GET /admin/tenants/{id}/stats`: counts since the store was created."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str
    events: dict[str, dict[str, int]] = {}  # category -> type -> events
    events_total: int = 0
    media_files: dict[str, int] = {}  # status -> files
    media_bytes: dict[str, int] = {}  # status -> bytes Meta sent
    failures: dict[str, int] = {}  # kind -> count
    phone_numbers: dict[str, int] = {}  # phone_number_id -> events through it
    wabas: dict[str, int] = {}  # WABA id -> events through it
    # category -> type -> events the forward rule kept back (archived, not published)
    filtered: dict[str, dict[str, int]] = {}
    filtered_total: int = 0
    # The tenant's rate limiter (actors/tenant_limiter.py): rates, tokens granted, waits,
    # throttles by Meta code, `throttled_until`; null when it is not running or slow.
    limiter: dict[str, Any] | None = None

    @classmethod
    def from_counters(cls, tenant_id: str, counters: Mapping[str, int]) -> TenantStats:
        """Shape the flat counters of one tenant."""
        events: dict[str, dict[str, int]] = {}
        files: dict[str, int] = {}
        sizes: dict[str, int] = {}
        failures: dict[str, int] = {}
        numbers: dict[str, int] = {}
        wabas: dict[str, int] = {}
        filtered: dict[str, dict[str, int]] = {}
        for name, value in sorted(counters.items()):
            group, _, rest = name.partition(":")
            if group == "events":
                category, _, kind = rest.partition(":")
                events.setdefault(category, {})[kind] = value
            elif group == "media_files":
                files[rest] = value
            elif group == "media_bytes":
                sizes[rest] = value
            elif group == "failures":
                failures[rest] = value
            elif group == "numbers":
                numbers[rest] = value
            elif group == "wabas":
                wabas[rest] = value
            elif group == "filtered":
                category, _, kind = rest.partition(":")
                filtered.setdefault(category, {})[kind] = value
        total = sum(n for per_type in events.values() for n in per_type.values())
        return cls(
            tenant_id=tenant_id,
            events=events,
            events_total=total,
            media_files=files,
            media_bytes=sizes,
            failures=failures,
            phone_numbers=numbers,
            wabas=wabas,
            filtered=filtered,
            filtered_total=sum(n for per_type in filtered.values() for n in per_type.values()),
        )
