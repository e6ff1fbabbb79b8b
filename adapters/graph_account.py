"""A tenant's WhatsApp business account as the Graph API describes it (issue 12, point 6).

Plain frozen dataclasses over the fields the client asks for (`?fields=`, since Meta only
answers a few by default), with Meta's own names and values kept as strings: Meta adds
enum values over time (quality ratings, tiers, review states) and a new one must not fail
the parse. Standard library only; models/account.py's states are what the service keeps, filled
from these (the field names line up).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PHONE_NUMBER_FIELDS = (
    "id",
    "display_phone_number",
    "verified_name",
    "name_status",
    "code_verification_status",
    "quality_rating",
    "platform_type",
    "throughput",
    "status",
    "messaging_limit_tier",
    "whatsapp_business_manager_messaging_limit",
)
WABA_FIELDS = (
    "id",
    "name",
    "currency",
    "timezone_id",
    "message_template_namespace",
    "account_review_status",
    "business_verification_status",
    "country",
    "ownership_type",
)

TEMPLATE_FIELDS = (
    "id",
    "name",
    "language",
    "status",
    "category",
    "quality_score",
    "rejected_reason",
)


def _str(doc: Mapping[str, object], key: str) -> str | None:
    value = doc.get(key)
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class PhoneNumberInfo:
    """`GET /{phone-number-id}`: the business number's name, quality and limits."""

    id: str
    display_phone_number: str | None
    verified_name: str | None
    name_status: str | None  # APPROVED, PENDING_REVIEW, DECLINED, ...
    code_verification_status: str | None  # VERIFIED, NOT_VERIFIED, EXPIRED
    quality_rating: str | None  # GREEN, YELLOW, RED, UNKNOWN
    platform_type: str | None  # CLOUD_API, ON_PREMISE, NOT_APPLICABLE
    throughput_level: str | None  # STANDARD, HIGH, NOT_APPLICABLE
    status: str | None  # CONNECTED, FLAGGED, RESTRICTED, ...
    messaging_limit: str | None  # the portfolio's limit (TIER_2K, ...), else the number's

    @classmethod
    def from_graph(cls, doc: Mapping[str, object]) -> PhoneNumberInfo:
        """From the JSON Meta answered."""
        throughput = doc.get("throughput")
        level = throughput.get("level") if isinstance(throughput, dict) else None
        limit = _str(doc, "whatsapp_business_manager_messaging_limit") or _str(
            doc, "messaging_limit_tier"
        )
        return cls(
            id=str(doc.get("id", "")),
            display_phone_number=_str(doc, "display_phone_number"),
            verified_name=_str(doc, "verified_name"),
            name_status=_str(doc, "name_status"),
            code_verification_status=_str(doc, "code_verification_status"),
            quality_rating=_str(doc, "quality_rating"),
            platform_type=_str(doc, "platform_type"),
            throughput_level=None if level is None else str(level),
            status=_str(doc, "status"),
            messaging_limit=limit,
        )


@dataclass(frozen=True, slots=True)
class WabaInfo:
    """`GET /{waba-id}`: the WhatsApp Business Account's identity and review state."""

    id: str
    name: str | None
    currency: str | None
    timezone_id: str | None
    message_template_namespace: str | None
    account_review_status: str | None  # PENDING, APPROVED, REJECTED
    business_verification_status: str | None  # verified, unverified, pending, ...
    country: str | None
    ownership_type: str | None

    @classmethod
    def from_graph(cls, doc: Mapping[str, object]) -> WabaInfo:
        """From the JSON Meta answered."""
        return cls(
            id=str(doc.get("id", "")),
            name=_str(doc, "name"),
            currency=_str(doc, "currency"),
            timezone_id=_str(doc, "timezone_id"),
            message_template_namespace=_str(doc, "message_template_namespace"),
            account_review_status=_str(doc, "account_review_status"),
            business_verification_status=_str(doc, "business_verification_status"),
            country=_str(doc, "country"),
            ownership_type=_str(doc, "ownership_type"),
        )


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """One message template of a WABA (`GET /{waba-id}/message_templates`)."""

    id: str
    name: str
    language: str | None
    status: str | None  # APPROVED, PENDING, REJECTED, PAUSED, DISABLED, ...
    category: str | None  # UTILITY, MARKETING, AUTHENTICATION
    quality_score: str | None  # GREEN, YELLOW, RED, UNKNOWN (when Meta sends it)
    rejected_reason: str | None  # why Meta rejected it (NONE when it did not)

    @classmethod
    def from_graph(cls, doc: Mapping[str, object]) -> TemplateInfo:
        """From one entry of the listing's `data`."""
        quality = doc.get("quality_score")
        score = quality.get("score") if isinstance(quality, dict) else quality
        return cls(
            id=str(doc.get("id", "")),
            name=str(doc.get("name", "")),
            language=_str(doc, "language"),
            status=_str(doc, "status"),
            category=_str(doc, "category"),
            quality_score=None if score is None else str(score),
            rejected_reason=_str(doc, "rejected_reason"),
        )
