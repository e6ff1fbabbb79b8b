"""Tenant configuration and the directory that maps Meta ids to tenants."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class Tenant(BaseModel):
    """One tenant: its Meta app secrets (several during rotation) and the numbers it owns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    app_secrets: tuple[SecretStr, ...] = Field(min_length=1)
    verify_token: SecretStr | None = None
    access_token: SecretStr | None = None
    waba_ids: frozenset[str] = frozenset()
    phone_number_ids: frozenset[str] = frozenset()
    default: bool = False


class TenantsFile(BaseModel):
    """The shape of `WA_TENANTS_FILE` (JSON)."""

    model_config = ConfigDict(extra="forbid")

    tenants: list[Tenant]


class TenantDirectory:
    """Resolves which tenant owns a phone_number_id or WABA id.

    A tenant marked `default` owns every id no other tenant claims, so a single-tenant
    deployment needs no tenants file.
    """

    def __init__(self, tenants: Iterable[Tenant]) -> None:
        self._tenants: dict[str, Tenant] = {}
        self._owner: dict[str, str] = {}
        self._default: Tenant | None = None
        for tenant in tenants:
            if tenant.id in self._tenants:
                raise ValueError(f"tenant {tenant.id!r} is configured twice")
            self._tenants[tenant.id] = tenant
            if tenant.default:
                if self._default is not None:
                    raise ValueError("only one tenant can be the default")
                self._default = tenant
            for meta_id in tenant.waba_ids | tenant.phone_number_ids:
                other = self._owner.setdefault(meta_id, tenant.id)
                if other != tenant.id:
                    raise ValueError(f"id {meta_id} is claimed by {other!r} and {tenant.id!r}")

    def __len__(self) -> int:
        return len(self._tenants)

    @property
    def tenants(self) -> tuple[Tenant, ...]:
        """All tenants, in configuration order."""
        return tuple(self._tenants.values())

    @property
    def default(self) -> Tenant | None:
        """The tenant that owns unclaimed ids, if any."""
        return self._default

    def get(self, tenant_id: str) -> Tenant | None:
        """The tenant with this id, or None."""
        return self._tenants.get(tenant_id)

    def resolve(self, phone_number_id: str | None, waba_id: str | None) -> Tenant | None:
        """The tenant that owns the number, else the WABA, else the default tenant."""
        return self.claim(phone_number_id, waba_id)[0]

    def claim(self, phone_number_id: str | None, waba_id: str | None) -> tuple[Tenant | None, bool]:
        """As `resolve`, and whether the tenant is only the default's fallback (True) or
        claims the number or WABA explicitly (False; also when nobody owns them)."""
        for meta_id in (phone_number_id, waba_id):
            if meta_id is not None and meta_id in self._owner:
                return self._tenants[self._owner[meta_id]], False
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
        known = {s.get_secret_value() for t in self.tenants for s in t.app_secrets}
        for tenant in self.tenants:
            for other in (tenant.verify_token, tenant.access_token):
                if other is not None:
                    known.add(other.get_secret_value())
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
