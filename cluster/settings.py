"""Settings from the environment (prefix `WA_`), built once at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import orjson
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.tenant import Tenant, TenantsFile

DEV_APP_SECRET = "dev-app-secret"  # noqa: S105 -- documented development default, embedded profile only
DEV_VERIFY_TOKEN = "dev-verify-token"  # noqa: S105 -- same


class SettingsError(ValueError):
    """The configuration cannot be used; the message says which variable to fix."""


class Settings(BaseSettings):
    """Every knob of the service. See the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="WA_", extra="ignore", frozen=True)

    profile: Literal["embedded", "production"] = "embedded"
    host: str = "127.0.0.1"
    port: int = 8000
    tenant_id: str = "default"
    app_secret: SecretStr | None = None
    app_secret_previous: SecretStr | None = None
    verify_token: SecretStr | None = None
    access_token: SecretStr | None = None
    tenants_file: Path | None = None
    redis_url: str | None = None
    redis_prefix: str = "wa:"
    rabbitmq_url: str | None = None
    rabbitmq_exchange: str = "whatsapp.events"
    data_dir: Path = Path("var")
    shards: int = 4
    ingress_replicas: int = 1
    max_body_bytes: int = 4 * 1024 * 1024
    append_linger_ms: float = 1.0
    shard_batch_size: int = 256
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    log_level: str = "INFO"

    def tenants(self) -> list[Tenant]:
        """The default tenant from WA_APP_SECRET/... plus those of WA_TENANTS_FILE.

        Fails closed: with no tenant at all, the production profile refuses to start; the
        embedded profile uses the documented development secret so `make run` just works.
        """
        tenants: list[Tenant] = []
        if self.app_secret is not None:
            secrets = [self.app_secret]
            if self.app_secret_previous is not None:
                secrets.append(self.app_secret_previous)
            tenants.append(
                Tenant(
                    id=self.tenant_id,
                    app_secrets=tuple(secrets),
                    verify_token=self.verify_token,
                    access_token=self.access_token,
                    default=True,
                )
            )
        if self.tenants_file is not None:
            try:
                parsed = TenantsFile.model_validate(orjson.loads(self.tenants_file.read_bytes()))
            except (OSError, ValueError) as exc:
                raise SettingsError(f"WA_TENANTS_FILE {self.tenants_file}: {exc}") from exc
            tenants.extend(parsed.tenants)
        if not tenants:
            if self.profile == "production":
                raise SettingsError("production needs WA_APP_SECRET or WA_TENANTS_FILE")
            tenants.append(
                Tenant(
                    id=self.tenant_id,
                    app_secrets=(SecretStr(DEV_APP_SECRET),),
                    verify_token=SecretStr(DEV_VERIFY_TOKEN),
                    default=True,
                )
            )
        return tenants

    def check(self) -> None:
        """Fail closed on settings that cannot work together."""
        if self.shards < 1:
            raise SettingsError("WA_SHARDS must be >= 1")
        if self.profile == "production" and not (self.redis_url and self.rabbitmq_url):
            raise SettingsError("production needs WA_REDIS_URL and WA_RABBITMQ_URL")
        self.tenants()
