"""Message content to schema v1 `data`, and the reply / forward / referral context.

One case per inbound message model (an explicit type-to-handler table, written as a
`match`): adding a Meta type means adding a model and a case here.
"""

from __future__ import annotations

from models.event import Forwarded, Referral, ReferredProduct, ReplyTo
from models.event_message import (
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
from models.meta.common import MetaError
from models.meta.content import EditedMessage, Media, SharedContact


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


def _interactive(value: ia.Interactive) -> MessageData:
    match value:
        case ia.ButtonReplyInteractive(button_reply=choice):
            return ButtonReplyData(reply_id=choice.id, title=choice.title)
        case ia.ListReplyInteractive(list_reply=choice):
            return ListReplyData(
                reply_id=choice.id, title=choice.title, description=choice.description
            )
        case ia.FlowReplyInteractive(nfm_reply=flow):
            return FlowReplyData(name=flow.name, body=flow.body, response=flow.response_json)
        case ia.CallPermissionInteractive(call_permission_reply=reply):
            return CallPermissionReplyData(
                response=reply.response,
                expires_at=reply.expiration_timestamp,
                response_source=reply.response_source,
                is_permanent=reply.is_permanent,
            )
        case ia.PaymentMethodInteractive(payment_method=pay):
            return PaymentMethodData(
                payment_method=pay.payment_method,
                paid_at=pay.payment_timestamp,
                reference_id=pay.reference_id,
                last_four_digits=pay.last_four_digits,
                credential_id=pay.credential_id,
            )
        case _:
            return UnknownInteractiveData(
                interactive_type=value.type, raw=value.model_dump(mode="json")
            )


def _edited(edited: EditedMessage | None) -> TextData | MediaData | None:
    if edited is None:
        return None
    if edited.text is not None:
        return TextData(body=edited.text.body)
    for kind in ("image", "video", "audio", "document", "sticker"):
        media = getattr(edited, kind)
        if isinstance(media, Media):
            return _media(kind, media)
    return None


def message_data(message: msg.InboundMessage) -> MessageData:
    """The typed `data` of a message event."""
    match message:
        case msg.TextMessage(text=text):
            return TextData(body=text.body)
        case (
            msg.ImageMessage(image=m)
            | msg.VideoMessage(video=m)
            | msg.AudioMessage(audio=m)
            | msg.DocumentMessage(document=m)
            | msg.StickerMessage(sticker=m)
        ):
            return _media(message.type, m)
        case msg.LocationMessage(location=loc):
            return LocationData(
                latitude=loc.latitude,
                longitude=loc.longitude,
                name=loc.name,
                address=loc.address,
                url=loc.url,
            )
        case msg.ContactsMessage(contacts=cards):
            return ContactsData(contacts=[_contact(card) for card in cards])
        case msg.InteractiveMessage(interactive=value):
            return _interactive(value)
        case msg.ButtonMessage(button=button):
            return TemplateButtonData(payload=button.payload, text=button.text)
        case msg.ReactionMessage(reaction=reaction):
            emoji = reaction.emoji or None  # Meta removes a reaction by sending "" (or none)
            return ReactionData(message_id=reaction.message_id, emoji=emoji, removed=emoji is None)
        case msg.OrderMessage(order=order):
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
        case msg.SystemMessage(system=system):
            return SystemData(
                system_type=system.type,
                body=system.body,
                new_wa_id=system.wa_id,
                new_user_id=system.user_id,
            )
        case msg.RequestWelcomeMessage():
            return RequestWelcomeData()
        case msg.EditMessage(edit=edit):
            return EditData(
                original_message_id=edit.original_message_id, content=_edited(edit.message)
            )
        case msg.RevokeMessage(revoke=revoke):
            return RevokeData(original_message_id=revoke.original_message_id)
        case msg.UnsupportedMessage(unsupported=unsupported):
            return UnsupportedMessageData(
                unsupported_type=unsupported.type if unsupported else None,
                errors=[error_info(e) for e in message.errors],
            )
        case msg.UnknownMessage(raw=raw):
            return UnknownMessageData(message_type=message.type, raw=raw)
    raise TypeError(f"no case for {type(message).__name__}")  # pragma: no cover


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
