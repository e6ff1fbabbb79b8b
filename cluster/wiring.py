"""Which adapter serves each port: the only place that names concrete adapters.

`Wiring` is the narrow, frozen, picklable part of the settings that Ray replicas and actors
receive; each builds its own clients from it at start-up (clients are never pickled).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from actors.shard import ShardConfig
from adapters.outbox import OutboxPublisher
from adapters.ports import Inbox, Publisher
from adapters.rabbitmq import RabbitPublisher
from adapters.redis_inbox import RedisInbox
from adapters.sqlite_inbox import SqliteInbox
from cluster.settings import Settings
from ingress.app import IngressConfig, IngressDeps
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
        )

    @property
    def outbox_path(self) -> Path:
        """Where the embedded publisher writes."""
        return self.data_dir / "outbox.db"


def build_inbox(wiring: Wiring) -> Inbox:
    """Redis Streams when WA_REDIS_URL is set, else the embedded SQLite inbox."""
    if wiring.redis_url:
        return RedisInbox(wiring.redis_url, wiring.redis_prefix)
    return SqliteInbox(wiring.data_dir / "inbox.db")


def build_publisher(wiring: Wiring) -> Publisher:
    """RabbitMQ when WA_RABBITMQ_URL is set, else the embedded outbox."""
    if wiring.rabbitmq_url:
        return RabbitPublisher(wiring.rabbitmq_url, wiring.rabbitmq_exchange)
    return OutboxPublisher(wiring.outbox_path)


def ingress_deps(wiring: Wiring) -> IngressDeps:
    """The ingress's dependencies, built inside its replica."""
    publisher = build_publisher(wiring)
    return IngressDeps(
        config=IngressConfig(
            partitions=wiring.partitions,
            max_body_bytes=wiring.max_body_bytes,
            append_linger_s=wiring.append_linger_s,
        ),
        directory=TenantDirectory(wiring.tenants),
        inbox=build_inbox(wiring),
        ready_checks={"publisher": publisher.ping},
    )


def shard_deps(wiring: Wiring) -> tuple[Inbox, Publisher]:
    """A shard actor's inbox and publisher, built inside the actor."""
    return build_inbox(wiring), build_publisher(wiring)


def shard_config(wiring: Wiring, partition: int) -> ShardConfig:
    """How shard `partition` reads."""
    return ShardConfig(partition=partition, batch_size=wiring.shard_batch_size)
