"""The normalized event the service publishes: frozen, versioned, one per webhook item."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal[1] = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Business(_Frozen):
    """The tenant's business account and number the item was sent to or from."""

    waba_id: str | None = None
    phone_number_id: str | None = None
    display_phone_number: str | None = None


class Customer(_Frozen):
    """The customer side of the conversation, as far as Meta told us."""

    wa_id: str | None = None
    user_id: str | None = None
    name: str | None = None


class NormalizedEvent(_Frozen):
    """One published event. `event_id` is the consumers' idempotency key.

    `sequence` is strictly increasing per `conversation_id` in publish order; a redelivery
    after a crash repeats an `event_id`, never reorders a conversation.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str
    tenant_id: str
    category: str
    type: str
    conversation_id: str
    sequence: int = Field(ge=1)
    occurred_at: datetime | None
    received_at: datetime
    business: Business
    customer: Customer | None = None
    delivery_id: str
    data: Any

    @property
    def routing_key(self) -> str:
        """`<tenant>.<category>.<type>`, the topic-exchange routing key."""
        return f"{self.tenant_id}.{self.category}.{self.type}"
