"""The service's narrow configs and adapters as the embedded Settings build them.

Tests take every default from `Settings` through `Wiring.from_settings`, the same path the
service takes, and override only what the test is about; no test restates a default.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from actors.shard import ShardConfig
from adapters.local_rate_limit import LocalRateLimiter
from adapters.rabbitmq import RabbitPublisher
from adapters.redis_durability import WaitAof
from adapters.redis_inbox import RedisInbox
from adapters.redis_rate_limit import RedisRateLimiter
from adapters.sqlite_inbox import SqliteInbox
from cluster.settings import Settings
from cluster.wiring import Wiring
from ingress.config import IngressConfig
from tests.conftest import RABBITMQ_URL, REDIS_URL


@functools.cache
def defaults() -> Settings:
    """The embedded profile's settings with no WA_* variable applied."""
    return Settings.model_construct()


@functools.cache
def _wiring() -> Wiring:
    return Wiring.from_settings(defaults())


def ingress_config(**overrides: Any) -> IngressConfig:
    """The ingress config of the embedded defaults, with `overrides` applied."""
    return dataclasses.replace(_wiring().ingress, **overrides)


def shard_config(partition: int = 0, **overrides: Any) -> ShardConfig:
    """Shard `partition`'s config of the embedded defaults, with `overrides` applied; the
    reorder window off unless given (a test driving `run_once` until it returns 0 would
    stop while messages are held: tests of the window set it, with a wall clock)."""
    overrides.setdefault("reorder_window_ms", 0.0)
    # Failing items: retried at once (no backoff to wait out), dead after three attempts.
    overrides.setdefault("retry_base_s", 0.0)
    overrides.setdefault("max_attempts", 3)
    return dataclasses.replace(_wiring().shards[0], partition=partition, **overrides)


def sqlite_inbox(
    path: Path,
    window_s: int | None = None,
    *,
    retention_s: int | Literal["default"] | None = "default",
    message_ttl_s: int | None = None,
    clock: Callable[[], float] = time.time,
) -> SqliteInbox:
    """The embedded inbox at `path` (dedup window, conversation retention and message TTL
    from Settings unless given; `retention_s=None`: never expire; the wall clock unless
    given: a test can step time past an expiry instead of waiting)."""
    settings = defaults()
    return SqliteInbox(
        path,
        settings.dedup_window_s if window_s is None else window_s,
        retention_s=_retention(settings) if retention_s == "default" else retention_s,
        message_ttl_s=settings.message_state_ttl_s if message_ttl_s is None else message_ttl_s,
        clock=clock,
    )


def redis_inbox(
    prefix: str,
    url: str = REDIS_URL,
    window_s: int | None = None,
    waitaof: WaitAof | None = None,
    *,
    retention_s: int | Literal["default"] | None = "default",
    message_ttl_s: int | None = None,
) -> RedisInbox:
    """A Redis inbox under `prefix` (window, conversation retention and message TTL from
    Settings unless given; `retention_s=None`: never expire; no WAITAOF, the default,
    unless given)."""
    settings = defaults()
    return RedisInbox(
        url,
        prefix,
        settings.dedup_window_s if window_s is None else window_s,
        retention_s=_retention(settings) if retention_s == "default" else retention_s,
        message_ttl_s=settings.message_state_ttl_s if message_ttl_s is None else message_ttl_s,
        waitaof=waitaof,
    )


def _retention(settings: Settings) -> int | None:
    """The configured conversation retention as the adapters take it (0: None, never)."""
    return settings.conversation_retention_s or None


def rabbit_publisher(exchange: str, url: str = RABBITMQ_URL) -> RabbitPublisher:
    """A RabbitMQ publisher on `exchange` with the configured confirm timeout."""
    return RabbitPublisher(url, exchange, defaults().rabbitmq_confirm_timeout_s)


def redis_rate_limiter(prefix: str, url: str = REDIS_URL, **overrides: Any) -> RedisRateLimiter:
    """A Redis rate limiter under `prefix`; window, linger and clock overridable."""
    settings = defaults()
    options: dict[str, Any] = {
        "window_s": settings.rate_limit_window_s,
        "linger_s": settings.rate_limit_linger_ms / 1000,
        **overrides,
    }
    return RedisRateLimiter(url, prefix, **options)


def local_rate_limiter(**overrides: Any) -> LocalRateLimiter:
    """An in-process rate limiter; window and clock overridable."""
    options: dict[str, Any] = {"window_s": defaults().rate_limit_window_s, **overrides}
    return LocalRateLimiter(**options)
