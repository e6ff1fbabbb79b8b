"""Conversation state (issue 10): the record each logical conversation actor keeps.

One `ConversationRecord` per conversation key, persisted by the state store (the Inbox
port: Redis or SQLite) in the same atomic commit as the entries whose events changed it,
and cached by the shard that owns the conversation's partition. `MessageRecord`s remember
what the service saw of single messages (for status ordering and reply threads), for the
message-state TTL. Both are stored as compact JSON (adapters/codec.py).

What is published is the record's public view, `ConversationState` (the `data.state` of
`conversation.created` / `conversation.updated`, and the admin look-ups), and a short
`ConversationContext` on every event of a conversation (docs/events.md).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

ConversationKind = Literal["customer", "group", "tenant"]
"""`customer`: a business number and one customer; `group`: a group chat; `tenant`: the
stream of a tenant's items that belong to no conversation (account, template, ... events),
which has a record for its sequence only and publishes no state events."""

SERVICE_WINDOW = timedelta(hours=24)
"""Meta's customer-service window: free-form replies until 24 h after the customer's last
message."""

MAX_NAME_CHARS = 256
"""Profile names and usernames are stored (and published in `data.state`) up to this many
characters; the item's own event keeps what Meta sent."""

MAX_PARTICIPANTS = 1024
"""A group's participant set keeps at most this many ids (Meta's groups have far fewer);
`participants_count` counts the ones kept."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ConversationCustomer(_Frozen):
    """Who the customer is, as far as Meta has told us (latest profile name)."""

    wa_id: str | None = None
    user_id: str | None = None
    username: str | None = None
    name: str | None = None


class PricingConversation(_Frozen):
    """Meta's pricing conversation, from the latest status that carried one."""

    id: str | None = None
    origin_type: str | None = None
    expires_at: datetime | None = None


class ServiceWindow(_Frozen):
    """The 24-hour customer-service window at the time the view was taken."""

    open: bool
    expires_at: datetime | None = None


class ConversationRecord(_Frozen):
    """What the store keeps per conversation. `created_at` is None only for a record that
    holds nothing but the last sequence of a version before issue 10 (`legacy`).

    Members it does not know are ignored when read (a record written by a later version,
    then rolled back, must not stop its partition)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1] = 1
    conversation_id: str
    tenant_id: str
    kind: ConversationKind
    phone_number_id: str | None = None
    display_phone_number: str | None = None
    customer: ConversationCustomer | None = None
    group_id: str | None = None
    created_at: datetime | None = None  # when the service created it (the item's arrival)
    first_seen_at: datetime | None = None  # Meta's time of the first item, else its arrival
    last_inbound_at: datetime | None = None  # Meta's time of the latest customer message
    message_count: int = 0  # inbound customer messages
    window_expires_at: datetime | None = None  # last_inbound_at + 24 h
    pricing: PricingConversation | None = None
    marketing_opt_out: bool | None = None
    participants: tuple[str, ...] | None = None  # groups: sorted ids
    last_sequence: int = 0
    updated_at: datetime | None = None

    @classmethod
    def legacy(cls, conversation_id: str, last_sequence: int) -> ConversationRecord:
        """A conversation known only by the sequence a version before issue 10 stored."""
        return cls(
            conversation_id=conversation_id,
            tenant_id="",
            kind="tenant",
            last_sequence=last_sequence,
        )

    @property
    def created(self) -> bool:
        """Whether the record is a real one (not only a legacy sequence)."""
        return self.created_at is not None

    def window(self, at: datetime) -> ServiceWindow:
        """The service window as it stands at `at`."""
        expires = self.window_expires_at
        # model_construct: both values are typed here (the shard builds one per event).
        return ServiceWindow.model_construct(
            open=expires is not None and at < expires, expires_at=expires
        )

    def public(self, at: datetime) -> ConversationState:
        """The published view of the record, its window taken at `at`."""
        return ConversationState(
            conversation_id=self.conversation_id,
            tenant_id=self.tenant_id,
            kind=self.kind,
            phone_number_id=self.phone_number_id,
            display_phone_number=self.display_phone_number,
            customer=self.customer,
            group_id=self.group_id,
            created_at=self.created_at,
            first_seen_at=self.first_seen_at,
            last_inbound_at=self.last_inbound_at,
            message_count=self.message_count,
            service_window=self.window(at),
            pricing_conversation=self.pricing,
            marketing_opt_out=self.marketing_opt_out,
            participants=list(self.participants) if self.participants is not None else None,
            participants_count=len(self.participants) if self.participants is not None else None,
            last_sequence=self.last_sequence,
            updated_at=self.updated_at,
        )


class ConversationState(_Frozen):
    """A conversation record as published (`data.state`) and as the admin API shows it."""

    conversation_id: str
    tenant_id: str
    kind: ConversationKind
    phone_number_id: str | None = None
    display_phone_number: str | None = None
    customer: ConversationCustomer | None = None
    group_id: str | None = None
    created_at: datetime | None = None
    first_seen_at: datetime | None = None
    last_inbound_at: datetime | None = None
    message_count: int = 0
    service_window: ServiceWindow
    pricing_conversation: PricingConversation | None = None
    marketing_opt_out: bool | None = None
    participants: list[str] | None = None
    participants_count: int | None = None
    last_sequence: int = 0
    updated_at: datetime | None = None


class ConversationContext(_Frozen):
    """The conversation as it stands after the event's item was applied (`context`)."""

    conversation_id: str
    new: bool  # this item created the conversation
    message_count: int
    first_seen_at: datetime | None = None
    last_inbound_at: datetime | None = None
    service_window: ServiceWindow
    marketing_opt_out: bool | None = None
    participants_count: int | None = None


MessageState = Literal["sent", "delivered", "read", "played", "failed"]
MESSAGE_STATE_RANK: dict[str, int] = {"sent": 1, "delivered": 2, "read": 3, "played": 4}
"""The order of a message's states; `failed` is terminal and outranks nothing: it is
applied from any state but `failed`, and nothing moves a failed message."""


class MessageRecord(_Frozen):
    """What the service saw of one message of a conversation.

    `state`: the message's latest state from statuses (None: no status seen); `root`: the
    first message of its reply chain as far as the service has seen it (None: the message
    itself); `event_id`: the id of the message event published for it (None: the service
    only knows it from statuses or as a parent).
    """

    state: str | None = None
    root: str | None = None
    event_id: str | None = None


def message_key(conversation_id: str, message_id: str) -> str:
    """The store key of a message's record: scoped to its conversation."""
    return f"{conversation_id}:{message_id}"
