"""Message content to schema v1 `data`, and the reply / forward / referral context.

One row per inbound message model (an explicit model-to-handler table): adding a Meta
type means adding its model to the message union and a row here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from models.event import Forwarded, Referral, ReferredProduct, ReplyTo
from models.event_message import (
    MEDIA_TYPES,
    ButtonReplyData,
    CallPermissionReplyData,
    ContactsData,
    EditData,
    ErrorInfo,
    FlowReplyData,
    ListReplyData,
    LocationData,
    MediaData,
    MessageData,
    OrderData,
    OrderItemData,
    PaymentMethodData,
    ReactionData,
    RequestWelcomeData,
    RevokeData,
    SharedContactData,
    SharedPhone,
    SystemData,
    TemplateButtonData,
    TextData,
    UnknownInteractiveData,
    UnknownMessageData,
    UnsupportedMessageData,
)
from models.meta import interactive as ia
from models.meta import messages as msg
from models.meta.common import MetaError, MetaModel
from models.meta.content import EditedMessage, Media, SharedContact

M = TypeVar("M", bound=MetaModel)


def error_info(error: MetaError) -> ErrorInfo:
    """A Meta error object as the event's error shape."""
    return ErrorInfo(
        code=error.code,
        title=error.title,
        message=error.message,
        details=error.error_data.details if error.error_data else None,
        href=error.href,
    )


def _media(kind: str, media: Media) -> MediaData:
    return MediaData.model_validate(
        {
            "media_type": kind,
            "media_id": media.id,
            "mime_type": media.mime_type,
            "sha256": media.sha256,
            "caption": media.caption,
            "filename": media.filename,
            "url": media.url,
            "voice": bool(media.voice),
            "animated": bool(media.animated),
        }
    )


def _contact(card: SharedContact) -> SharedContactData:
    name = card.name
    return SharedContactData(
        formatted_name=name.formatted_name if name else None,
        first_name=name.first_name if name else None,
        last_name=name.last_name if name else None,
        company=card.org.company if card.org else None,
        birthday=card.birthday,
        phones=[SharedPhone(phone=p.phone, wa_id=p.wa_id, type=p.type) for p in card.phones],
        emails=[e.email for e in card.emails if e.email],
        urls=[u.url for u in card.urls if u.url],
        addresses=[
            a.model_dump(
                include={"street", "city", "state", "zip", "country", "country_code", "type"}
            )
            for a in card.addresses
        ],
    )


def _case(
    model: type[M], convert: Callable[[M], MessageData]
) -> tuple[type[MetaModel], Callable[[Any], MessageData]]:
    """One row of a model -> `data` table; mypy checks the handler takes that model."""
    return model, convert


def _unknown_interactive(value: ia.UnknownInteractive) -> MessageData:
    return UnknownInteractiveData(interactive_type=value.type, raw=value.model_dump(mode="json"))


INTERACTIVE_DATA: dict[type[MetaModel], Callable[[Any], MessageData]] = dict(
    [
        _case(
            ia.ButtonReplyInteractive,
            lambda v: ButtonReplyData(reply_id=v.button_reply.id, title=v.button_reply.title),
        ),
        _case(
            ia.ListReplyInteractive,
            lambda v: ListReplyData(
                reply_id=v.list_reply.id,
                title=v.list_reply.title,
                description=v.list_reply.description,
            ),
        ),
        _case(
            ia.FlowReplyInteractive,
            lambda v: FlowReplyData(
                name=v.nfm_reply.name, body=v.nfm_reply.body, response=v.nfm_reply.response_json
            ),
        ),
        _case(
            ia.CallPermissionInteractive,
            lambda v: CallPermissionReplyData(
                response=v.call_permission_reply.response,
                expires_at=v.call_permission_reply.expiration_timestamp,
                response_source=v.call_permission_reply.response_source,
                is_permanent=v.call_permission_reply.is_permanent,
            ),
        ),
        _case(
            ia.PaymentMethodInteractive,
            lambda v: PaymentMethodData(
                payment_method=v.payment_method.payment_method,
                paid_at=v.payment_method.payment_timestamp,
                reference_id=v.payment_method.reference_id,
                last_four_digits=v.payment_method.last_four_digits,
                credential_id=v.payment_method.credential_id,
            ),
        ),
        _case(ia.UnknownInteractive, _unknown_interactive),
    ]
)
"""Interactive reply model -> its `data`, one row per member of `ia.Interactive`."""


def _edited(edited: EditedMessage | None) -> TextData | MediaData | None:
    if edited is None:
        return None
    if edited.text is not None:
        return TextData(body=edited.text.body)
    for kind in MEDIA_TYPES:
        media = getattr(edited, kind)
        if isinstance(media, Media):
            return _media(kind, media)
    return None


def _reaction(message: msg.ReactionMessage) -> MessageData:
    emoji = message.reaction.emoji or None  # Meta removes a reaction by sending "" (or none)
    return ReactionData(message_id=message.reaction.message_id, emoji=emoji, removed=emoji is None)


def _order(message: msg.OrderMessage) -> MessageData:
    order = message.order
    return OrderData(
        catalog_id=order.catalog_id,
        text=order.text,
        items=[
            OrderItemData(
                product_retailer_id=i.product_retailer_id,
                quantity=i.quantity,
                item_price=i.item_price,
                currency=i.currency,
            )
            for i in order.product_items
        ],
    )


MESSAGE_DATA: dict[type[MetaModel], Callable[[Any], MessageData]] = dict(
    [
        _case(msg.TextMessage, lambda m: TextData(body=m.text.body)),
        _case(msg.ImageMessage, lambda m: _media(m.type, m.image)),
        _case(msg.VideoMessage, lambda m: _media(m.type, m.video)),
        _case(msg.AudioMessage, lambda m: _media(m.type, m.audio)),
        _case(msg.DocumentMessage, lambda m: _media(m.type, m.document)),
        _case(msg.StickerMessage, lambda m: _media(m.type, m.sticker)),
        _case(
            msg.LocationMessage,
            lambda m: LocationData(
                latitude=m.location.latitude,
                longitude=m.location.longitude,
                name=m.location.name,
                address=m.location.address,
                url=m.location.url,
            ),
        ),
        _case(
            msg.ContactsMessage, lambda m: ContactsData(contacts=[_contact(c) for c in m.contacts])
        ),
        _case(
            msg.InteractiveMessage, lambda m: INTERACTIVE_DATA[type(m.interactive)](m.interactive)
        ),
        _case(
            msg.ButtonMessage,
            lambda m: TemplateButtonData(payload=m.button.payload, text=m.button.text),
        ),
        _case(msg.ReactionMessage, _reaction),
        _case(msg.OrderMessage, _order),
        _case(
            msg.SystemMessage,
            lambda m: SystemData(
                system_type=m.system.type,
                body=m.system.body,
                new_wa_id=m.system.wa_id,
                new_user_id=m.system.user_id,
            ),
        ),
        _case(msg.RequestWelcomeMessage, lambda _m: RequestWelcomeData()),
        _case(
            msg.EditMessage,
            lambda m: EditData(
                original_message_id=m.edit.original_message_id, content=_edited(m.edit.message)
            ),
        ),
        _case(
            msg.RevokeMessage,
            lambda m: RevokeData(original_message_id=m.revoke.original_message_id),
        ),
        _case(
            msg.UnsupportedMessage,
            lambda m: UnsupportedMessageData(
                unsupported_type=m.unsupported.type if m.unsupported else None,
                errors=[error_info(e) for e in m.errors],
            ),
        ),
        _case(msg.UnknownMessage, lambda m: UnknownMessageData(message_type=m.type, raw=m.raw)),
    ]
)
"""Message model -> its `data`: the explicit type-to-handler table, one row per member of
`msg.InboundMessage` (tests/unit/test_meta_tables.py checks it covers every member). A
dict lookup on the exact class: normalization runs per event."""


def message_data(message: msg.InboundMessage) -> MessageData:
    """The typed `data` of a message event."""
    return MESSAGE_DATA[type(message)](message)


def reply_to(message: msg.BaseMessage) -> ReplyTo | None:
    """The replied-to message or enquired product, from `context`."""
    ctx = message.context
    if ctx is None or not (ctx.id or ctx.referred_product):
        return None
    product = ctx.referred_product
    return ReplyTo(
        message_id=ctx.id,
        sender=ctx.from_,
        referred_product=ReferredProduct(
            catalog_id=product.catalog_id, product_retailer_id=product.product_retailer_id
        )
        if product
        else None,
    )


def forwarded(message: msg.BaseMessage) -> Forwarded | None:
    """Set when `context` marks the message as forwarded."""
    ctx = message.context
    if ctx is None or not (ctx.forwarded or ctx.frequently_forwarded):
        return None
    return Forwarded(frequently=ctx.frequently_forwarded)


def referral(message: msg.BaseMessage) -> Referral | None:
    """The click-to-WhatsApp ad or post, from `referral`."""
    ref = message.referral
    if ref is None:
        return None
    return Referral(
        source_type=ref.source_type,
        source_id=ref.source_id,
        source_url=ref.source_url,
        headline=ref.headline,
        body=ref.body,
        media_type=ref.media_type,
        image_url=ref.image_url,
        video_url=ref.video_url,
        thumbnail_url=ref.thumbnail_url,
        ctwa_clid=ref.ctwa_clid,
        welcome_message=ref.welcome_message.text if ref.welcome_message else None,
    )
