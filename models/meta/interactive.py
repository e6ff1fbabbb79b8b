"""`message.interactive`: replies to buttons, lists, flows, call permission and payments.

A discriminated union on `interactive.type`; an unknown type falls to
`UnknownInteractive`, which keeps everything Meta sent.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import BeforeValidator

from models.meta.common import MetaModel, MetaTime
from models.meta.unions import by_name, members, with_fallback


class ReplyChoice(MetaModel):
    """The button or list row the customer picked."""

    id: str
    title: str | None = None
    description: str | None = None


def _decode_json_object(value: Any) -> Any:
    """Meta sends a flow's answers as a JSON *string*; a string that is not a JSON object
    is a validation error (it would otherwise be published as garbage)."""
    if isinstance(value, str):
        decoded = json.loads(value)
        if not isinstance(decoded, dict):
            raise ValueError("response_json must encode a JSON object")
        return decoded
    return value


class FlowReply(MetaModel):
    """`nfm_reply`: a WhatsApp Flow was completed; `response_json` decoded to an object."""

    name: str | None = None
    body: str | None = None
    response_json: Annotated[dict[str, Any], BeforeValidator(_decode_json_object)]


class CallPermissionReply(MetaModel):
    """`call_permission_reply`: the customer answered a request to call them."""

    response: str
    expiration_timestamp: MetaTime | None = None
    response_source: str | None = None
    is_permanent: bool | None = None


class PaymentMethod(MetaModel):
    """`payment_method`: the customer chose a saved payment method (one-click payments)."""

    payment_method: str | None = None
    payment_timestamp: MetaTime | None = None
    reference_id: str | None = None
    last_four_digits: str | None = None
    credential_id: str | None = None


class ButtonReplyInteractive(MetaModel):
    """A reply button was tapped."""

    type: Literal["button_reply"]
    button_reply: ReplyChoice


class ListReplyInteractive(MetaModel):
    """A list row was chosen."""

    type: Literal["list_reply"]
    list_reply: ReplyChoice


class FlowReplyInteractive(MetaModel):
    """A flow was completed."""

    type: Literal["nfm_reply"]
    nfm_reply: FlowReply


class CallPermissionInteractive(MetaModel):
    """A call-permission request was answered."""

    type: Literal["call_permission_reply"]
    call_permission_reply: CallPermissionReply


class PaymentMethodInteractive(MetaModel):
    """A payment method was chosen."""

    type: Literal["payment_method"]
    payment_method: PaymentMethod


class UnknownInteractive(MetaModel):
    """An interactive reply of a type this version does not know; all keys are kept."""

    type: str | None = None


KnownInteractive: TypeAlias = (
    ButtonReplyInteractive
    | ListReplyInteractive
    | FlowReplyInteractive
    | CallPermissionInteractive
    | PaymentMethodInteractive
)
"""Every interactive reply type this version types (a new type's model goes here)."""

INTERACTIVE_TYPES = frozenset(by_name(members(KnownInteractive, MetaModel), "type"))

if TYPE_CHECKING:
    Interactive: TypeAlias = KnownInteractive | UnknownInteractive
else:
    # Built from the union above (tagged by `type`, UnknownInteractive the fallback), so
    # a type is named once; mypy reads the plain union.
    Interactive = with_fallback(KnownInteractive, "type", UnknownInteractive, "unknown")
"""`message.interactive`, by its `type`."""
