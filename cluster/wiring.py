"""The settings, derived once into the narrow configs each part receives.

`Wiring.from_settings` is the only place that turns `Settings` into the ingress's config,
the shards' configs and the adapters' tagged configs (cluster/backends.py); nothing else
copies a setting or holds a default of its own. A Wiring is frozen and picklable: Ray
replicas and actors receive it and build their own clients from it at start-up (clients
are never pickled).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from actors.archiver import Archiver, ArchiverConfig
from actors.archiver_metrics import RayArchiverMetrics
from actors.shard import ShardConfig
from adapters.ports import Inbox, Publisher, Routes
from cluster.account_wiring import AccountConfig, build_account_store
from cluster.backends import (
    ArchiveConfig,
    InboxConfig,
    LocalArchiveConfig,
    LocalRateLimiterConfig,
    OutboxConfig,
    PublisherConfig,
    RabbitPublisherConfig,
    RateLimiterConfig,
    RedisInboxConfig,
    RedisRateLimiterConfig,
    S3ArchiveConfig,
    SqliteInboxConfig,
    build_archive,
    build_inbox,
    build_publisher,
    build_rate_limiter,
    inbox_durability_check,
)
from cluster.limiter_wiring import LimiterConfig, stats_lookup
from cluster.logging import configure_logging
from cluster.media_wiring import MediaConfig, media_files
from cluster.settings import Settings
from cluster.tenant_wiring import tenant_watcher
from ingress.account_health import account_check
from ingress.archive_health import archive_backlog_check
from ingress.client_ip import SourcePolicy
from ingress.config import IngressConfig, IngressDeps, ReadyCheck
from ingress.health import inbox_backlog, publisher_check, shard_pool_check
from models.tenant import Tenant


@dataclass(frozen=True, slots=True)
class Wiring:
    """What a replica or actor needs to build its part of the service."""

    log_level: str
    data_dir: Path
    tenants: tuple[Tenant, ...]
    inbox: InboxConfig
    publisher: PublisherConfig
    rate_limiter: RateLimiterConfig
    ingress: IngressConfig
    shards: tuple[ShardConfig, ...]  # one per partition, index = partition
    archive: ArchiveConfig
    archiver: ArchiverConfig
    media: MediaConfig
    accounts: AccountConfig
    # How often each process polls the tenant registry (cluster/tenant_wiring.py).
    tenant_reload_s: float = 1.0
    # The per-tenant rate limiters (cluster/limiter_wiring.py; None: off).
    limiter: LimiterConfig | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Wiring:
        """Check the settings and derive every narrow config (data_dir made absolute)."""
        settings.check()
        data_dir = settings.data_dir.resolve()
        tenants = tuple(settings.tenants())
        return cls(
            log_level=settings.log_level,
            data_dir=data_dir,
            tenants=tenants,
            inbox=_inbox(settings, data_dir),
            publisher=_publisher(settings, data_dir),
            rate_limiter=_rate_limiter(settings),
            ingress=_ingress(settings),
            shards=tuple(_shard(settings, p) for p in range(settings.shards)),
            archive=_archive(settings, data_dir),
            archiver=_archiver(settings),
            media=MediaConfig.from_settings(settings, data_dir, tenants),
            accounts=AccountConfig.from_settings(settings),
            tenant_reload_s=settings.tenant_reload_s,
            limiter=LimiterConfig.from_settings(settings, _inbox(settings, data_dir), tenants),
        )

    @property
    def partitions(self) -> int:
        """How many inbox partitions (and shard actors) there are."""
        return len(self.shards)

    def secret_values(self) -> list[str]:
        """Every secret the logs must never show."""
        values = [s.get_secret_value() for t in self.tenants for s in t.app_secrets]
        for tenant in self.tenants:
            for token in (tenant.verify_token, tenant.access_token):
                if token is not None:
                    values.append(token.get_secret_value())
        if self.ingress.admin_token is not None:
            values.append(self.ingress.admin_token.get_secret_value())
        if isinstance(self.archive, S3ArchiveConfig) and self.archive.secret_access_key:
            values.append(self.archive.secret_access_key.get_secret_value())
        values += self.media.secret_values()
        return values

    def describe(self) -> dict[str, str]:
        """Which backend serves each port, for the start-up log (no credentials)."""
        inbox = "redis" if isinstance(self.inbox, RedisInboxConfig) else f"sqlite:{self.inbox.path}"
        publisher = self.publisher
        return {
            "inbox": inbox,
            "publisher": "rabbitmq"
            if isinstance(publisher, RabbitPublisherConfig)
            else f"outbox:{publisher.path}",
            "archive": f"s3:{self.archive.bucket}"
            if isinstance(self.archive, S3ArchiveConfig)
            else f"folder:{self.archive.root / 'archive'}",
            "media": self.media.describe(),
        }


def _inbox(settings: Settings, data_dir: Path) -> InboxConfig:
    if settings.redis_url:
        waitaof_local, waitaof_replicas = settings.waitaof_counts()
        return RedisInboxConfig(
            url=settings.redis_url,
            prefix=settings.redis_prefix,
            dedup_window_s=settings.dedup_window_s,
            conversation_retention_s=settings.conversation_retention_s or None,
            message_state_ttl_s=settings.message_state_ttl_s,
            enforce_durability=settings.profile == "production"
            and settings.redis_durability == "checked",
            waitaof_local=waitaof_local,
            waitaof_replicas=waitaof_replicas,
            waitaof_timeout_ms=settings.redis_waitaof_timeout_ms,
        )
    return SqliteInboxConfig(
        path=data_dir / "inbox.db",
        dedup_window_s=settings.dedup_window_s,
        conversation_retention_s=settings.conversation_retention_s or None,
        message_state_ttl_s=settings.message_state_ttl_s,
    )


def _publisher(settings: Settings, data_dir: Path) -> PublisherConfig:
    if settings.rabbitmq_url:
        return RabbitPublisherConfig(
            url=settings.rabbitmq_url,
            exchange=settings.rabbitmq_exchange,
            confirm_timeout_s=settings.rabbitmq_confirm_timeout_s,
            dead_queue=settings.rabbitmq_dead_queue,
            queues=settings.consumer_queues(),
            delivery_limit=settings.rabbitmq_delivery_limit,
        )
    return OutboxConfig(path=data_dir / "outbox.db")


def _archive(settings: Settings, data_dir: Path) -> ArchiveConfig:
    if settings.s3_bucket:
        return S3ArchiveConfig(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
        )
    return LocalArchiveConfig(root=data_dir)


def _archiver(settings: Settings) -> ArchiverConfig:
    return ArchiverConfig(
        batch=settings.archive_batch,
        poll_s=settings.archive_poll_ms / 1000,
        max_backoff_s=settings.shard_max_backoff_s,
        retention_s=settings.archive_retention_s,
        sweep_every_s=settings.archive_sweep_every_s,
        stall_after_s=settings.archive_stall_after_s,
    )


def _rate_limiter(settings: Settings) -> RateLimiterConfig:
    if settings.redis_url:
        return RedisRateLimiterConfig(
            url=settings.redis_url,
            prefix=settings.redis_prefix,
            window_s=settings.rate_limit_window_s,
            linger_s=settings.rate_limit_linger_ms / 1000,
        )
    return LocalRateLimiterConfig(window_s=settings.rate_limit_window_s)


def _ingress(settings: Settings) -> IngressConfig:
    allowed = settings.allowed_networks() if settings.allowlist_on() else None
    return IngressConfig(
        partitions=settings.shards,
        max_body_bytes=settings.max_body_bytes,
        append_linger_s=settings.append_linger_ms / 1000,
        append_max_items=settings.append_max_items,
        ack_timeout_s=settings.ack_timeout_ms / 1000,
        max_json_depth=settings.max_json_depth,
        max_json_array=settings.max_json_array,
        max_json_nodes=settings.max_json_nodes,
        max_items_per_delivery=settings.max_items_per_delivery,
        max_item_bytes=settings.max_item_bytes,
        max_stored_ratio=settings.max_stored_ratio,
        max_unverified_bytes=settings.max_unverified_bytes,
        body_timeout_s=settings.body_timeout_s,
        rate_limit_per_ip=settings.rate_limit_per_ip,
        rate_limit_per_tenant=settings.rate_limit_per_tenant,
        source_policy=SourcePolicy(settings.trusted_networks(), allowed),
        admin_token=settings.admin_token,
    )


def _shard(settings: Settings, partition: int) -> ShardConfig:
    return ShardConfig(
        partition=partition,
        batch_size=settings.shard_batch_size,
        block_ms=settings.shard_block_ms,
        linger_ms=settings.shard_linger_ms,
        max_backoff_s=settings.shard_max_backoff_s,
        max_item_age_s=settings.max_item_age_s,
        max_batch_bytes=settings.shard_max_batch_bytes,
        stall_after_s=settings.shard_stall_after_s,
        conversation_cache=settings.conversation_cache,
        conversation_idle_s=settings.conversation_idle_s,
        reorder_window_ms=settings.reorder_window_ms,
        reorder_max_held=settings.reorder_max_held,
        max_attempts=settings.max_attempts,
        retry_base_s=settings.retry_base_ms / 1000,
        retry_max_delay_s=settings.retry_max_delay_s,
    )


# Serve starts a replica's uvicorn after the deployment's constructor has run (replica.py:
# initialize_callable, then _on_initialized) with uvicorn's defaults: proxy_headers on,
# trusting $FORWARDED_ALLOW_IPS or else 127.0.0.1 and ::1, i.e. Serve's HAProxy, which
# passes a client's X-Forwarded-For through unchanged. uvicorn would then replace
# request.client with an address the client chose before the app runs. An empty value
# trusts nobody: request.client stays the TCP peer and SourcePolicy alone reads the header.
_REPLICA_UVICORN_TRUSTS_NOBODY = {"FORWARDED_ALLOW_IPS": ""}


def ingress_deps(wiring: Wiring, pool: Any = None) -> IngressDeps:
    """The ingress's dependencies, built inside its replica (which logs redacted JSON).

    `pool` is the shard pool's Serve handle (None when the replica runs without shards):
    readiness then also asks whether every shard is running. Also makes the replica's
    uvicorn, started next, believe no X-Forwarded-For (see above).
    """
    os.environ.update(_REPLICA_UVICORN_TRUSTS_NOBODY)
    configure_logging(wiring.log_level, wiring.secret_values())
    policy = wiring.ingress.source_policy
    if policy.allowed is not None and not policy.trusted_proxies:
        structlog.get_logger("wiring").warning(
            "allowlist_judges_the_tcp_peer",
            reason="no front proxy declared (WA_TRUSTED_PROXIES empty): behind Serve's "
            "HAProxy every request comes from 127.0.0.1 or a node address",
        )
    publisher = build_publisher(wiring.publisher)
    inbox = build_inbox(wiring.inbox)
    # The broker down is a detail with the backlog, never "down" (ingress/health.py).
    backlog = inbox_backlog(inbox, wiring.partitions)
    ready_checks: dict[str, ReadyCheck] = {"publisher": publisher_check(publisher.ping, backlog)}
    if pool is not None:
        ready_checks["shards"] = shard_pool_check(pool)
    durable = inbox_durability_check(wiring.inbox, inbox)
    if durable is not None:  # the start-up check, repeated: Redis can be reconfigured live
        ready_checks["inbox_durability"] = durable
    ready_checks["archive"] = archive_backlog_check(inbox, wiring.archiver.stall_after_s)
    # The live directory: the tenants file until the watcher's first load of the registry,
    # then the registry's set, polled on the replica's loop (cluster/tenant_wiring.py).
    watcher = tenant_watcher(wiring.inbox, wiring.tenants, wiring.tenant_reload_s, "ingress")
    directory = watcher.directory
    accounts = build_account_store(wiring.inbox)
    ready_checks["accounts"] = account_check(accounts, directory)
    return IngressDeps(
        config=wiring.ingress,
        directory=directory,
        tenants=watcher.registry,
        reload_tenants=watcher.refresh,
        background=[watcher.run],
        inbox=inbox,
        ready_checks=ready_checks,
        closers=[publisher.close],
        rate_limiter=build_rate_limiter(wiring.rate_limiter),
        archive=build_archive(wiring.archive),
        media_files=media_files(wiring.media),
        accounts=accounts,
        limiter_stats=stats_lookup(wiring.limiter) if wiring.limiter is not None else None,
    )


def archiver(wiring: Wiring) -> Archiver:
    """The archiver loop's logic and clients, built inside the shard pool's replica."""
    configure_logging(wiring.log_level, wiring.secret_values())
    inbox, archive = build_inbox(wiring.inbox), build_archive(wiring.archive)
    return Archiver(wiring.archiver, inbox, archive, RayArchiverMetrics())


def shard_deps(wiring: Wiring, routes: Routes | None = None) -> tuple[Inbox, Publisher]:
    """A shard actor's inbox and publisher, built inside the actor (redacted JSON logs);
    `routes`: the tenants' routing rules, from the actor's live directory."""
    configure_logging(wiring.log_level, wiring.secret_values())
    return build_inbox(wiring.inbox), build_publisher(wiring.publisher, routes)


def shard_config(wiring: Wiring, partition: int) -> ShardConfig:
    """How shard `partition` reads."""
    return wiring.shards[partition]
