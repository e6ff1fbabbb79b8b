"""Which adapter serves each port, as data: one tagged config per choice, built from Settings.

Each port has a production adapter and an embedded one; which one runs is decided once, in
`Settings` (a URL set or not), and carried to the replicas and actors as one of these
frozen, picklable models. The builders below are the only code that names concrete
adapters; no adapter has defaults of its own, so Settings is the one place that does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from adapters.local_rate_limit import LocalRateLimiter
from adapters.outbox import OutboxPublisher
from adapters.ports import Inbox, Publisher, RateLimiter
from adapters.rabbitmq import RabbitPublisher
from adapters.redis_inbox import RedisInbox
from adapters.redis_rate_limit import RedisRateLimiter
from adapters.sqlite_inbox import SqliteInbox


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RedisInboxConfig(_Config):
    """The inbox on Redis Streams (production)."""

    kind: Literal["redis"] = "redis"
    url: str
    prefix: str
    dedup_window_s: int


class SqliteInboxConfig(_Config):
    """The inbox in a SQLite file (embedded)."""

    kind: Literal["sqlite"] = "sqlite"
    path: Path
    dedup_window_s: int


InboxConfig = Annotated[RedisInboxConfig | SqliteInboxConfig, Field(discriminator="kind")]


class RabbitPublisherConfig(_Config):
    """Publishing to a RabbitMQ topic exchange with confirms (production)."""

    kind: Literal["rabbitmq"] = "rabbitmq"
    url: str
    exchange: str
    confirm_timeout_s: float


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
        return RedisInbox(config.url, config.prefix, config.dedup_window_s)
    return SqliteInbox(config.path, config.dedup_window_s)


def build_publisher(config: RabbitPublisherConfig | OutboxConfig) -> Publisher:
    """The publisher adapter this config names."""
    if isinstance(config, RabbitPublisherConfig):
        return RabbitPublisher(config.url, config.exchange, config.confirm_timeout_s)
    return OutboxPublisher(config.path)


def build_rate_limiter(config: RedisRateLimiterConfig | LocalRateLimiterConfig) -> RateLimiter:
    """The rate limiter adapter this config names."""
    if isinstance(config, RedisRateLimiterConfig):
        return RedisRateLimiter(config.url, config.prefix, config.window_s, config.linger_s)
    return LocalRateLimiter(config.window_s)
