"""A tenant's WhatsApp business account as the service keeps it (issue 12, point 6).

One `AccountSnapshot` per tenant: each business phone number it owns, each WhatsApp
Business Account (WABA), and the WABAs' message templates. Filled from the Graph API by a
refresh (actors/accounts.py) and kept current between refreshes by the webhooks Meta sends
about them (`message_template_status_update`, `message_template_quality_update`,
`template_category_update`, `phone_number_quality_update`, `phone_number_name_update`,
`account_update`, `account_review_update`), each an `AccountChange` (models/account_change.py).

Meta's values are kept as the strings Meta sends (quality ratings, tiers, review states
gain new values over time; a new one must never fail a parse). Every record says when the
Graph API last described it (`fetched_at`), when it last changed (`updated_at`) and, per
field, where its value came from (`sources`: "graph" or "webhook"), so an admin reading a
value that disagrees with Meta's console can tell a cache that is behind from a webhook
that arrived since.

What only webhooks tell (a number flagged, a ban, a violation, a requested name) is kept
across refreshes: the Graph fields the client reads do not describe it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

Source = Literal["graph", "webhook"]

# Name states under which the number sends with its display name.
VERIFIED_NAME_STATES = frozenset({"APPROVED", "AVAILABLE_WITHOUT_REVIEW"})
# Phone-number `status` values under which the number cannot send normally.
RESTRICTED_NUMBER_STATES = frozenset(
    {"BANNED", "RESTRICTED", "RATE_LIMITED", "FLAGGED", "DISCONNECTED", "DELETED"}
)
# account_update ban states that take the account out of service (REINSTATE clears them).
RESTRICTING_BAN_STATES = frozenset({"DISABLE", "SCHEDULE_FOR_DISABLE"})
QUALITY_RATINGS = ("GREEN", "YELLOW", "RED", "UNKNOWN")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PhoneNumberState(_Model):
    """One business phone number: its name and review, quality, limits and status."""

    phone_number_id: str
    waba_id: str | None = None
    display_phone_number: str | None = None
    verified_name: str | None = None
    name_status: str | None = None  # APPROVED, PENDING_REVIEW, DECLINED, ...
    requested_verified_name: str | None = None  # phone_number_name_update
    name_rejection_reason: str | None = None
    code_verification_status: str | None = None  # VERIFIED, NOT_VERIFIED, EXPIRED
    quality_rating: str | None = None  # GREEN, YELLOW, RED, UNKNOWN
    quality_event: str | None = None  # the last phone_number_quality_update event
    flagged: bool = False  # phone_number_quality_update FLAGGED (UNFLAGGED clears it)
    messaging_limit: str | None = None  # TIER_250, TIER_1K, ... TIER_UNLIMITED
    throughput_level: str | None = None  # STANDARD, HIGH, NOT_APPLICABLE
    platform_type: str | None = None
    status: str | None = None  # CONNECTED, FLAGGED, RESTRICTED, BANNED, ...
    sources: dict[str, Source] = {}
    fetched_at: datetime | None = None
    updated_at: datetime | None = None
    fetch_error: str | None = None  # the last refresh's error for this number, if any


class WabaState(_Model):
    """One WhatsApp Business Account: identity, review and verification, bans."""

    waba_id: str
    name: str | None = None
    currency: str | None = None
    timezone_id: str | None = None
    message_template_namespace: str | None = None
    account_review_status: str | None = None  # PENDING, APPROVED, REJECTED
    business_verification_status: str | None = None  # verified, unverified, pending, ...
    country: str | None = None
    ownership_type: str | None = None
    ban_state: str | None = None  # account_update DISABLED_UPDATE: DISABLE, REINSTATE, ...
    ban_date: str | None = None
    violation_type: str | None = None  # account_update ACCOUNT_VIOLATION
    restricted: bool = False  # account_update ACCOUNT_RESTRICTION (until a REINSTATE)
    deleted: bool = False  # account_update ACCOUNT_DELETED
    last_account_event: str | None = None
    sources: dict[str, Source] = {}
    fetched_at: datetime | None = None
    updated_at: datetime | None = None
    fetch_error: str | None = None


class TemplateState(_Model):
    """One message template of a WABA."""

    waba_id: str
    template_id: str
    name: str | None = None
    language: str | None = None
    status: str | None = None  # APPROVED, PENDING, REJECTED, PAUSED, DISABLED, ...
    category: str | None = None  # UTILITY, MARKETING, AUTHENTICATION
    quality_score: str | None = None  # GREEN, YELLOW, RED, UNKNOWN
    reason: str | None = None  # why Meta rejected, paused or disabled it
    sources: dict[str, Source] = {}
    fetched_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def key(self) -> str:
        """The template's key in the snapshot: ids are per WABA."""
        return template_key(self.waba_id, self.template_id)


def template_key(waba_id: str, template_id: str) -> str:
    """`<waba_id>:<template_id>`."""
    return f"{waba_id}:{template_id}"


class AccountFlags(_Model):
    """Why an account needs attention: each entry names the object and the reason."""

    unverified: tuple[str, ...] = ()
    restricted: tuple[str, ...] = ()


class AccountSnapshot(_Model):
    """Everything the service knows about one tenant's business account."""

    tenant_id: str
    phone_numbers: dict[str, PhoneNumberState] = {}
    wabas: dict[str, WabaState] = {}
    templates: dict[str, TemplateState] = {}  # by template_key
    fetched_at: datetime | None = None  # the last refresh that completed (maybe with errors)
    updated_at: datetime | None = None
    refresh_error: str | None = None  # the last refresh's first error; None: it all worked

    def flags(self) -> AccountFlags:
        """Which numbers and accounts count as unverified or restricted, and why."""
        unverified: list[str] = []
        restricted: list[str] = []
        for number in self.phone_numbers.values():
            _number_flags(number, unverified, restricted)
        for waba in self.wabas.values():
            _waba_flags(waba, unverified, restricted)
        return AccountFlags(unverified=tuple(unverified), restricted=tuple(restricted))


def _number_flags(number: PhoneNumberState, unverified: list[str], restricted: list[str]) -> None:
    who = f"phone_number {number.phone_number_id}"
    if number.name_status is not None and number.name_status not in VERIFIED_NAME_STATES:
        unverified.append(f"{who}: name {number.name_status}")
    code = number.code_verification_status
    if code is not None and code != "VERIFIED":
        unverified.append(f"{who}: code {code}")
    if number.status in RESTRICTED_NUMBER_STATES:
        restricted.append(f"{who}: status {number.status}")
    if number.flagged:
        restricted.append(f"{who}: quality flagged")
    if number.quality_rating == "RED":
        restricted.append(f"{who}: quality RED")


def _waba_flags(waba: WabaState, unverified: list[str], restricted: list[str]) -> None:
    who = f"waba {waba.waba_id}"
    verification = waba.business_verification_status
    if verification is not None and verification.lower() != "verified":
        unverified.append(f"{who}: business verification {verification}")
    review = waba.account_review_status
    if review is not None and review != "APPROVED":
        unverified.append(f"{who}: review {review}")
    if waba.ban_state in RESTRICTING_BAN_STATES:
        restricted.append(f"{who}: ban {waba.ban_state}")
    for flag in ("restricted", "deleted"):
        if getattr(waba, flag):
            restricted.append(f"{who}: {flag}")
    if waba.violation_type:
        restricted.append(f"{who}: violation {waba.violation_type}")


def digits(number: str | None) -> str:
    """The digits of a display number ("+1 555-010-0001" and "15550100001" match)."""
    return "".join(c for c in number or "" if c.isdigit())
