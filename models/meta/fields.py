"""The non-message fields: which model parses which `field`, and their union by `kind`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from models.meta.common import FieldValue
from models.meta.fields_account import (
    AccountAlerts,
    AccountReviewUpdate,
    AccountUpdate,
    BusinessCapabilityUpdate,
    PartnerSolutions,
    PaymentConfigurationUpdate,
    PhoneNumberNameUpdate,
    PhoneNumberQualityUpdate,
    Security,
)
from models.meta.fields_activity import (
    AutomaticEvents,
    Calls,
    Flows,
    GroupLifecycleUpdate,
    GroupParticipantsUpdate,
    GroupSettingsUpdate,
    GroupStatusUpdate,
    History,
    SmbAppStateSync,
    SmbMessageEchoes,
    UserPreferences,
)
from models.meta.fields_template import (
    MessageTemplateComponentsUpdate,
    MessageTemplateQualityUpdate,
    MessageTemplateStatusUpdate,
    TemplateCategoryUpdate,
)

FIELD_MODELS: dict[str, type[FieldValue]] = {
    "account_update": AccountUpdate,
    "account_review_update": AccountReviewUpdate,
    "account_alerts": AccountAlerts,
    "business_capability_update": BusinessCapabilityUpdate,
    "phone_number_quality_update": PhoneNumberQualityUpdate,
    "phone_number_name_update": PhoneNumberNameUpdate,
    "security": Security,
    "partner_solutions": PartnerSolutions,
    "payment_configuration_update": PaymentConfigurationUpdate,
    "message_template_status_update": MessageTemplateStatusUpdate,
    "message_template_quality_update": MessageTemplateQualityUpdate,
    "message_template_components_update": MessageTemplateComponentsUpdate,
    "template_category_update": TemplateCategoryUpdate,
    "user_preferences": UserPreferences,
    "calls": Calls,
    "flows": Flows,
    "automatic_events": AutomaticEvents,
    "smb_message_echoes": SmbMessageEchoes,
    "smb_app_state_sync": SmbAppStateSync,
    "history": History,
    "group_lifecycle_update": GroupLifecycleUpdate,
    "group_participants_update": GroupParticipantsUpdate,
    "group_settings_update": GroupSettingsUpdate,
    "group_status_update": GroupStatusUpdate,
}
"""Every field this version types; any other field is published as `unknown_field`."""


def model_for(field: str, value: Any) -> type[FieldValue] | None:
    """The model that parses this field's value, or None for a field we do not know.

    Quirk: Meta's own example of a template *quality* update is labelled
    `message_template_status_update`; a value with `new_quality_score` and no `event` is
    parsed as the quality update it is.
    """
    if (
        field == "message_template_status_update"
        and isinstance(value, dict)
        and "event" not in value
        and "new_quality_score" in value
    ):
        return MessageTemplateQualityUpdate
    return FIELD_MODELS.get(field)


FieldEventData = Annotated[
    AccountUpdate
    | AccountReviewUpdate
    | AccountAlerts
    | BusinessCapabilityUpdate
    | PhoneNumberQualityUpdate
    | PhoneNumberNameUpdate
    | Security
    | PartnerSolutions
    | PaymentConfigurationUpdate
    | MessageTemplateStatusUpdate
    | MessageTemplateQualityUpdate
    | MessageTemplateComponentsUpdate
    | TemplateCategoryUpdate
    | UserPreferences
    | Calls
    | Flows
    | AutomaticEvents
    | SmbMessageEchoes
    | SmbAppStateSync
    | History
    | GroupLifecycleUpdate
    | GroupParticipantsUpdate
    | GroupSettingsUpdate
    | GroupStatusUpdate,
    Field(discriminator="kind"),
]
"""The `data` of a field event: the field's typed value, tagged by `kind`."""
