"""The `data` of a message event (schema v1): one flat, closed model per content kind.

Unlike Meta's shape (`{"type": "image", "image": {...}}`), each model carries its content
directly and is tagged by `kind`; consumers switch on `kind`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from models.media import MediaFile


class _Closed(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorInfo(_Closed):
    """An error Meta reported (on a message, a status, or a whole change)."""

    code: int
    title: str | None = None
    message: str | None = None
    details: str | None = None
    href: str | None = None


class TextData(_Closed):
    kind: Literal["text"] = "text"
    body: str


MediaType = Literal["image", "video", "audio", "document", "sticker"]
MEDIA_TYPES: tuple[MediaType, ...] = get_args(MediaType)
"""The message types whose content is a media object, in the schema's order."""


class MediaData(_Closed):
    """Image, video, audio (voice note when `voice`), document or sticker."""

    kind: Literal["media"] = "media"
    media_type: MediaType
    media_id: str
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    url: str | None = None
    voice: bool = False
    animated: bool = False
    # The file itself (issue 12, docs/media.md): fetched, checked and stored by the media
    # pool before the event is published; None where media is not fetched (an edit's
    # previous content, a pipeline without media).
    file: MediaFile | None = None


class LocationData(_Closed):
    kind: Literal["location"] = "location"
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None


class SharedPhone(_Closed):
    phone: str | None = None
    wa_id: str | None = None
    type: str | None = None


class SharedContactData(_Closed):
    """One shared contact card, flattened."""

    formatted_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    birthday: str | None = None
    phones: list[SharedPhone] = []
    emails: list[str] = []
    urls: list[str] = []
    addresses: list[dict[str, str | None]] = []


class ContactsData(_Closed):
    kind: Literal["contacts"] = "contacts"
    contacts: list[SharedContactData]


class ButtonReplyData(_Closed):
    """An interactive reply button was tapped."""

    kind: Literal["button_reply"] = "button_reply"
    reply_id: str
    title: str | None = None


class ListReplyData(_Closed):
    """An interactive list row was chosen."""

    kind: Literal["list_reply"] = "list_reply"
    reply_id: str
    title: str | None = None
    description: str | None = None


class FlowReplyData(_Closed):
    """A WhatsApp Flow was completed; `response` is Meta's `response_json`, decoded."""

    kind: Literal["flow_reply"] = "flow_reply"
    name: str | None = None
    body: str | None = None
    response: dict[str, Any]


class CallPermissionReplyData(_Closed):
    kind: Literal["call_permission_reply"] = "call_permission_reply"
    response: str
    expires_at: datetime | None = None
    response_source: str | None = None
    is_permanent: bool | None = None


class PaymentMethodData(_Closed):
    kind: Literal["payment_method"] = "payment_method"
    payment_method: str | None = None
    paid_at: datetime | None = None
    reference_id: str | None = None
    last_four_digits: str | None = None
    credential_id: str | None = None


class UnknownInteractiveData(_Closed):
    """An interactive reply of a type this schema does not know; `raw` as Meta sent it."""

    kind: Literal["interactive_unknown"] = "interactive_unknown"
    interactive_type: str | None = None
    raw: dict[str, Any]


class TemplateButtonData(_Closed):
    """A template quick-reply button was tapped (Meta's `button` type)."""

    kind: Literal["template_button"] = "template_button"
    payload: str | None = None
    text: str | None = None


class ReactionData(_Closed):
    """A reaction; `removed` is true (and `emoji` null) when the customer took it back."""

    kind: Literal["reaction"] = "reaction"
    message_id: str
    emoji: str | None = None
    removed: bool


class OrderItemData(_Closed):
    product_retailer_id: str
    quantity: int
    item_price: float | None = None
    currency: str | None = None


class OrderData(_Closed):
    kind: Literal["order"] = "order"
    catalog_id: str
    text: str | None = None
    items: list[OrderItemData]


class SystemData(_Closed):
    """The customer changed number (`new_wa_id`), identity or business-scoped user id."""

    kind: Literal["system"] = "system"
    system_type: str | None = None
    body: str | None = None
    new_wa_id: str | None = None
    new_user_id: str | None = None


class RequestWelcomeData(_Closed):
    """The customer opened the chat for the first time."""

    kind: Literal["request_welcome"] = "request_welcome"


class EditData(_Closed):
    """The customer edited `original_message_id`; `content` is the new content."""

    kind: Literal["edit"] = "edit"
    original_message_id: str
    content: TextData | MediaData | None = None


class RevokeData(_Closed):
    """The customer deleted `original_message_id` for everyone."""

    kind: Literal["revoke"] = "revoke"
    original_message_id: str


class UnsupportedMessageData(_Closed):
    """Meta could not deliver the content (its `unsupported` type); see `errors`."""

    kind: Literal["unsupported_message"] = "unsupported_message"
    unsupported_type: str | None = None
    errors: list[ErrorInfo] = []


class UnknownMessageData(_Closed):
    """A message type this schema does not know yet; `raw` is the item as Meta sent it."""

    kind: Literal["unknown_message"] = "unknown_message"
    message_type: str | None = None
    raw: dict[str, Any]


MessageData = Annotated[
    TextData
    | MediaData
    | LocationData
    | ContactsData
    | ButtonReplyData
    | ListReplyData
    | FlowReplyData
    | CallPermissionReplyData
    | PaymentMethodData
    | UnknownInteractiveData
    | TemplateButtonData
    | ReactionData
    | OrderData
    | SystemData
    | RequestWelcomeData
    | EditData
    | RevokeData
    | UnsupportedMessageData
    | UnknownMessageData,
    Field(discriminator="kind"),
]
"""The `data` of a `message` (or history) event."""
