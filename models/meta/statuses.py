"""Inbound statuses (`value.statuses[]`): what happened to a message (or call) we sent."""

from __future__ import annotations

from typing import Any

from pydantic import Field, TypeAdapter

from models.meta.common import MetaError, MetaModel, MetaTime, NonEmptyId, OptionalId


class ConversationOrigin(MetaModel):
    """Why the conversation was opened (its pricing category)."""

    type: str | None = None


class Conversation(MetaModel):
    """`status.conversation`: the billing conversation the message belongs to."""

    id: OptionalId = None
    expiration_timestamp: MetaTime | None = None
    origin: ConversationOrigin | None = None


class Pricing(MetaModel):
    """`status.pricing`: how the message is billed."""

    billable: bool | None = None
    pricing_model: str | None = None
    category: str | None = None
    type: str | None = None


class Status(MetaModel):
    """One status: sent, delivered, read, played, failed (or a call status, or a new one).

    `status` stays a free string: Meta adds states (e.g. `played`, call states) and an
    unknown one is still a status worth publishing. `recipient_id` is "" for username-only
    customers, who are named by `recipient_user_id`; `recipient_type: group` means the
    recipient is a group.
    """

    id: NonEmptyId
    status: str = Field(min_length=1)
    timestamp: MetaTime
    recipient_id: OptionalId = None
    recipient_user_id: OptionalId = None
    recipient_type: str | None = None
    recipient_participant_id: OptionalId = None
    type: str | None = None
    conversation: Conversation | None = None
    pricing: Pricing | None = None
    errors: tuple[MetaError, ...] = ()
    biz_opaque_callback_data: str | None = None


STATUS_ADAPTER: TypeAdapter[Status] = TypeAdapter(Status)
ERROR_ADAPTER: TypeAdapter[MetaError] = TypeAdapter(MetaError)


def parse_status(raw: Any) -> Status:
    """The typed status, or pydantic.ValidationError."""
    return STATUS_ADAPTER.validate_python(raw)


def parse_error(raw: Any) -> MetaError:
    """A value-level error, or pydantic.ValidationError."""
    return ERROR_ADAPTER.validate_python(raw)
