"""Which published events change a tenant's account snapshot, and how: one handler per
webhook field (the `HANDLERS` table), each a pure function of the normalized event.

The event is the one the service publishes (tests/golden/field_*.json): its `data` is the
field's typed value and `business.waba_id` the WABA of the change's entry. Meta's
phone-number webhooks name the number by `display_phone_number` only; the snapshot matches
it by digits (models/account_change.py). Any other event changes nothing (None).
"""

from __future__ import annotations

from collections.abc import Callable

from models.account_change import AccountChange, ChangeValue
from models.event import NormalizedEvent
from models.meta.fields_account import (
    AccountReviewUpdate,
    AccountUpdate,
    PhoneNumberNameUpdate,
    PhoneNumberQualityUpdate,
)
from models.meta.fields_template import (
    MessageTemplateQualityUpdate,
    MessageTemplateStatusUpdate,
    TemplateCategoryUpdate,
)

# phone_number_name_update decisions -> the Graph API's `name_status` for the same state.
_NAME_DECISIONS = {"REJECTED": "DECLINED", "DEFERRED": "PENDING_REVIEW"}


def _given(**values: ChangeValue) -> dict[str, ChangeValue]:
    """The values Meta sent (a None means "not said", never "cleared")."""
    return {k: v for k, v in values.items() if v is not None}


def _change(event: NormalizedEvent, target: str, **fields: object) -> AccountChange:
    return AccountChange.model_validate(
        {
            "tenant_id": event.tenant_id,
            "target": target,
            "at": event.received_at,
            "waba_id": event.business.waba_id,
            "event_type": event.type,
            "event_id": event.event_id,
            **fields,
        }
    )


def _template_status(event: NormalizedEvent, data: MessageTemplateStatusUpdate) -> AccountChange:
    reason = data.reason or (data.other_info.description if data.other_info else None)
    values = _given(
        name=data.message_template_name,
        language=data.message_template_language,
        category=data.message_template_category,
    )
    # The reason belongs to this status: an APPROVED after a REJECTED clears it.
    values |= {"status": data.event, "reason": None if reason == "NONE" else reason}
    return _change(event, "template", object_id=data.message_template_id, values=values)


def _template_quality(event: NormalizedEvent, data: MessageTemplateQualityUpdate) -> AccountChange:
    values = _given(
        name=data.message_template_name,
        language=data.message_template_language,
        quality_score=data.new_quality_score,
    )
    return _change(event, "template", object_id=data.message_template_id, values=values)


def _template_category(event: NormalizedEvent, data: TemplateCategoryUpdate) -> AccountChange:
    values = _given(
        name=data.message_template_name,
        language=data.message_template_language,
        category=data.new_category,
    )
    return _change(event, "template", object_id=data.message_template_id, values=values)


def _phone_quality(event: NormalizedEvent, data: PhoneNumberQualityUpdate) -> AccountChange:
    values: dict[str, ChangeValue] = {"quality_event": data.event}
    if data.event == "FLAGGED":
        values["flagged"] = True
    elif data.event == "UNFLAGGED":
        values["flagged"] = False
    if data.current_limit:
        values["messaging_limit"] = data.current_limit
    return _change(
        event,
        "phone_number",
        object_id=event.business.phone_number_id,
        display_phone_number=data.display_phone_number,
        values=values,
    )


def _phone_name(event: NormalizedEvent, data: PhoneNumberNameUpdate) -> AccountChange:
    status = _NAME_DECISIONS.get(data.decision, data.decision)
    values: dict[str, ChangeValue] = {
        "name_status": status,
        "requested_verified_name": data.requested_verified_name,
        "name_rejection_reason": data.rejection_reason,
    }
    if status == "APPROVED" and data.requested_verified_name:
        values["verified_name"] = data.requested_verified_name
    return _change(
        event,
        "phone_number",
        object_id=event.business.phone_number_id,
        display_phone_number=data.display_phone_number,
        values=values,
    )


def _account_update(event: NormalizedEvent, data: AccountUpdate) -> AccountChange | None:
    waba_id = event.business.waba_id or (data.waba_info.waba_id if data.waba_info else None)
    values: dict[str, ChangeValue] = {"last_account_event": data.event}
    if data.event == "DISABLED_UPDATE" and data.ban_info is not None:
        state = data.ban_info.waba_ban_state
        values |= {"ban_state": state, "ban_date": data.ban_info.waba_ban_date}
        if state == "REINSTATE":
            values["restricted"] = False
    elif data.event == "ACCOUNT_VIOLATION" and data.violation_info is not None:
        values["violation_type"] = data.violation_info.violation_type
    elif data.event == "ACCOUNT_RESTRICTION":
        values["restricted"] = True
    elif data.event == "ACCOUNT_DELETED":
        values["deleted"] = True
    if waba_id is None:
        return None
    return _change(event, "waba", waba_id=waba_id, values=values)


def _account_review(event: NormalizedEvent, data: AccountReviewUpdate) -> AccountChange:
    return _change(event, "waba", values={"account_review_status": data.decision})


HANDLERS: dict[type, Callable[..., AccountChange | None]] = {
    MessageTemplateStatusUpdate: _template_status,
    MessageTemplateQualityUpdate: _template_quality,
    TemplateCategoryUpdate: _template_category,
    PhoneNumberQualityUpdate: _phone_quality,
    PhoneNumberNameUpdate: _phone_name,
    AccountUpdate: _account_update,
    AccountReviewUpdate: _account_review,
}
"""The field models that change a snapshot -> their handler."""


def change_of(event: NormalizedEvent) -> AccountChange | None:
    """The change a published event makes to its tenant's account snapshot, if any.

    Replayed events are applied too: a change older than the record's last fetch is
    ignored when applied, and a newer one is still news.
    """
    handler = HANDLERS.get(type(event.data))
    return handler(event, event.data) if handler is not None else None
