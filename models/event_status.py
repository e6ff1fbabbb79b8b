"""The `data` of a status event (schema v1): a sent message's (or call's) new state."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from models.event_message import ErrorInfo


class _Closed(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ConversationInfo(_Closed):
    """The billing conversation a status belongs to."""

    id: str | None = None
    origin_type: str | None = None
    expires_at: datetime | None = None


class PricingInfo(_Closed):
    """How the message is billed."""

    billable: bool | None = None
    pricing_model: str | None = None
    category: str | None = None
    type: str | None = None


class StatusData(_Closed):
    """`status` is Meta's state, lower-cased (sent, delivered, read, played, failed, ...).

    `status_of` is `message` for message statuses and `call` for call statuses.
    `group_id` is set when the message was sent to a group. `message_state` is the
    message's state after this status was applied (the per-message machine `sent` <
    `delivered` < `read` < `played`, `failed` terminal; None for call statuses and states
    outside the machine before any was seen); `stale` marks a status that arrived after a
    later state was reached: published, never moving the state back.
    """

    kind: Literal["status"] = "status"
    message_id: str
    status: str
    status_of: str = "message"
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    recipient_participant_id: str | None = None
    group_id: str | None = None
    conversation: ConversationInfo | None = None
    pricing: PricingInfo | None = None
    errors: list[ErrorInfo] = []
    biz_opaque_callback_data: str | None = None
    message_state: str | None = None
    stale: bool = False
