"""Inbound messages (`value.messages[]`): a discriminated union on `type`.

Every variant shares the envelope of a message (id, sender, timestamp, context, referral,
errors). A `type` this version does not know falls to `UnknownMessage`, which keeps the
raw item, so a new Meta type is published, never dropped or rejected.

A type is named once, in its model's `type` Literal; typing a new one is its model added
to `KnownMessage` (the lookup tables and the tagged union are derived from it) and its
row in the normalizer's `MESSAGE_DATA` (actors/normalize_message.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import Field, TypeAdapter, model_validator

from models.meta.common import (
    Context,
    MetaError,
    MetaModel,
    MetaTime,
    NonEmptyId,
    OptionalId,
    Referral,
)
from models.meta.content import (
    Button,
    Edit,
    Location,
    Media,
    Order,
    Reaction,
    Revoke,
    SharedContact,
    System,
    Text,
    Unsupported,
)
from models.meta.interactive import Interactive
from models.meta.unions import by_name, members, with_fallback


class BaseMessage(MetaModel):
    """What every message carries besides its content.

    A username-only customer has `from_user_id` and no `from` (or `from: ""`); a group
    message names the group in `group_id` and the participant in `from`.
    """

    id: NonEmptyId
    from_: OptionalId = Field(default=None, alias="from")
    from_user_id: OptionalId = None
    group_id: OptionalId = None
    timestamp: MetaTime
    context: Context | None = None
    referral: Referral | None = None
    errors: tuple[MetaError, ...] = ()


class TextMessage(BaseMessage):
    type: Literal["text"]
    text: Text


class ImageMessage(BaseMessage):
    type: Literal["image"]
    image: Media


class VideoMessage(BaseMessage):
    type: Literal["video"]
    video: Media


class AudioMessage(BaseMessage):
    """Audio; `audio.voice` is true for a voice note."""

    type: Literal["audio"]
    audio: Media


class DocumentMessage(BaseMessage):
    type: Literal["document"]
    document: Media


class StickerMessage(BaseMessage):
    type: Literal["sticker"]
    sticker: Media


class LocationMessage(BaseMessage):
    type: Literal["location"]
    location: Location


class ContactsMessage(BaseMessage):
    type: Literal["contacts"]
    contacts: list[SharedContact]


class InteractiveMessage(BaseMessage):
    type: Literal["interactive"]
    interactive: Interactive


class ButtonMessage(BaseMessage):
    type: Literal["button"]
    button: Button


class ReactionMessage(BaseMessage):
    type: Literal["reaction"]
    reaction: Reaction


class OrderMessage(BaseMessage):
    type: Literal["order"]
    order: Order


class SystemMessage(BaseMessage):
    type: Literal["system"]
    system: System


class RequestWelcomeMessage(BaseMessage):
    """The customer opened the chat for the first time (no content)."""

    type: Literal["request_welcome"]


class EditMessage(BaseMessage):
    type: Literal["edit"]
    edit: Edit


class RevokeMessage(BaseMessage):
    type: Literal["revoke"]
    revoke: Revoke


class UnsupportedMessage(BaseMessage):
    """Meta's own "unsupported" type: it could not deliver the content; see `errors`."""

    type: Literal["unsupported", "unknown"]
    unsupported: Unsupported | None = None


class UnknownMessage(BaseMessage):
    """A message `type` this version does not know; `raw` is the item exactly as sent."""

    type: str | None = None
    raw: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _keep_raw(cls, value: Any) -> Any:
        if isinstance(value, dict) and "raw" not in value:
            return {**value, "raw": dict(value)}
        return value


KnownMessage: TypeAlias = (
    TextMessage
    | ImageMessage
    | VideoMessage
    | AudioMessage
    | DocumentMessage
    | StickerMessage
    | LocationMessage
    | ContactsMessage
    | InteractiveMessage
    | ButtonMessage
    | ReactionMessage
    | OrderMessage
    | SystemMessage
    | RequestWelcomeMessage
    | EditMessage
    | RevokeMessage
    | UnsupportedMessage
)
"""Every message type this version types: the one list (a new type's model goes here)."""

MESSAGE_MODELS: dict[str, type[BaseMessage]] = by_name(members(KnownMessage, BaseMessage), "type")
"""Each `type` value (aliases included, e.g. Meta's older "unknown") -> its model."""
MESSAGE_TYPES = frozenset(MESSAGE_MODELS)

if TYPE_CHECKING:
    InboundMessage: TypeAlias = KnownMessage | UnknownMessage
else:
    # The same union for pydantic, tagged by `type` with UnknownMessage as the fallback.
    # Built, not written, so a type is named once; mypy reads the plain union above.
    InboundMessage = with_fallback(KnownMessage, "type", UnknownMessage, "~unknown")
"""One item of `value.messages[]`, by its `type`."""

MESSAGE_ADAPTER: TypeAdapter[InboundMessage] = TypeAdapter(InboundMessage)


def parse_message(raw: Any) -> InboundMessage:
    """The typed message, or pydantic.ValidationError when a known type is malformed."""
    return MESSAGE_ADAPTER.validate_python(raw)
