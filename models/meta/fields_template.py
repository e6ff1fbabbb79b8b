"""Template fields: status, quality, components and category updates."""

from __future__ import annotations

from typing import ClassVar, Literal, TypeAlias

from pydantic import Field

from models.meta.common import FieldValue, MetaModel, MetaTime, NonEmptyId


class TemplateOtherInfo(MetaModel):
    """`message_template_status_update.other_info` (e.g. why a template was paused)."""

    title: str | None = None
    description: str | None = None


class MessageTemplateStatusUpdate(FieldValue):
    """`message_template_status_update`: approved, rejected, paused, disabled, ..."""

    kind: Literal["message_template_status_update"] = "message_template_status_update"
    category: ClassVar[str] = "template"
    event: str
    message_template_id: NonEmptyId
    message_template_name: str | None = None
    message_template_language: str | None = None
    message_template_category: str | None = None
    reason: str | None = None
    other_info: TemplateOtherInfo | None = None


class MessageTemplateQualityUpdate(FieldValue):
    """`message_template_quality_update`: the template's quality score changed."""

    kind: Literal["message_template_quality_update"] = "message_template_quality_update"
    category: ClassVar[str] = "template"
    message_template_id: NonEmptyId
    message_template_name: str | None = None
    message_template_language: str | None = None
    previous_quality_score: str | None = None
    new_quality_score: str


class TemplateButton(MetaModel):
    """One button of an edited template."""

    type: str | None = Field(default=None, alias="message_template_button_type")
    text: str | None = Field(default=None, alias="message_template_button_text")
    url: str | None = Field(default=None, alias="message_template_button_url")
    phone_number: str | None = Field(default=None, alias="message_template_button_phone_number")


class MessageTemplateComponentsUpdate(FieldValue):
    """`message_template_components_update`: a template's text or buttons were edited."""

    kind: Literal["message_template_components_update"] = "message_template_components_update"
    category: ClassVar[str] = "template"
    message_template_id: NonEmptyId
    message_template_name: str | None = None
    message_template_language: str | None = None
    message_template_title: str | None = None
    message_template_element: str | None = None
    message_template_footer: str | None = None
    message_template_buttons: tuple[TemplateButton, ...] = ()


class TemplateCategoryUpdate(FieldValue):
    """`template_category_update`: a template's category changed or will change."""

    kind: Literal["template_category_update"] = "template_category_update"
    category: ClassVar[str] = "template"
    message_template_id: NonEmptyId
    message_template_name: str | None = None
    message_template_language: str | None = None
    previous_category: str | None = None
    new_category: str
    correct_category: str | None = None
    category_update_timestamp: MetaTime | None = None


TemplateField: TypeAlias = (
    MessageTemplateStatusUpdate
    | MessageTemplateQualityUpdate
    | MessageTemplateComponentsUpdate
    | TemplateCategoryUpdate
)
"""The template fields this version types (a new template field's model goes here)."""

UNTYPED_TEMPLATE_FIELDS: dict[str, str] = {"template_correct_category_detection": "template"}
"""Template fields Meta sends that are not typed yet -> their category; their events carry
`unknown_field` data (typing one means a model above, and dropping it here)."""
