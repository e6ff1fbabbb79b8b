"""Which adapter serves each port: the only place that names concrete adapters.

`Wiring` is the narrow, frozen, picklable part of the settings that Ray replicas and actors
receive; each builds its own clients from it at start-up (clients are never pickled).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr

from actors.shard import ShardConfig
from adapters.local_rate_limit import LocalRateLimiter
from adapters.outbox import OutboxPublisher
from adapters.ports import Inbox, Publisher, RateLimiter
from adapters.rabbitmq import RabbitPublisher
from adapters.redis_inbox import RedisInbox
from adapters.redis_rate_limit import RedisRateLimiter
from adapters.sqlite_inbox import SqliteInbox
from cluster.logging import configure_logging
from cluster.settings import Settings
from ingress.app import IngressConfig, IngressDeps
from ingress.client_ip import SourcePolicy, parse_networks
from models.tenant import Tenant, TenantDirectory


class Wiring(BaseModel):
    """What a replica or actor needs to build its adapters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    redis_url: str | None
    redis_prefix: str
    rabbitmq_url: str | None
    rabbitmq_exchange: str
    data_dir: Path
    partitions: int
    tenants: tuple[Tenant, ...]
    max_body_bytes: int
    append_linger_s: float
    shard_batch_size: int
    # No defaults here: Settings is the one place that has them (built by from_settings).
    log_level: str
    dedup_window_s: int
    max_item_age_s: int
    rate_limit_window_s: int
    rate_limit_per_ip: int
    rate_limit_per_tenant: int
    max_json_depth: int
    max_json_array: int
    body_timeout_s: float
    allowed_cidrs: tuple[str, ...] | None  # None: the allowlist is off
    trusted_proxies: tuple[str, ...]
    admin_token: SecretStr | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Wiring:
        """The wiring of these settings (data_dir made absolute for other processes)."""
        settings.check()
        return cls(
            redis_url=settings.redis_url,
            redis_prefix=settings.redis_prefix,
            rabbitmq_url=settings.rabbitmq_url,
            rabbitmq_exchange=settings.rabbitmq_exchange,
            data_dir=settings.data_dir.resolve(),
            partitions=settings.shards,
            tenants=tuple(settings.tenants()),
            max_body_bytes=settings.max_body_bytes,
            append_linger_s=settings.append_linger_ms / 1000,
            shard_batch_size=settings.shard_batch_size,
            log_level=settings.log_level,
            dedup_window_s=settings.dedup_window_s,
            max_item_age_s=settings.max_item_age_s,
            rate_limit_window_s=settings.rate_limit_window_s,
            rate_limit_per_ip=settings.rate_limit_per_ip,
            rate_limit_per_tenant=settings.rate_limit_per_tenant,
            max_json_depth=settings.max_json_depth,
            max_json_array=settings.max_json_array,
            body_timeout_s=settings.body_timeout_s,
            allowed_cidrs=settings.allowed_networks() if settings.allowlist_on() else None,
            trusted_proxies=settings.trusted_networks(),
            admin_token=settings.admin_token,
        )

    def secret_values(self) -> list[str]:
        """Every secret the logs must never show."""
        values = [s.get_secret_value() for t in self.tenants for s in t.app_secrets]
        for tenant in self.tenants:
            for token in (tenant.verify_token, tenant.access_token):
                if token is not None:
                    values.append(token.get_secret_value())
        if self.admin_token is not None:
            values.append(self.admin_token.get_secret_value())
        return values

    def source_policy(self) -> SourcePolicy:
        """Trusted proxies and the allowlist, parsed."""
        allowed = None if self.allowed_cidrs is None else parse_networks(self.allowed_cidrs)
        return SourcePolicy(parse_networks(self.trusted_proxies), allowed)

    @property
    def outbox_path(self) -> Path:
        """Where the embedded publisher writes."""
        return self.data_dir / "outbox.db"


def build_inbox(wiring: Wiring) -> Inbox:
    """Redis Streams when WA_REDIS_URL is set, else the embedded SQLite inbox."""
    if wiring.redis_url:
        return RedisInbox(wiring.redis_url, wiring.redis_prefix, wiring.dedup_window_s)
    return SqliteInbox(wiring.data_dir / "inbox.db", wiring.dedup_window_s)


def build_rate_limiter(wiring: Wiring) -> RateLimiter:
    """Redis counters shared by all replicas when WA_REDIS_URL is set, else in-process."""
    if wiring.redis_url:
        return RedisRateLimiter(wiring.redis_url, wiring.redis_prefix, wiring.rate_limit_window_s)
    return LocalRateLimiter(wiring.rate_limit_window_s)


def build_publisher(wiring: Wiring) -> Publisher:
    """RabbitMQ when WA_RABBITMQ_URL is set, else the embedded outbox."""
    if wiring.rabbitmq_url:
        return RabbitPublisher(wiring.rabbitmq_url, wiring.rabbitmq_exchange)
    return OutboxPublisher(wiring.outbox_path)


def ingress_deps(wiring: Wiring) -> IngressDeps:
    """The ingress's dependencies, built inside its replica (which logs redacted JSON)."""
    configure_logging(wiring.log_level, wiring.secret_values())
    publisher = build_publisher(wiring)
    return IngressDeps(
        config=IngressConfig(
            partitions=wiring.partitions,
            max_body_bytes=wiring.max_body_bytes,
            append_linger_s=wiring.append_linger_s,
            max_json_depth=wiring.max_json_depth,
            max_json_array=wiring.max_json_array,
            body_timeout_s=wiring.body_timeout_s,
            rate_limit_per_ip=wiring.rate_limit_per_ip,
            rate_limit_per_tenant=wiring.rate_limit_per_tenant,
            source_policy=wiring.source_policy(),
            admin_token=wiring.admin_token,
        ),
        directory=TenantDirectory(wiring.tenants),
        inbox=build_inbox(wiring),
        ready_checks={"publisher": publisher.ping},
        closers=[publisher.close],
        rate_limiter=build_rate_limiter(wiring),
    )


def shard_deps(wiring: Wiring) -> tuple[Inbox, Publisher]:
    """A shard actor's inbox and publisher, built inside the actor (redacted JSON logs)."""
    configure_logging(wiring.log_level, wiring.secret_values())
    return build_inbox(wiring), build_publisher(wiring)


def shard_config(wiring: Wiring, partition: int) -> ShardConfig:
    """How shard `partition` reads."""
    return ShardConfig(
        partition=partition,
        batch_size=wiring.shard_batch_size,
        max_item_age_s=wiring.max_item_age_s,
    )
