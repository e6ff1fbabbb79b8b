"""The content objects of inbound messages (`message.<type>`), one class per shape."""

from __future__ import annotations

from pydantic import Field

from models.meta.common import MetaId, MetaModel, OptionalId


class Text(MetaModel):
    """`message.text`."""

    body: str


class Media(MetaModel):
    """`message.image|video|audio|document|sticker`: a media id to fetch from the Graph API.

    `voice` marks a voice note (audio), `animated` an animated sticker.
    """

    id: MetaId
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    url: str | None = None
    voice: bool | None = None
    animated: bool | None = None


class Location(MetaModel):
    """`message.location`: coordinates are required and range-checked (never guessed)."""

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: str | None = None
    address: str | None = None
    url: str | None = None


class ContactName(MetaModel):
    """A shared contact's name parts."""

    formatted_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    middle_name: str | None = None
    suffix: str | None = None
    prefix: str | None = None


class ContactPhone(MetaModel):
    """A shared contact's phone."""

    phone: str | None = None
    wa_id: OptionalId = None
    type: str | None = None


class ContactEmail(MetaModel):
    """A shared contact's e-mail address."""

    email: str | None = None
    type: str | None = None


class ContactUrl(MetaModel):
    """A shared contact's web address."""

    url: str | None = None
    type: str | None = None


class ContactAddress(MetaModel):
    """A shared contact's postal address."""

    street: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    country_code: str | None = None
    type: str | None = None


class ContactOrg(MetaModel):
    """A shared contact's organization."""

    company: str | None = None
    department: str | None = None
    title: str | None = None


class SharedContact(MetaModel):
    """One vCard-like entry of `message.contacts`."""

    name: ContactName | None = None
    phones: tuple[ContactPhone, ...] = ()
    emails: tuple[ContactEmail, ...] = ()
    urls: tuple[ContactUrl, ...] = ()
    addresses: tuple[ContactAddress, ...] = ()
    org: ContactOrg | None = None
    birthday: str | None = None


class Button(MetaModel):
    """`message.button`: a template quick-reply button was tapped."""

    payload: str | None = None
    text: str | None = None


class Reaction(MetaModel):
    """`message.reaction`: an absent or empty emoji means the reaction was removed."""

    message_id: MetaId
    emoji: str | None = None


class OrderItem(MetaModel):
    """One line of an order; the quantity is an integer, never coerced from a fraction."""

    product_retailer_id: MetaId
    quantity: int = Field(ge=0)
    item_price: float | None = None
    currency: str | None = None


class Order(MetaModel):
    """`message.order`: a cart sent from a catalog."""

    catalog_id: MetaId
    text: str | None = None
    product_items: tuple[OrderItem, ...] = ()


class System(MetaModel):
    """`message.system`: the customer changed number, identity or user id."""

    body: str | None = None
    type: str | None = None
    wa_id: OptionalId = None
    user_id: OptionalId = None
    customer: OptionalId = None
    identity: str | None = None


class EditedMessage(MetaModel):
    """`edit.message`: the new content of an edited message (no id, sender or timestamp)."""

    type: str
    text: Text | None = None
    image: Media | None = None
    video: Media | None = None
    audio: Media | None = None
    document: Media | None = None
    sticker: Media | None = None


class Edit(MetaModel):
    """`message.edit`: the customer edited an earlier message."""

    original_message_id: MetaId
    message: EditedMessage | None = None


class Revoke(MetaModel):
    """`message.revoke`: the customer deleted an earlier message for everyone."""

    original_message_id: MetaId


class Unsupported(MetaModel):
    """`message.unsupported`: what Meta could not deliver (the type it saw, if any)."""

    type: str | None = None
