"""Tenant configuration, its rules, and the directory that maps Meta ids to tenants.

A tenant is the tenants-file entry (`id`, `app_secrets`, `verify_token`, `access_token`,
`waba_ids`, `phone_number_ids`, `default`) plus `disabled` and `rules` (docs/tenants.md).
The same shape is what `POST /admin/tenants` takes and what the tenant registry stores
(adapters/*_tenants.py); `PATCH` takes any part of it. Unknown members are refused.

`TenantDirectory` is the live view one process keeps: `replace` swaps it whole (a new
registry version, cluster/tenant_wiring.py), so every holder of the directory sees the
change at once, and `version` tells caches built from it (the ingress's candidate
secrets) when to rebuild.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from models.meta.fields import FIELD_CATEGORIES

TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"

EVENT_CATEGORIES: frozenset[str] = frozenset(
    {"message", "status", "error", "conversation", "unsupported", "other"}
    | set(FIELD_CATEGORIES.values())
)
"""Every category an event can be published under by the tenant's own items (`replay`
and `dead` are the service's quarantines: never filtered, docs/tenants.md)."""

MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")

THROUGHPUT_RATES: dict[str, float] = {"STANDARD": 80.0, "HIGH": 1000.0, "COEXISTENCE": 20.0}
"""Meta's Cloud API throughput per business number, messages per second: 80 by default,
1,000 for an upgraded number (`throughput.level` HIGH), 20 for a number shared with the
WhatsApp Business app (coexistence). A tenant's default publish rate is the sum over its
numbers (cluster/tenant_limits.py)."""

DEFAULT_PUBLISH_RATE_PER_S = THROUGHPUT_RATES["STANDARD"]


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ForwardRule(_Rule):
    """Which events are published; the others are archived (their raw delivery is) and
    counted, never published. Omitted (None) = every category / every type."""

    categories: frozenset[str] | None = None
    types: frozenset[str] | None = None

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, value: frozenset[str] | None) -> frozenset[str] | None:
        if value is not None:
            unknown = sorted(value - EVENT_CATEGORIES)
            if unknown:
                raise ValueError(f"unknown categories {unknown}; known: {sorted(EVENT_CATEGORIES)}")
        return value

    @field_validator("types")
    @classmethod
    def _type_names(cls, value: frozenset[str] | None) -> frozenset[str] | None:
        for name in value or ():
            if not (0 < len(name) <= 64) or not name.replace("_", "").isalnum():
                raise ValueError(f"type {name[:64]!r} is not an event type name")
        return value

    def forwards(self, category: str, type_: str) -> bool:
        """Whether an event of this category and type is published."""
        if self.categories is not None and category not in self.categories:
            return False
        return self.types is None or type_ in self.types


class PiiRule(_Rule):
    """What the tenant's events carry of its customers: `customer_name` kept or masked,
    phone numbers (wa_id, phone_e164 and the numbers in message bodies' sender fields)
    kept or hashed with the tenant's own key (HMAC-SHA256, `pii_key`)."""

    customer_name: Literal["keep", "mask"] = "keep"
    phone: Literal["keep", "hash"] = "keep"

    @property
    def active(self) -> bool:
        """Whether anything is masked or hashed."""
        return self.customer_name != "keep" or self.phone != "keep"


_NAME = r"^[A-Za-z0-9_.:/-]{1,200}$"


class RoutingRule(_Rule):
    """Where the tenant's events go: another exchange, another RabbitMQ vhost, a prefix
    in front of the routing key (`<prefix>.<tenant>.<category>.<type>`)."""

    exchange: str | None = Field(default=None, pattern=_NAME)
    vhost: str | None = Field(default=None, pattern=_NAME)
    routing_key_prefix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")


class MediaRule(_Rule):
    """The tenant's media policy; None members use the service's settings (WA_MEDIA_*)."""

    download: bool = True
    types: frozenset[Literal["image", "video", "audio", "document", "sticker"]] | None = None
    max_bytes: dict[Literal["image", "video", "audio", "document", "sticker"], int] | None = None
    url_ttl_s: int | None = Field(default=None, ge=60, le=7 * 24 * 3600)
    retention_days: int | None = Field(default=None, ge=1, le=3650)

    @field_validator("max_bytes")
    @classmethod
    def _positive(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        for kind, cap in (value or {}).items():
            if cap < 1:
                raise ValueError(f"max_bytes.{kind} must be >= 1")
        return value


class RateLimitRule(_Rule):
    """Inbound limits of the tenant's webhooks (requests per WA_RATE_LIMIT_WINDOW_S);
    None = the service's WA_RATE_LIMIT_PER_IP / WA_RATE_LIMIT_PER_TENANT."""

    per_ip: int | None = Field(default=None, ge=1)
    per_tenant: int | None = Field(default=None, ge=1)


class WebhookRule(_Rule):
    """The tenant's webhook endpoint: its source policy (None = the service's allowlist
    setting; False turns it off on the tenant's path, True on) with extra networks, and a
    body cap at or below the service's WA_MAX_BODY_BYTES."""

    allowlist: bool | None = None
    extra_cidrs: tuple[str, ...] = ()
    max_body_bytes: int | None = Field(default=None, ge=1024)

    @field_validator("extra_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        for text in value:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError as exc:
                raise ValueError(f"extra_cidrs: {exc}") from exc
        return value


class TenantRules(_Rule):
    """Per-tenant processing rules, each with a documented default (docs/tenants.md)."""

    # Events per second published to the downstream services; None: from the numbers'
    # Meta throughput tiers (THROUGHPUT_RATES).
    publish_rate_per_s: float | None = Field(default=None, gt=0, le=100_000)
    # Graph API calls per second (media look-ups and downloads, account and template
    # calls), further cut by Meta's usage headers and throttling codes.
    graph_rate_per_s: float | None = Field(default=None, gt=0, le=10_000)
    forward: ForwardRule | None = None
    pii: PiiRule = PiiRule()
    routing: RoutingRule | None = None
    reorder_window_ms: float | None = Field(default=None, ge=0, le=60_000)
    media: MediaRule | None = None
    rate_limits: RateLimitRule | None = None
    webhook: WebhookRule | None = None


class AppSecret(BaseModel):
    """One Meta app's secret; `app_id` names the app (None: unnamed). A tenant holds
    several during a rotation, or one or more per app when it has several apps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    app_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    secret: SecretStr = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str | SecretStr):
            return {"secret": value}
        return value

    def get_secret_value(self) -> str:
        """The secret itself (as SecretStr's)."""
        return self.secret.get_secret_value()


class Tenant(BaseModel):
    """One tenant: its Meta app secrets (several during rotation or for several apps), the
    numbers it owns, whether it is disabled, and its rules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=TENANT_ID_PATTERN)
    app_secrets: tuple[AppSecret, ...] = Field(min_length=1, max_length=16)
    verify_token: SecretStr | None = None
    access_token: SecretStr | None = None
    waba_ids: frozenset[str] = frozenset()
    phone_number_ids: frozenset[str] = frozenset()
    default: bool = False
    disabled: bool = False
    rules: TenantRules = TenantRules()
    # The key phone numbers are hashed with (rules.pii.phone = hash): write-only, made by
    # the registry when missing, kept across updates so hashes stay stable.
    pii_key: SecretStr | None = None

    @field_validator("waba_ids", "phone_number_ids")
    @classmethod
    def _meta_ids(cls, value: frozenset[str]) -> frozenset[str]:
        for meta_id in value:
            if not (0 < len(meta_id) <= 64) or not meta_id.isdigit():
                raise ValueError(f"{meta_id[:64]!r} is not a Meta id (digits only)")
        return value

    def secret_values(self) -> list[str]:
        """Every secret this tenant holds (for the logs' redaction)."""
        values = [s.get_secret_value() for s in self.app_secrets]
        for other in (self.verify_token, self.access_token, self.pii_key):
            if other is not None:
                values.append(other.get_secret_value())
        return values

    def hash_phone(self, number: str) -> str:
        """A phone number (wa_id) hashed with the tenant's key: `h:` and 32 hex digits,
        stable for the tenant, useless across tenants."""
        key = self.pii_key.get_secret_value() if self.pii_key is not None else self.id
        digest = hmac.new(key.encode(), number.encode(), hashlib.sha256).hexdigest()
        return "h:" + digest[:32]

    def stored(self) -> bytes:
        """The registry's JSON of this tenant, secrets in clear (stores only)."""
        return orjson.dumps(_revealed(self.model_dump(mode="python")))

    def public(self) -> dict[str, Any]:
        """What the admin API and the CLI show: never a secret, only which are set."""
        data = self.model_dump(mode="json", exclude={"app_secrets", "pii_key"})
        data["app_secrets"] = [{"app_id": s.app_id, "set": True} for s in self.app_secrets]
        for name in ("verify_token", "access_token"):
            data[name] = {"set": getattr(self, name) is not None}
        data["waba_ids"] = sorted(self.waba_ids)
        data["phone_number_ids"] = sorted(self.phone_number_ids)
        return data

    @classmethod
    def from_stored(cls, raw: bytes | str) -> Tenant:
        """The tenant from the registry's JSON."""
        return cls.model_validate(orjson.loads(raw))


def _revealed(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _revealed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_revealed(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted(_revealed(v) for v in value)
    return value


class TenantsFile(BaseModel):
    """The shape of `WA_TENANTS_FILE` (JSON)."""

    model_config = ConfigDict(extra="forbid")

    tenants: list[Tenant]


class TenantConflict(ValueError):
    """Tenants that cannot be configured together (an id twice, a number claimed by two
    tenants, two defaults); the message says which."""


class TenantDirectory:
    """Resolves which tenant owns a phone_number_id or WABA id.

    A tenant marked `default` owns every id no other tenant claims, so a single-tenant
    deployment needs no tenants file. `replace` swaps the whole set (validated first: a
    set that conflicts leaves the directory as it was); `version` counts the swaps.
    """

    def __init__(self, tenants: Iterable[Tenant]) -> None:
        self.version = 0
        self.registry_version: int | None = None  # the registry's, once loaded from it
        self._tenants, self._owner, self._default = _index(tenants)

    def replace(self, tenants: Iterable[Tenant], registry_version: int | None = None) -> None:
        """Swap in a new set of tenants (TenantConflict, nothing changed, if it conflicts)."""
        indexed = _index(tenants)
        self._tenants, self._owner, self._default = indexed
        self.registry_version = registry_version
        self.version += 1

    def __len__(self) -> int:
        return len(self._tenants)

    @property
    def tenants(self) -> tuple[Tenant, ...]:
        """All tenants, in configuration order."""
        return tuple(self._tenants.values())

    @property
    def ids(self) -> frozenset[str]:
        """Every tenant id (the bounded label set of per-tenant metrics)."""
        return frozenset(self._tenants)

    @property
    def default(self) -> Tenant | None:
        """The tenant that owns unclaimed ids, if any."""
        return self._default

    def get(self, tenant_id: str) -> Tenant | None:
        """The tenant with this id, or None."""
        return self._tenants.get(tenant_id)

    def rules(self, tenant_id: str) -> TenantRules:
        """The tenant's rules (the defaults for a tenant no longer configured)."""
        tenant = self._tenants.get(tenant_id)
        return tenant.rules if tenant is not None else _DEFAULT_RULES

    def resolve(self, phone_number_id: str | None, waba_id: str | None) -> Tenant | None:
        """The tenant that owns the number, else the WABA, else the default tenant."""
        return self.claim(phone_number_id, waba_id)[0]

    def claim(self, phone_number_id: str | None, waba_id: str | None) -> tuple[Tenant | None, bool]:
        """As `resolve`, and whether the tenant is only the default's fallback (True) or
        claims the number or WABA explicitly (False; also when nobody owns them)."""
        owner, tenants = self._owner, self._tenants
        for meta_id in (phone_number_id, waba_id):
            if meta_id is not None and meta_id in owner:
                return tenants[owner[meta_id]], False
        return self._default, self._default is not None

    def check_admin_token(self, token: SecretStr | None) -> None:
        """ValueError unless the admin token is 16+ characters and none of Meta's secrets.

        The one rule for the admin token, kept by the settings at start-up and by the app
        it guards: a token equal to an app secret, verify token or access token would let
        whoever holds that Meta credential into the admin API.
        """
        if token is None:
            return
        value = token.get_secret_value()
        known = {v for t in self.tenants for v in t.secret_values()}
        if len(value) < 16 or value in known:
            raise ValueError(
                "the admin token must be 16+ characters and differ from every Meta secret"
            )

    def secrets(self, tenant_id: str | None = None) -> dict[bytes, frozenset[str]]:
        """App secret -> ids of the tenants that hold it (all tenants, or just one)."""
        holders: dict[bytes, set[str]] = {}
        for tenant in self._tenants.values():
            if tenant_id is not None and tenant.id != tenant_id:
                continue
            for secret in tenant.app_secrets:
                holders.setdefault(secret.get_secret_value().encode(), set()).add(tenant.id)
        return {secret: frozenset(ids) for secret, ids in holders.items()}


_DEFAULT_RULES = TenantRules()


def _index(
    tenants: Iterable[Tenant],
) -> tuple[dict[str, Tenant], dict[str, str], Tenant | None]:
    """The tenants by id, each claimed Meta id's owner, and the default; TenantConflict."""
    by_id: dict[str, Tenant] = {}
    owner: dict[str, str] = {}
    default: Tenant | None = None
    for tenant in tenants:
        if tenant.id in by_id:
            raise TenantConflict(f"tenant {tenant.id!r} is configured twice")
        by_id[tenant.id] = tenant
        if tenant.default:
            if default is not None:
                raise TenantConflict(
                    f"only one tenant can be the default ({default.id!r} and {tenant.id!r})"
                )
            default = tenant
        for meta_id in sorted(tenant.waba_ids | tenant.phone_number_ids):
            other = owner.setdefault(meta_id, tenant.id)
            if other != tenant.id:
                raise TenantConflict(f"id {meta_id} is claimed by {other!r} and {tenant.id!r}")
    return by_id, owner, default
