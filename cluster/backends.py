"""Which adapter serves each port, as data: one tagged config per choice, built from Settings.

Each port has a production adapter and an embedded one; which one runs is decided once, in
`Settings` (a URL set or not), and carried to the replicas and actors as one of these
frozen, picklable models. The builders below are the only code that names concrete
adapters; no adapter has defaults of its own, so Settings is the one place that does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from adapters.archive_local import LocalArchive
from adapters.archive_s3 import S3Archive
from adapters.consumer_queues import ConsumerQueue
from adapters.errors import BrokerMisconfigured, TransientError
from adapters.local_rate_limit import LocalRateLimiter
from adapters.outbox import OutboxPublisher
from adapters.ports import (
    Archive,
    Inbox,
    InboxDurability,
    InboxLayoutStore,
    Publisher,
    RateLimiter,
    Routes,
)
from adapters.rabbitmq import RabbitPublisher
from adapters.redis_durability import WaitAof
from adapters.redis_inbox import RedisInbox
from adapters.redis_rate_limit import RedisRateLimiter
from adapters.redis_reshard import RedisLayoutStore
from adapters.sqlite_inbox import SqliteInbox
from adapters.sqlite_reshard import SqliteLayoutStore
from cluster.settings import SettingsError

log = structlog.get_logger("backends")


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RedisInboxConfig(_Config):
    """The inbox on Redis Streams (production)."""

    kind: Literal["redis"] = "redis"
    url: str
    prefix: str
    dedup_window_s: int
    # Conversation records expire after this much silence (None: never; Settings' 0);
    # message records after their TTL.
    conversation_retention_s: int | None
    message_state_ttl_s: int
    # Refuse to start (and be not ready) on a Redis that can lose or evict acknowledged
    # appends: the production profile with WA_REDIS_DURABILITY=checked.
    enforce_durability: bool
    waitaof_local: int  # WAITAOF numlocal numreplicas timeout after each append; 0 0: off
    waitaof_replicas: int
    waitaof_timeout_ms: int

    def waitaof(self) -> WaitAof | None:
        """The WAITAOF the ingress's appends issue, or None."""
        if not (self.waitaof_local or self.waitaof_replicas):
            return None
        return WaitAof(self.waitaof_local, self.waitaof_replicas, self.waitaof_timeout_ms)


class SqliteInboxConfig(_Config):
    """The inbox in a SQLite file (embedded)."""

    kind: Literal["sqlite"] = "sqlite"
    path: Path
    dedup_window_s: int
    conversation_retention_s: int | None  # None: never expire
    message_state_ttl_s: int


InboxConfig = Annotated[RedisInboxConfig | SqliteInboxConfig, Field(discriminator="kind")]


class RabbitPublisherConfig(_Config):
    """Publishing to a RabbitMQ topic exchange with confirms (production)."""

    kind: Literal["rabbitmq"] = "rabbitmq"
    url: str
    exchange: str
    confirm_timeout_s: float
    dead_queue: bool  # declare `<exchange>.dead` bound with `#`
    # The consumer queues (WA_RABBITMQ_QUEUES): name and binding patterns; their limit.
    queues: tuple[tuple[str, tuple[str, ...]], ...]
    delivery_limit: int


class OutboxConfig(_Config):
    """Publishing into a local SQLite outbox (embedded)."""

    kind: Literal["outbox"] = "outbox"
    path: Path


PublisherConfig = Annotated[RabbitPublisherConfig | OutboxConfig, Field(discriminator="kind")]


class RedisRateLimiterConfig(_Config):
    """Fixed-window counters in Redis, shared by every replica (production)."""

    kind: Literal["redis"] = "redis"
    url: str
    prefix: str
    window_s: int
    linger_s: float


class LocalRateLimiterConfig(_Config):
    """In-process counters (embedded: one replica)."""

    kind: Literal["local"] = "local"
    window_s: int


RateLimiterConfig = Annotated[
    RedisRateLimiterConfig | LocalRateLimiterConfig, Field(discriminator="kind")
]


def build_inbox(config: RedisInboxConfig | SqliteInboxConfig) -> Inbox:
    """The inbox adapter this config names."""
    if isinstance(config, RedisInboxConfig):
        return RedisInbox(
            config.url,
            config.prefix,
            config.dedup_window_s,
            retention_s=config.conversation_retention_s,
            message_ttl_s=config.message_state_ttl_s,
            waitaof=config.waitaof(),
        )
    return SqliteInbox(
        config.path,
        config.dedup_window_s,
        retention_s=config.conversation_retention_s,
        message_ttl_s=config.message_state_ttl_s,
    )


def build_layout_store(config: RedisInboxConfig | SqliteInboxConfig) -> InboxLayoutStore:
    """The layout store (record and reshard moves) of the inbox this config names."""
    if isinstance(config, RedisInboxConfig):
        return RedisLayoutStore(config.url, config.prefix)
    return SqliteLayoutStore(config.path)


class InboxNotDurable(RuntimeError):
    """The inbox's store can lose or evict acknowledged appends (readiness: down)."""


def inbox_refusals(config: InboxConfig, report: InboxDurability) -> list[str]:
    """Why this store is refused under this config: `unusable` always, `unsafe` if enforced."""
    enforced = isinstance(config, RedisInboxConfig) and config.enforce_durability
    return [*report.unusable, *(report.unsafe if enforced else ())]


def check_inbox_durability(config: InboxConfig) -> InboxDurability | None:
    """The runner's start-up check (one round trip): log what the store reports, raise
    SettingsError if it is refused. An unreachable store is refused only when enforced
    (nothing could be checked); otherwise readiness reports it later, as before."""

    async def read() -> InboxDurability:
        inbox = build_inbox(config)
        try:
            return await inbox.durability()
        finally:
            await inbox.close()

    enforced = isinstance(config, RedisInboxConfig) and config.enforce_durability
    try:
        report = asyncio.run(read())
    except TransientError as exc:
        if enforced:
            raise SettingsError(f"the inbox's Redis could not be checked: {exc}") from exc
        log.warning("inbox_durability_unknown", error=str(exc))
        return None
    level = log.warning if report.unsafe or report.unusable or report.advice else log.info
    level(
        "inbox_durability",
        store=report.store,
        settings=dict(report.settings),
        unsafe=list(report.unsafe),
        unusable=list(report.unusable),
        advice=list(report.advice),
    )
    refused = inbox_refusals(config, report)
    if refused:
        hint = " (or WA_REDIS_DURABILITY=unchecked)" if report.unsafe and enforced else ""
        raise SettingsError(
            f"the inbox's Redis is refused: {'; '.join(refused)}{hint}; see docs/redis.md"
        )
    return report


def inbox_durability_check(
    config: InboxConfig, inbox: Inbox
) -> Callable[[], Awaitable[str | None]] | None:
    """The start-up check repeated by readiness (Redis only): raises InboxNotDurable while
    the store would be refused; otherwise returns what it would log (unenforced findings,
    advice) as the check's detail, or None when there is nothing to say."""
    if not isinstance(config, RedisInboxConfig):
        return None

    async def durable() -> str | None:
        report = await inbox.durability()
        refused = inbox_refusals(config, report)
        if refused:
            raise InboxNotDurable("; ".join(refused))
        findings = [*report.unsafe, *report.advice]
        return "; ".join(findings) if findings else None

    return durable


def check_publisher_topology(config: PublisherConfig) -> None:
    """The runner's start-up check (RabbitMQ only): declare the exchanges and queues once.
    One that exists with other arguments raises SettingsError (no shard could ever publish,
    so it must not start and loop); a broker that cannot be reached is only logged (the
    ingress keeps storing, the shards retry: docs/reliability.md "Degradation")."""
    if not isinstance(config, RabbitPublisherConfig):
        return

    async def declare() -> None:
        publisher = build_publisher(config)
        try:
            await publisher.ping()
        finally:
            await publisher.close()

    try:
        asyncio.run(declare())
    except BrokerMisconfigured as exc:
        raise SettingsError(
            f"{exc}; delete the queue or exchange named there, or change the setting that "
            "declares it (WA_RABBITMQ_QUEUES, WA_RABBITMQ_DELIVERY_LIMIT, WA_RABBITMQ_EXCHANGE)"
        ) from exc
    except TransientError as exc:
        log.warning("publisher_unreachable_at_start", error=str(exc))


def build_publisher(
    config: RabbitPublisherConfig | OutboxConfig, routes: Routes | None = None
) -> Publisher:
    """The publisher adapter this config names; `routes`: the tenants' routing rules
    (a shard's, from its live directory; None: every event on the service's route)."""
    if isinstance(config, RabbitPublisherConfig):
        queues = [
            ConsumerQueue(name, bindings, config.delivery_limit) for name, bindings in config.queues
        ]
        return RabbitPublisher(
            config.url,
            config.exchange,
            config.confirm_timeout_s,
            dead_queue=config.dead_queue,
            queues=queues,
            routes=routes,
        )
    return OutboxPublisher(config.path, routes)


def build_rate_limiter(config: RedisRateLimiterConfig | LocalRateLimiterConfig) -> RateLimiter:
    """The rate limiter adapter this config names."""
    if isinstance(config, RedisRateLimiterConfig):
        return RedisRateLimiter(config.url, config.prefix, config.window_s, config.linger_s)
    return LocalRateLimiter(config.window_s)


class S3ArchiveConfig(_Config):
    """The raw-delivery archive in an S3 bucket (production: WA_S3_BUCKET set)."""

    kind: Literal["s3"] = "s3"
    bucket: str
    endpoint_url: str | None  # None: AWS's own endpoint for the region
    region: str
    access_key_id: str | None  # None (with the secret): boto3's credential chain
    secret_access_key: SecretStr | None


class LocalArchiveConfig(_Config):
    """The raw-delivery archive in a local folder (embedded: `<root>/archive/...`)."""

    kind: Literal["local"] = "local"
    root: Path


ArchiveConfig = Annotated[S3ArchiveConfig | LocalArchiveConfig, Field(discriminator="kind")]


def build_archive(config: S3ArchiveConfig | LocalArchiveConfig) -> Archive:
    """The archive adapter this config names."""
    if isinstance(config, S3ArchiveConfig):
        secret = config.secret_access_key
        return S3Archive(
            config.bucket,
            endpoint_url=config.endpoint_url,
            region=config.region,
            access_key_id=config.access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
        )
    return LocalArchive(config.root)
