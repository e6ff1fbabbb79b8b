"""The normalized event the service publishes: frozen, versioned, one per webhook item.

Schema v1. `data` is typed per event and tagged by `data.kind`; the JSON Schema is
exported to `docs/events/v1.schema.json` (`python -m cluster schema export`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.conversation import ConversationContext, ConversationState
from models.event_keys import routing_key
from models.event_message import ErrorInfo, MessageData
from models.event_status import StatusData
from models.meta.fields import FieldEventData

SCHEMA_VERSION: Literal[1] = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Business(_Frozen):
    """The tenant's business account and number the item was sent to or from."""

    waba_id: str | None = None
    phone_number_id: str | None = None
    display_phone_number: str | None = None


class Customer(_Frozen):
    """The customer side of the conversation, as far as Meta told us.

    `phone_e164` (e.g. "+16505551234"), `country_code` (the calling code, e.g. 1),
    `region` (ISO 3166-1 alpha-2, e.g. "US"), `time_zones` (IANA names the number's
    prefix lies in, e.g. ["America/Los_Angeles"]; several for a prefix spanning zones) and
    `line_type` (the carrier type of the number's range: "mobile", "fixed_line",
    "fixed_line_or_mobile", "voip", "toll_free", ...) are derived from `wa_id` offline by
    phonenumbers' metadata; for a username-only customer `region` is the country Meta
    reported in the profile, if any.
    """

    wa_id: str | None = None
    user_id: str | None = None
    username: str | None = None
    name: str | None = None
    phone_e164: str | None = None
    country_code: int | None = None
    region: str | None = None
    time_zones: tuple[str, ...] | None = None
    line_type: str | None = None


class ReferredProduct(_Frozen):
    """The catalog item a "message business about this product" enquiry names."""

    catalog_id: str
    product_retailer_id: str


class ReplyTo(_Frozen):
    """The message this one answers (a reply, a button tap, a product enquiry).

    `event_id`: the event the service published for the parent message (None when it
    never saw the parent as a message: a business message known only from its statuses,
    or one it never saw). `thread_root_id`: the message id of the first message of the
    reply chain, following the parents the service has seen; the parent itself when the
    parent is unknown (docs/events.md).
    """

    message_id: str | None = None
    sender: str | None = None
    referred_product: ReferredProduct | None = None
    event_id: str | None = None
    thread_root_id: str | None = None


class Forwarded(_Frozen):
    """The message was forwarded (`frequently`: forwarded more than five times)."""

    frequently: bool = False


class Referral(_Frozen):
    """The ad or post the customer came from (click-to-WhatsApp); `ctwa_clid` is the click."""

    source_type: str | None = None
    source_id: str | None = None
    source_url: str | None = None
    headline: str | None = None
    body: str | None = None
    media_type: str | None = None
    image_url: str | None = None
    video_url: str | None = None
    thumbnail_url: str | None = None
    ctwa_clid: str | None = None
    welcome_message: str | None = None


class ConversationEventData(_Frozen):
    """A conversation's record for the state-manager (category `conversation`, types
    `created` and `updated`). `changes` names the members that changed (`updated` only):
    `customer.name`, `customer.username`, `customer.wa_id`, `customer.user_id`,
    `marketing_opt_out`, `service_window` (opened again after it had closed),
    `participants`."""

    kind: Literal["conversation"] = "conversation"
    state: ConversationState
    changes: list[str] = []


class ErrorEventData(_Frozen):
    """A value-level error: Meta could not deliver something to us (category `error`)."""

    kind: Literal["error"] = "error"
    error: ErrorInfo


class ValidationIssue(_Frozen):
    """One reason an item did not fit its model."""

    loc: str
    msg: str
    type: str


class UnsupportedData(_Frozen):
    """An item that did not fit its model (category `unsupported`): nothing is dropped.

    `item_kind`/`field` say what it claimed to be, `issues` why it did not fit, `raw` is
    the item exactly as Meta sent it.
    """

    kind: Literal["unsupported"] = "unsupported"
    item_kind: str
    field: str
    issues: list[ValidationIssue]
    raw: Any
    # Set when the item was dead-lettered (docs/reliability.md): this event holds its
    # place in the conversation's sequence under its own event_id, and the item itself is
    # in the failed store and on the dead-letter exchange under this id.
    dead_letter_id: str | None = None


class UnknownFieldData(_Frozen):
    """A webhook field this schema does not know yet; `raw` is the whole change value."""

    kind: Literal["unknown_field"] = "unknown_field"
    field: str
    raw: Any


EventData = Annotated[
    MessageData
    | StatusData
    | ConversationEventData
    | ErrorEventData
    | UnsupportedData
    | UnknownFieldData
    | FieldEventData,
    Field(discriminator="kind"),
]
"""Every `data` shape of schema v1, tagged by `kind`."""


class NormalizedEvent(_Frozen):
    """One published event. `event_id` is the consumers' idempotency key.

    `sequence` is strictly increasing per `conversation_id` in publish order; a redelivery
    after a crash repeats an `event_id`, never reorders a conversation. `context` is the
    conversation after the item was applied (None for items of no conversation: account,
    template, ... events); `late` marks a message published after a later message of
    its conversation (by Meta's timestamp) had been published.
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
    delivery_id: str
    business: Business
    customer: Customer | None = None
    group_id: str | None = None
    reply_to: ReplyTo | None = None
    forwarded: Forwarded | None = None
    referral: Referral | None = None
    context: ConversationContext | None = None
    late: bool = False
    # Published again by a replay (`python -m cluster replay`): same event_id, the
    # conversation's next sequence; the message also carries a `replayed` header.
    replayed: bool = False
    data: EventData

    @property
    def routing_key(self) -> str:
        """`<tenant>.<category>.<type>`, the topic-exchange routing key, each segment made
        safe and bounded (models/event_keys.py): exactly these values when they are."""
        return routing_key(self.tenant_id, self.category, self.type)
