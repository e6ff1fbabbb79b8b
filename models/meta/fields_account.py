"""Account-level fields: account, review, alerts, capabilities, number, security, partners."""

from __future__ import annotations

from typing import ClassVar, Literal, TypeAlias

from models.meta.common import FieldValue, MetaId, MetaModel, MetaTime, OptionalId


class WabaInfo(MetaModel):
    """`account_update.waba_info`: which account and partner an event concerns."""

    waba_id: OptionalId = None
    owner_business_id: OptionalId = None
    partner_app_id: OptionalId = None
    solution_id: OptionalId = None
    solution_partner_business_ids: tuple[MetaId, ...] = ()
    ad_account_id: OptionalId = None
    ad_account_linked: OptionalId = None


class BanInfo(MetaModel):
    """`account_update.ban_info`."""

    waba_ban_state: str | None = None
    waba_ban_date: str | None = None


class ViolationInfo(MetaModel):
    """`account_update.violation_info`."""

    violation_type: str | None = None


class CertificationInfo(MetaModel):
    """`account_update.partner_client_certification_info`."""

    client_business_id: OptionalId = None
    status: str | None = None
    rejection_reasons: tuple[str, ...] = ()


class CountryException(MetaModel):
    """One country excepted from international authentication pricing."""

    country_code: str
    start_time: MetaTime | None = None


class AuthIntlEligibility(MetaModel):
    """`account_update.auth_international_rate_eligibility`."""

    start_time: MetaTime | None = None
    exception_countries: tuple[CountryException, ...] = ()


class VolumeTierInfo(MetaModel):
    """`account_update.volume_tier_info` (volume-based pricing tiers)."""

    tier_update_time: MetaTime | None = None
    pricing_category: str | None = None
    tier: str | None = None
    effective_month: str | None = None
    region: str | None = None


class AccountUpdate(FieldValue):
    """`account_update`: every event kind (violations, bans, partners, pricing, ...)."""

    kind: Literal["account_update"] = "account_update"
    category: ClassVar[str] = "account"
    event: str
    waba_info: WabaInfo | None = None
    ban_info: BanInfo | None = None
    violation_info: ViolationInfo | None = None
    partner_client_certification_info: CertificationInfo | None = None
    auth_international_rate_eligibility: AuthIntlEligibility | None = None
    volume_tier_info: VolumeTierInfo | None = None
    country: str | None = None


class AccountReviewUpdate(FieldValue):
    """`account_review_update`: the account review decision."""

    kind: Literal["account_review_update"] = "account_review_update"
    category: ClassVar[str] = "account"
    decision: str


class AlertInfo(MetaModel):
    """`account_alerts.alert_info`."""

    alert_severity: str | None = None
    alert_status: str | None = None
    alert_type: str | None = None
    alert_description: str | None = None


class AccountAlerts(FieldValue):
    """`account_alerts`: an alert about the business, account or number."""

    kind: Literal["account_alerts"] = "account_alerts"
    category: ClassVar[str] = "account"
    entity_type: str | None = None
    entity_id: OptionalId = None
    alert_info: AlertInfo | None = None


class BusinessCapabilityUpdate(FieldValue):
    """`business_capability_update`: new messaging limits."""

    kind: Literal["business_capability_update"] = "business_capability_update"
    category: ClassVar[str] = "account"
    max_daily_conversations_per_business: int | None = None
    max_daily_conversation_per_phone: int | None = None
    max_phone_numbers_per_waba: int | None = None
    max_phone_numbers_per_business: int | None = None


class PhoneNumberQualityUpdate(FieldValue):
    """`phone_number_quality_update`: quality rating or throughput tier changed."""

    kind: Literal["phone_number_quality_update"] = "phone_number_quality_update"
    category: ClassVar[str] = "account"
    display_phone_number: str | None = None
    event: str
    current_limit: str | None = None
    old_limit: str | None = None
    max_daily_conversation_per_phone: int | None = None


class PhoneNumberNameUpdate(FieldValue):
    """`phone_number_name_update`: the display-name review decision."""

    kind: Literal["phone_number_name_update"] = "phone_number_name_update"
    category: ClassVar[str] = "account"
    display_phone_number: str | None = None
    decision: str
    requested_verified_name: str | None = None
    rejection_reason: str | None = None


class Security(FieldValue):
    """`security`: two-step verification PIN changes and reset requests."""

    kind: Literal["security"] = "security"
    category: ClassVar[str] = "account"
    display_phone_number: str | None = None
    event: str
    requester: OptionalId = None


class PartnerSolutions(FieldValue):
    """`partner_solutions`: a multi-partner solution changed state."""

    kind: Literal["partner_solutions"] = "partner_solutions"
    category: ClassVar[str] = "account"
    event: str
    solution_id: OptionalId = None
    solution_status: str | None = None


class PaymentConfigurationUpdate(FieldValue):
    """`payment_configuration_update`: a payment gateway configuration changed."""

    kind: Literal["payment_configuration_update"] = "payment_configuration_update"
    category: ClassVar[str] = "account"
    configuration_name: str
    provider_name: str | None = None
    provider_mid: str | None = None
    status: str | None = None
    created_timestamp: MetaTime | None = None
    updated_timestamp: MetaTime | None = None


AccountField: TypeAlias = (
    AccountUpdate
    | AccountReviewUpdate
    | AccountAlerts
    | BusinessCapabilityUpdate
    | PhoneNumberQualityUpdate
    | PhoneNumberNameUpdate
    | Security
    | PartnerSolutions
    | PaymentConfigurationUpdate
)
"""The account fields this version types (a new account field's model goes here)."""

UNTYPED_ACCOUNT_FIELDS: dict[str, str] = {
    "account_settings_update": "account",
    "business_status_update": "account",
}
"""Account fields Meta sends that are not typed yet -> their category; their events carry
`unknown_field` data (typing one means a model above, and dropping it here)."""
