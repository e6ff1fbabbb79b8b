"""What the ingress stores in the durable inbox: one entry per webhook item."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

ItemKind = Literal["message", "status", "error", "field"]
HoldReason = Literal["unowned_number"]
"""Why an entry was kept aside instead of being given to a shard (models/routing.py)."""


class InboxItem(BaseModel):
    """One item of a verified delivery, with everything the shard needs to normalize it.

    `item` is the item exactly as Meta sent it (a message, a status, an error, or the whole
    `value` of a non-message field), so nothing Meta sent is lost before normalization.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1] = 1
    tenant_id: str
    delivery_id: str
    received_at: datetime
    kind: ItemKind
    field: str
    position: tuple[int, int, int]
    waba_id: str | None = None
    # The entry's `time` as Meta sent it: part of the idempotency key of items that carry
    # no id (account/template events, errors), so a recurring event is not taken for a
    # retry of the earlier one; a retry of the same body repeats it exactly.
    entry_time: int | str | None = None
    phone_number_id: str | None = None
    display_phone_number: str | None = None
    conversation_key: str
    conversation_id: str
    partition: int
    contact: dict[str, Any] | None = None
    item: Any
    # Set on the entries of the unowned partition only: there `item` is the whole change
    # ({"field", "value"}) of a business number nobody owns, stored once per change.
    held: HoldReason | None = None
    # Held entries only: the sorted ids of the tenants whose app secret verified the body.
    # Nobody owned the number when it arrived, so a replay may attribute the change only to
    # one of these tenants (docs/security.md), never to whoever claims the number later.
    signed_by: tuple[str, ...] = ()
    # Re-appended by a replay (`python -m cluster replay`, POST /admin/replay): the shard
    # publishes it even when its event was published before (the service's own duplicate
    # suppression is bypassed on purpose), with the same event_id, at the conversation's
    # next sequence, and with a `replayed` header.
    replayed: bool = False
    # The tenant registry's version the ingress checked and split the delivery against
    # (None: no registry). A shard whose live directory is older reloads it before it
    # applies any tenant's rules to the entry, so a tenant's rules apply from its first
    # accepted webhook, not a reload interval later (docs/tenants.md "Hot reload").
    registry_version: int | None = None


class StoredItem(BaseModel):
    """An inbox entry as read back by a shard: the store's id plus the item."""

    model_config = ConfigDict(frozen=True)

    entry_id: str
    item: InboxItem
    deliveries: int = 1
