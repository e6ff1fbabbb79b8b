"""Inbound messages (`value.messages[]`): a discriminated union on `type`.

Every variant shares the envelope of a message (id, sender, timestamp, context, referral,
errors). A `type` this version does not know falls to `UnknownMessage`, which keeps the
raw item, so a new Meta type is published, never dropped or rejected.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, TypeAdapter, model_validator

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


_VARIANTS: dict[str, type[BaseMessage]] = {
    "text": TextMessage,
    "image": ImageMessage,
    "video": VideoMessage,
    "audio": AudioMessage,
    "document": DocumentMessage,
    "sticker": StickerMessage,
    "location": LocationMessage,
    "contacts": ContactsMessage,
    "interactive": InteractiveMessage,
    "button": ButtonMessage,
    "reaction": ReactionMessage,
    "order": OrderMessage,
    "system": SystemMessage,
    "request_welcome": RequestWelcomeMessage,
    "edit": EditMessage,
    "revoke": RevokeMessage,
    "unsupported": UnsupportedMessage,
    "unknown": UnsupportedMessage,
}
MESSAGE_TYPES = frozenset(_VARIANTS)


def _message_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if kind == "unknown":  # Meta's older name for "unsupported"
        return "unsupported"
    return kind if isinstance(kind, str) and kind in MESSAGE_TYPES else "~unknown"


InboundMessage = Annotated[
    Annotated[TextMessage, Tag("text")]
    | Annotated[ImageMessage, Tag("image")]
    | Annotated[VideoMessage, Tag("video")]
    | Annotated[AudioMessage, Tag("audio")]
    | Annotated[DocumentMessage, Tag("document")]
    | Annotated[StickerMessage, Tag("sticker")]
    | Annotated[LocationMessage, Tag("location")]
    | Annotated[ContactsMessage, Tag("contacts")]
    | Annotated[InteractiveMessage, Tag("interactive")]
    | Annotated[ButtonMessage, Tag("button")]
    | Annotated[ReactionMessage, Tag("reaction")]
    | Annotated[OrderMessage, Tag("order")]
    | Annotated[SystemMessage, Tag("system")]
    | Annotated[RequestWelcomeMessage, Tag("request_welcome")]
    | Annotated[EditMessage, Tag("edit")]
    | Annotated[RevokeMessage, Tag("revoke")]
    | Annotated[UnsupportedMessage, Tag("unsupported")]
    | Annotated[UnknownMessage, Tag("~unknown")],
    Discriminator(_message_tag),
]
"""One item of `value.messages[]`, by its `type`."""

MESSAGE_ADAPTER: TypeAdapter[InboundMessage] = TypeAdapter(InboundMessage)


def parse_message(raw: Any) -> InboundMessage:
    """The typed message, or pydantic.ValidationError when a known type is malformed."""
    return MESSAGE_ADAPTER.validate_python(raw)
