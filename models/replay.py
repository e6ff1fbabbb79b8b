"""Replay: what to re-process (a request), what was (a result), and the re-split itself.

A replayed delivery is split again exactly as the ingress split it (models/envelope.py),
with the same delivery id and receipt time, so its items, conversation keys and event ids
are the ones first published. Each owned change keeps the tenant recorded when it was
accepted (verified then: `RawDelivery.owners`); a change of a number nobody owned then
may go only to a tenant whose secret signed the body (`signed_by`) and that owns the
number now; otherwise it stays unattributed (counted as `unowned`, not appended). Items
are appended with `replayed=True`: the shard publishes them again, same event ids, at the
conversation's next sequences, with a `replayed` header (docs/archive.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.archive import RawDelivery
from models.envelope import DeliveryContext, split_signed
from models.inbox import InboxItem

MAX_REPLAY_LIMIT = 10_000
"""The most deliveries (or dead letters) one replay request re-processes."""

Claim = Callable[[str | None, str | None], str | None]
"""(phone_number_id, waba_id) -> the tenant that owns them now, or None."""


class ReplayRequest(BaseModel):
    """What to replay: exactly one of a delivery, a tenant's time range [since, until), a
    dead letter, or every dead letter (`purge`: delete the replayed dead letters)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    delivery_id: str | None = Field(None, min_length=1, max_length=64)
    tenant_id: str | None = Field(None, min_length=1, max_length=64)
    since: datetime | None = None
    until: datetime | None = None
    dead_letter_id: str | None = Field(None, min_length=1, max_length=256)
    all_dead_letters: bool = False
    purge: bool = False
    limit: int = Field(1000, ge=1, le=MAX_REPLAY_LIMIT)

    @model_validator(mode="after")
    def _one_selector(self) -> ReplayRequest:
        chosen = [
            self.delivery_id is not None,
            self.tenant_id is not None,
            self.dead_letter_id is not None,
            self.all_dead_letters,
        ]
        if sum(chosen) != 1:
            raise ValueError(
                "give exactly one of delivery_id, tenant_id (with since and until), "
                "dead_letter_id, all_dead_letters"
            )
        if (self.since is not None or self.until is not None) and self.tenant_id is None:
            raise ValueError("since and until go with tenant_id")
        if self.tenant_id is not None:
            if self.since is None or self.until is None:
                raise ValueError("tenant_id needs since and until")
            if self.since.tzinfo is None or self.until.tzinfo is None:
                raise ValueError("since and until need a time zone (e.g. Z)")
            if self.until <= self.since:
                raise ValueError("until must be after since")
        if self.purge and self.dead_letter_id is None and not self.all_dead_letters:
            raise ValueError("purge goes with dead_letter_id or all_dead_letters")
        return self


class ReplayResult(BaseModel):
    """What a replay appended. `next_since`: a time range with more deliveries than the
    limit, to be continued from there (None: done)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deliveries: int = 0
    items: int = 0
    unowned: int = 0  # items of numbers nobody owned, left unattributed
    dead_letters: int = 0
    purged: int = 0
    delivery_ids: list[str] = Field(default_factory=list)
    next_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Resplit:
    """A delivery split again: the items to append, and how many stayed unattributed."""

    items: list[InboxItem]
    unowned: int


def resplit(
    delivery: RawDelivery,
    payload: Any,
    partitions: int,
    claim: Claim | None = None,
    tenant_id: str | None = None,
) -> Resplit:
    """The items of an archived delivery (`payload`: its body parsed), marked replayed;
    only `tenant_id`'s when given. EnvelopeError if the body is not a webhook (never for a
    body the ingress accepted)."""
    owners = {(phone, waba): owner for phone, waba, owner in delivery.owners}
    signers = set(delivery.signed_by)

    def resolve(phone_number_id: str | None, waba_id: str | None) -> str | None:
        owner = owners.get((phone_number_id, waba_id))
        if owner is None and claim is not None:
            now = claim(phone_number_id, waba_id)
            owner = now if now in signers else None
        return owner

    ctx = DeliveryContext(delivery.delivery_id, delivery.received_at, partitions)
    split = split_signed(payload, ctx, resolve, signed_by=signers)
    items = [
        item.model_copy(update={"replayed": True})
        for item in split.items
        if tenant_id is None or item.tenant_id == tenant_id
    ]
    return Resplit(items, split.held_items)
