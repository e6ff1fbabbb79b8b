"""The non-message fields: which model parses which `field`, and their union by `kind`.

Nothing here names a field: each field module declares its models (name as the `kind`
Literal, `category` beside it) and its union, and the tables below are derived from
those unions at import time. Adding a field is a model in its module, added to that
module's union.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias

from pydantic import Field

from models.meta.common import FieldValue
from models.meta.fields_account import UNTYPED_ACCOUNT_FIELDS, AccountField
from models.meta.fields_activity import UNTYPED_ACTIVITY_FIELDS, ActivityField
from models.meta.fields_template import (
    UNTYPED_TEMPLATE_FIELDS,
    MessageTemplateQualityUpdate,
    MessageTemplateStatusUpdate,
    TemplateField,
)
from models.meta.unions import by_name, members, names_of

KnownField: TypeAlias = AccountField | TemplateField | ActivityField
"""Every field model, module by module (the order of the published schema's `oneOf`)."""

FieldEventData = Annotated[KnownField, Field(discriminator="kind")]
"""The `data` of a field event: the field's typed value, tagged by `kind`."""

FIELD_MODELS: dict[str, type[FieldValue]] = by_name(members(KnownField, FieldValue), "kind")
"""Every field this version types; any other field is published as `unknown_field`."""

UNTYPED_FIELDS: dict[str, str] = {
    **UNTYPED_ACCOUNT_FIELDS,
    **UNTYPED_TEMPLATE_FIELDS,
    **UNTYPED_ACTIVITY_FIELDS,
}
"""Fields Meta sends that this version does not type yet -> their category."""

FIELD_CATEGORIES: dict[str, str] = {
    **UNTYPED_FIELDS,
    **{field: model.category for field, model in FIELD_MODELS.items()},
}
"""Webhook field -> the category its events are published under (routing-key segment 2)."""

_STATUS_UPDATE = names_of(MessageTemplateStatusUpdate, "kind")[0]


def model_for(field: str, value: Any) -> type[FieldValue] | None:
    """The model that parses this field's value, or None for a field we do not know.

    Quirk: Meta's own example of a template *quality* update is labelled
    `message_template_status_update`; a value with `new_quality_score` and no `event` is
    parsed as the quality update it is.
    """
    if (
        field == _STATUS_UPDATE
        and isinstance(value, dict)
        and "event" not in value
        and "new_quality_score" in value
    ):
        return MessageTemplateQualityUpdate
    return FIELD_MODELS.get(field)
