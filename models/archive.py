"""A raw delivery as the archive keeps it: the body byte for byte and what it was accepted with.

Meta keeps nothing one can fetch later, so the body the ingress acknowledged is the only
copy: it is stored in the inbox's atomic append with the items (the durability point) and
moved from there to the archive store by the archiver (actors/archiver.py, docs/archive.md).

Delivery ids are time-ordered (the layout of a UUIDv7: 48 bits of the receipt's Unix
milliseconds, then random bits), so an id alone says which day's folder holds it and a
day's ids sort in received order: `deliveries show ID` and a time-range replay find a
delivery without an index, and the retention sweep drops whole days.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

ARCHIVE_PREFIX = "archive"
_ID_CHARS = 32
_RAND_A_MASK = (1 << 12) - 1
_RAND_B_MASK = (1 << 62) - 1


Owner = tuple[str | None, str | None, str]
"""(phone_number_id, waba_id, tenant id) of a change whose number a tenant owned."""


@dataclass(frozen=True, slots=True)
class RawDelivery:
    """One accepted webhook delivery: the raw body and the facts it was accepted with.

    `tenants`: whom the archive files it under (the tenants of its items, else those whose
    secret signed it: a body of numbers nobody owns is kept too). `owners`: the tenant each
    owned change's number resolved to when it was accepted (verified then), which a replay
    re-uses; `signed_by`: the tenants whose secret matched, the only ones a replay may give
    a change of a number nobody owned to. `signature`: the X-Hub-Signature-256 header as sent.
    """

    delivery_id: str
    received_at: datetime
    tenants: tuple[str, ...]
    signed_by: tuple[str, ...]
    owners: tuple[Owner, ...]
    signature: str | None
    body: bytes


def new_delivery_id(received_at: datetime) -> str:
    """A fresh delivery id (32 hex digits, UUIDv7 layout) carrying `received_at`'s millisecond."""
    ms = int(received_at.timestamp() * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) & _RAND_A_MASK) << 64
    value |= (0b10 << 62) | (rand & _RAND_B_MASK)
    return f"{value:032x}"


def received_ms(delivery_id: str) -> int | None:
    """The receipt's Unix milliseconds an id made by `new_delivery_id` carries; None for any
    other string (an id of another layout, a file that is not a delivery)."""
    if len(delivery_id) != _ID_CHARS or delivery_id[12] != "7" or delivery_id[16] not in "89ab":
        return None
    try:
        int(delivery_id, 16)
    except ValueError:
        return None
    return int(delivery_id[:12], 16)


def received_day(delivery_id: str) -> date | None:
    """The UTC day the delivery was received on, from its id; None if the id has none."""
    ms = received_ms(delivery_id)
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).date()


def day_prefix(tenant_id: str, day: date) -> str:
    """The key prefix of a tenant's deliveries of one day: `archive/<tenant>/<yyyy>/<mm>/<dd>/`."""
    return f"{ARCHIVE_PREFIX}/{tenant_id}/{day:%Y/%m/%d}/"


def archive_key(tenant_id: str, delivery_id: str) -> str:
    """Where a delivery is kept under one of its tenants; ValueError for an id of another
    layout (no day to file it under)."""
    day = received_day(delivery_id)
    if day is None:
        raise ValueError(f"delivery id {delivery_id!r} carries no receipt time")
    return day_prefix(tenant_id, day) + delivery_id


def days(start: datetime, end: datetime) -> list[date]:
    """The UTC days from `start`'s to `end`'s, both included (none if end < start)."""
    first, last = start.astimezone(UTC).date(), end.astimezone(UTC).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def ms_of(moment: datetime) -> int:
    """A datetime as Unix milliseconds (the resolution delivery ids carry)."""
    return int(moment.timestamp() * 1000)
