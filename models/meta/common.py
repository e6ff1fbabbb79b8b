"""Parts every Meta payload shares: the lenient scalar types, errors, contacts, context.

Meta is inconsistent about scalars (ids and timestamps arrive as strings or integers, an
absent wa_id arrives as ""), so the types here absorb that; values that would corrupt data
when guessed (a timestamp that is not a number, an error without a code) fail validation.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

_MAX_UNIX = 2**33  # year 2242: anything above is not a Meta timestamp
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T")  # our own published form, on re-validation


def _to_id(value: Any) -> Any:
    """Meta ids are strings, but some (template ids, call ids) arrive as integers."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _to_datetime(value: Any) -> Any:
    """Unix seconds as int or digit string (Meta uses both); ISO strings on re-validation."""
    if isinstance(value, bool):
        return value
    if isinstance(value, datetime):
        # A naive time would make age checks raise; Meta's and ours are UTC.
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        seconds = int(value)
        if not 0 < seconds < _MAX_UNIX:
            raise ValueError("unix timestamp out of range")
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, str) and _ISO.match(value):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    raise ValueError("timestamp must be unix seconds (int or digit string)")


def _blank_to_none(value: Any) -> Any:
    """Meta sends "" for an absent wa_id / recipient_id of username-only users."""
    if value == "":
        return None
    return _to_id(value)


MetaId = Annotated[str, BeforeValidator(_to_id)]
"""An id Meta sends as a string or an integer; always a string here."""

NonEmptyId = Annotated[str, BeforeValidator(_to_id), Field(min_length=1)]
"""An id that keys idempotency (wamid, status id): never empty."""

OptionalId = Annotated[str | None, BeforeValidator(_blank_to_none)]
"""An id that may be absent, null or "" (all three mean absent)."""

MetaTime = Annotated[datetime, BeforeValidator(_to_datetime)]
"""A point in time Meta sends as unix seconds (string or integer)."""


class MetaModel(BaseModel):
    """Base of every inbound model: tolerant of fields Meta adds, immutable once parsed."""

    model_config = ConfigDict(
        extra="allow", frozen=True, populate_by_name=True, serialize_by_alias=True
    )


class ErrorData(MetaModel):
    """`error_data` of a Meta error."""

    details: str | None = None


class MetaError(MetaModel):
    """One error object (value level, message level or status level)."""

    code: int
    title: str | None = None
    message: str | None = None
    error_data: ErrorData | None = None
    href: str | None = None


class Profile(MetaModel):
    """`contacts[].profile`: the name the customer set, and (newer) their username."""

    name: str | None = None
    username: str | None = None
    country_code: str | None = None


class Contact(MetaModel):
    """`value.contacts[]`: who the customer is (wa_id, business-scoped user_id, username)."""

    wa_id: OptionalId = None
    user_id: OptionalId = None
    username: str | None = None
    profile: Profile | None = None
    identity_key_hash: str | None = None

    @property
    def best_username(self) -> str | None:
        """Meta has put the username both beside and inside `profile`."""
        return self.username or (self.profile.username if self.profile else None)


class Metadata(MetaModel):
    """`value.metadata`: the business number the change concerns."""

    display_phone_number: str | None = None
    phone_number_id: OptionalId = None


class ReferredProduct(MetaModel):
    """`context.referred_product`: the catalog item a "message business" button names."""

    catalog_id: MetaId
    product_retailer_id: MetaId


class Context(MetaModel):
    """`message.context`: a reply, a forward marker, or a product enquiry."""

    id: OptionalId = None
    from_: OptionalId = Field(default=None, alias="from")
    forwarded: bool = False
    frequently_forwarded: bool = False
    referred_product: ReferredProduct | None = None


class WelcomeMessage(MetaModel):
    """The greeting a click-to-WhatsApp ad showed."""

    text: str | None = None


class Referral(MetaModel):
    """`message.referral`: the ad or post the customer came from (click-to-WhatsApp)."""

    source_url: str | None = None
    source_id: OptionalId = None
    source_type: str | None = None
    body: str | None = None
    headline: str | None = None
    media_type: str | None = None
    image_url: str | None = None
    video_url: str | None = None
    thumbnail_url: str | None = None
    ctwa_clid: str | None = None
    welcome_message: WelcomeMessage | None = None


class FieldValue(MetaModel):
    """Base of a non-message field's `value`; `kind` names the field in published events.

    A subclass declares everything about its field: the name, once, as its `kind`
    Literal; the event `category` (routing-key segment 2); and `timed_list`, the list
    whose first item's `timestamp` is when the event happened (fields carry no other
    time). The field tables are derived from the unions of these models.

    The envelope keys some values repeat (`messaging_product`, `metadata`, and the `field`
    / `object` that some documented examples put inside `value`) are parsed, not published.
    """

    category: ClassVar[str]
    timed_list: ClassVar[str | None] = None

    kind: str
    messaging_product: str | None = Field(default=None, exclude=True)
    metadata: Metadata | None = Field(default=None, exclude=True)
    field_: str | None = Field(default=None, alias="field", exclude=True)
    object_: str | None = Field(default=None, alias="object", exclude=True)
