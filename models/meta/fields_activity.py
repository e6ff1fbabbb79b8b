"""Customer-activity fields: preferences, calls, flows, ad events, echoes, sync, groups.

Several of these carry a list (`calls`, `automatic_events`, `message_echoes`, ...) in one
change value; the value is one inbox item and one published event, with the list typed.
"""

from __future__ import annotations

from typing import ClassVar, Literal, TypeAlias

from pydantic import Field

from models.meta.common import (
    Contact,
    FieldValue,
    MetaError,
    MetaModel,
    MetaTime,
    NonEmptyId,
    OptionalId,
)
from models.meta.messages import InboundMessage


class UserPreference(MetaModel):
    """One preference change, e.g. marketing messages stopped or resumed."""

    wa_id: OptionalId = None
    user_id: OptionalId = None
    detail: str | None = None
    category: str
    value: str
    timestamp: MetaTime | None = None


class UserPreferences(FieldValue):
    """`user_preferences`: the customer stopped or resumed marketing messages."""

    kind: Literal["user_preferences"] = "user_preferences"
    category: ClassVar[str] = "customer"
    timed_list: ClassVar[str | None] = "user_preferences"
    contacts: tuple[Contact, ...] = ()
    user_preferences: list[UserPreference]


class CallSession(MetaModel):
    """The WebRTC offer or answer of a call."""

    sdp_type: str | None = None
    sdp: str | None = None


class Call(MetaModel):
    """One call event (connect, terminate) in `calls[]`."""

    id: NonEmptyId
    from_: OptionalId = Field(default=None, alias="from")
    from_user_id: OptionalId = None
    to: OptionalId = None
    to_user_id: OptionalId = None
    event: str
    timestamp: MetaTime
    direction: str | None = None
    session: CallSession | None = None
    status: str | None = None
    start_time: MetaTime | None = None
    end_time: MetaTime | None = None
    duration: int | None = None
    biz_opaque_callback_data: str | None = None
    errors: tuple[MetaError, ...] = ()


class Calls(FieldValue):
    """`calls`: call signalling events (call statuses arrive as `statuses[]` items)."""

    kind: Literal["calls"] = "calls"
    category: ClassVar[str] = "call"
    timed_list: ClassVar[str | None] = "calls"
    contacts: tuple[Contact, ...] = ()
    calls: list[Call]


class Flows(FieldValue):
    """`flows`: a flow changed status, or an endpoint alert about it."""

    kind: Literal["flows"] = "flows"
    category: ClassVar[str] = "flow"
    event: str
    flow_id: OptionalId = None
    message: str | None = None
    old_status: str | None = None
    new_status: str | None = None


class CustomData(MetaModel):
    """The value attached to a conversion event."""

    currency: str | None = None
    value: float | None = None


class AutomaticEvent(MetaModel):
    """One conversion event Meta detected (lead, purchase) for a click-to-WhatsApp ad."""

    id: NonEmptyId
    event_name: str
    timestamp: MetaTime
    ctwa_clid: str | None = None
    custom_data: CustomData | None = None


class AutomaticEvents(FieldValue):
    """`automatic_events`: conversion events for ads."""

    kind: Literal["automatic_events"] = "automatic_events"
    category: ClassVar[str] = "automatic"
    timed_list: ClassVar[str | None] = "automatic_events"
    automatic_events: list[AutomaticEvent]


class SmbMessageEchoes(FieldValue):
    """`smb_message_echoes`: messages the business sent from the WhatsApp Business app."""

    kind: Literal["smb_message_echoes"] = "smb_message_echoes"
    category: ClassVar[str] = "echo"
    timed_list: ClassVar[str | None] = "message_echoes"
    message_echoes: list[InboundMessage]


class StateSyncContact(MetaModel):
    """A contact in the business app's address book."""

    full_name: str | None = None
    first_name: str | None = None
    phone_number: str | None = None


class StateSyncMetadata(MetaModel):
    """When the change happened in the app."""

    timestamp: MetaTime | None = None


class StateSync(MetaModel):
    """One address-book change in the business app."""

    type: str
    action: str | None = None
    contact: StateSyncContact | None = None
    metadata: StateSyncMetadata | None = None


class SmbAppStateSync(FieldValue):
    """`smb_app_state_sync`: the business app's contacts were added, edited or removed."""

    kind: Literal["smb_app_state_sync"] = "smb_app_state_sync"
    category: ClassVar[str] = "sync"
    state_sync: list[StateSync]


class HistoryMetadata(MetaModel):
    """Where a history chunk sits in the sync."""

    phase: int | None = None
    chunk_order: int | None = None
    progress: int | None = None


class HistoryThread(MetaModel):
    """One chat's past messages (types Meta only uses here fall to UnknownMessage)."""

    id: NonEmptyId
    messages: tuple[InboundMessage, ...] = ()


class HistoryChunk(MetaModel):
    """One chunk of a chat-history sync, or the error that stopped it."""

    metadata: HistoryMetadata | None = None
    threads: tuple[HistoryThread, ...] = ()
    errors: tuple[MetaError, ...] = ()


class History(FieldValue):
    """`history`: past chats shared when a business-app number is onboarded."""

    kind: Literal["history"] = "history"
    category: ClassVar[str] = "history"
    history: list[HistoryChunk]


class GroupChange(MetaModel):
    """One change to a group; the per-type details are kept as Meta sent them."""

    group_id: NonEmptyId
    type: str | None = None
    timestamp: MetaTime | None = None
    request_id: str | None = None
    errors: tuple[MetaError, ...] = ()


class _Groups(FieldValue):
    category: ClassVar[str] = "group"
    timed_list: ClassVar[str | None] = "groups"

    groups: list[GroupChange]


class GroupLifecycleUpdate(_Groups):
    """`group_lifecycle_update`: a group was created or deleted."""

    kind: Literal["group_lifecycle_update"] = "group_lifecycle_update"


class GroupParticipantsUpdate(_Groups):
    """`group_participants_update`: participants joined, left, were added or removed."""

    kind: Literal["group_participants_update"] = "group_participants_update"


class GroupSettingsUpdate(_Groups):
    """`group_settings_update`: subject, description or picture changed."""

    kind: Literal["group_settings_update"] = "group_settings_update"


class GroupStatusUpdate(_Groups):
    """`group_status_update`: a group was suspended or the suspension cleared."""

    kind: Literal["group_status_update"] = "group_status_update"


ActivityField: TypeAlias = (
    UserPreferences
    | Calls
    | Flows
    | AutomaticEvents
    | SmbMessageEchoes
    | SmbAppStateSync
    | History
    | GroupLifecycleUpdate
    | GroupParticipantsUpdate
    | GroupSettingsUpdate
    | GroupStatusUpdate
)
"""The customer-activity fields this version types (a new one's model goes here)."""

UNTYPED_ACTIVITY_FIELDS: dict[str, str] = {}
"""Activity fields Meta sends that are not typed yet -> their category (none today)."""
