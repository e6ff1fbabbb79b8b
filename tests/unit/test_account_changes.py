"""Webhook events (the published goldens, tests/golden/field_*.json) turned into account
changes and applied to a snapshot: what each field changes, what counts as restricted or
unverified, and what changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors.account_changes import HANDLERS, change_of
from models.account import AccountSnapshot, PhoneNumberState, TemplateState, WabaState
from models.account_change import AccountChange, apply_change
from models.event import NormalizedEvent
from models.meta.fields import FIELD_MODELS
from models.meta.fields_account import BanInfo

GOLDEN = Path(__file__).parents[1] / "golden"
WABA = "310000000000001"  # the goldens' entry id
FETCHED = datetime(2025, 12, 31, tzinfo=UTC)  # before the goldens' received_at


def golden(name: str, **data: Any) -> NormalizedEvent:
    """The golden's (first) event, with `data` fields replaced."""
    event = NormalizedEvent.model_validate(json.loads((GOLDEN / f"{name}.json").read_text())[0])
    return event.model_copy(update={"data": event.data.model_copy(update=data)}) if data else event


def refreshed() -> AccountSnapshot:
    """acme as a refresh left it: one healthy number, an approved WABA, one template."""
    template = TemplateState(
        waba_id=WABA,
        template_id="1200000000000001",
        name="winter_sale",
        language="en_GB",
        status="APPROVED",
        category="UTILITY",
        quality_score="GREEN",
        fetched_at=FETCHED,
    )
    return AccountSnapshot(
        tenant_id="acme",
        phone_numbers={
            "106": PhoneNumberState(
                phone_number_id="106",
                display_phone_number="+1 555-010-0001",
                verified_name="Acme",
                name_status="APPROVED",
                code_verification_status="VERIFIED",
                quality_rating="GREEN",
                messaging_limit="TIER_10K",
                status="CONNECTED",
                fetched_at=FETCHED,
            )
        },
        wabas={
            WABA: WabaState(
                waba_id=WABA,
                account_review_status="APPROVED",
                business_verification_status="verified",
                fetched_at=FETCHED,
            )
        },
        templates={template.key: template},
        fetched_at=FETCHED,
    )


def applied(event: NormalizedEvent, snapshot: AccountSnapshot | None = None) -> AccountSnapshot:
    change = change_of(event)
    assert change is not None
    return apply_change(snapshot or refreshed(), change)


def test_a_refreshed_account_is_neither_restricted_nor_unverified() -> None:
    """The baseline the other tests change."""
    flags = refreshed().flags()
    assert flags.restricted == ()
    assert flags.unverified == ()


def test_a_template_rejected_by_webhook() -> None:
    """message_template_status_update REJECTED: status, reason and category set, marked as
    the webhook's, updated at the webhook's receipt."""
    event = golden("field_message_template_status_update")
    template = applied(event).templates[f"{WABA}:1200000000000001"]
    assert (template.status, template.reason, template.category) == (
        "REJECTED",
        "INCORRECT_CATEGORY",
        "MARKETING",
    )
    assert template.sources["status"] == "webhook"
    assert template.updated_at == event.received_at


def test_an_approval_after_a_rejection_clears_the_reason() -> None:
    """The reason belongs to the status it came with."""
    rejected = applied(golden("field_message_template_status_update"))
    approved = golden(
        "field_message_template_status_update", event="APPROVED", reason="NONE"
    ).model_copy(update={"received_at": datetime(2026, 1, 2, tzinfo=UTC)})
    template = applied(approved, rejected).templates[f"{WABA}:1200000000000001"]
    assert (template.status, template.reason) == ("APPROVED", None)


def test_template_quality_and_category_updates() -> None:
    """Quality RED and a category change land on the same template."""
    snap = applied(golden("field_message_template_quality_update"))
    snap = applied(golden("field_template_category_update"), snap)
    template = snap.templates[f"{WABA}:1200000000000001"]
    assert (template.quality_score, template.category) == ("RED", "MARKETING")


def test_a_template_never_seen_is_added_from_the_webhook() -> None:
    """A template created after the last refresh appears with what the webhook says."""
    event = golden("field_message_template_status_update", message_template_id="999")
    template = applied(event).templates[f"{WABA}:999"]
    assert (template.name, template.status, template.fetched_at) == (
        "winter_sale",
        "REJECTED",
        None,
    )


def test_a_quality_downgrade_matches_the_number_by_its_digits() -> None:
    """phone_number_quality_update names "15550100001"; the Graph API wrote
    "+1 555-010-0001": the same number, its messaging limit lowered."""
    number = applied(golden("field_phone_number_quality_update")).phone_numbers["106"]
    assert (number.messaging_limit, number.quality_event) == ("TIER_1K", "DOWNGRADE")
    assert number.sources == {"messaging_limit": "webhook", "quality_event": "webhook"}


def test_a_flagged_number_is_restricted_until_unflagged() -> None:
    """FLAGGED restricts; UNFLAGGED (later) lifts it."""
    flagged = applied(golden("field_phone_number_quality_update", event="FLAGGED"))
    assert flagged.flags().restricted == ("phone_number 106: quality flagged",)
    later = golden("field_phone_number_quality_update", event="UNFLAGGED").model_copy(
        update={"received_at": datetime(2026, 1, 2, tzinfo=UTC)}
    )
    assert applied(later, flagged).flags().restricted == ()


def test_a_rejected_name_leaves_the_number_unverified() -> None:
    """phone_number_name_update REJECTED: name status DECLINED (the Graph API's word),
    the requested name and the reason kept, the verified name unchanged."""
    number = applied(golden("field_phone_number_name_update")).phone_numbers["106"]
    assert (number.name_status, number.requested_verified_name, number.verified_name) == (
        "DECLINED",
        "Test Shop",
        "Acme",
    )
    assert number.name_rejection_reason == "NAME_FORMAT_UNACCEPTABLE"
    snap = applied(golden("field_phone_number_name_update"))
    assert snap.flags().unverified == ("phone_number 106: name DECLINED",)


def test_an_approved_name_becomes_the_verified_name() -> None:
    """APPROVED: the requested name is the number's verified name now."""
    event = golden("field_phone_number_name_update", decision="APPROVED", rejection_reason=None)
    number = applied(event).phone_numbers["106"]
    assert (number.name_status, number.verified_name) == ("APPROVED", "Test Shop")


def test_a_number_nobody_refreshed_is_not_invented() -> None:
    """A phone webhook whose number is not in the snapshot changes nothing (no id to key
    it by: the next refresh reads it)."""
    event = golden("field_phone_number_quality_update", display_phone_number="19990000000")
    assert applied(event) == refreshed()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("field_account_update_disabled", f"waba {WABA}: ban DISABLE"),
        ("field_account_update_violation", f"waba {WABA}: violation SCAM"),
    ],
)
def test_account_updates_that_restrict(name: str, reason: str) -> None:
    """A ban and a violation restrict the WABA."""
    snap = applied(golden(name))
    assert snap.flags().restricted == (reason,)
    assert snap.wabas[WABA].last_account_event == golden(name).data.event  # type: ignore[union-attr]


def test_a_reinstatement_lifts_the_ban() -> None:
    """DISABLED_UPDATE with REINSTATE after a DISABLE: not restricted any more."""
    banned = applied(golden("field_account_update_disabled"))
    reinstated = golden(
        "field_account_update_disabled", ban_info=BanInfo(waba_ban_state="REINSTATE")
    ).model_copy(update={"received_at": datetime(2026, 1, 2, tzinfo=UTC)})
    assert applied(reinstated, banned).flags().restricted == ()


def test_a_restriction_event_restricts_and_a_rejected_review_unverifies() -> None:
    """ACCOUNT_RESTRICTION (no typed details) and account_review_update REJECTED."""
    restriction = golden(
        "field_account_update_disabled", event="ACCOUNT_RESTRICTION", ban_info=None
    )
    snap = applied(golden("field_account_review_update"), applied(restriction))
    flags = snap.flags()
    assert flags.restricted == (f"waba {WABA}: restricted",)
    assert flags.unverified == (f"waba {WABA}: review REJECTED",)


def test_a_pricing_update_records_the_event_only() -> None:
    """An account_update that is no restriction changes no flag."""
    snap = applied(golden("field_account_update_pricing_tier"))
    assert snap.wabas[WABA].last_account_event == "VOLUME_BASED_PRICING_TIER_UPDATE"
    assert snap.flags().restricted == ()


def test_a_webhook_older_than_the_last_refresh_is_ignored() -> None:
    """A replayed REJECTED from before the refresh does not undo what Graph said since."""
    event = golden("field_message_template_status_update")
    later_fetch = event.received_at + timedelta(hours=1)
    snap = refreshed()
    template = snap.templates[f"{WABA}:1200000000000001"].model_copy(
        update={"fetched_at": later_fetch}
    )
    snap = snap.model_copy(update={"templates": {template.key: template}})
    assert applied(event, snap) == snap


@pytest.mark.parametrize(
    "name", ["message_image", "field_security", "field_account_alerts", "batch_mixed"]
)
def test_other_events_change_nothing(name: str) -> None:
    """Messages and fields that say nothing about the account's state: no change."""
    assert change_of(golden(name)) is None


def test_every_handled_model_is_a_published_field() -> None:
    """The table's keys are field models of this schema (a renamed model fails here)."""
    assert set(HANDLERS) <= set(FIELD_MODELS.values())


def test_a_change_without_a_waba_changes_nothing() -> None:
    """A template change whose event names no WABA cannot be keyed."""
    change = AccountChange(
        tenant_id="acme", target="template", at=FETCHED, object_id="1", values={"status": "X"}
    )
    assert apply_change(refreshed(), change) == refreshed()
