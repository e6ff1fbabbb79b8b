"""The Redis durability settings, derived into the inbox config (no server: the rules that
judge a server's answers are tests/integration/test_redis_safety.py's)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from adapters.redis_durability import WaitAof, assess
from cluster.backends import RedisInboxConfig
from cluster.settings import Settings, SettingsError
from cluster.wiring import Wiring

URL = "redis://127.0.0.1:1/0"  # never contacted here


def inbox(**values: object) -> RedisInboxConfig:
    """The inbox config Wiring derives from these settings (on Redis)."""
    settings = Settings.model_validate({"redis_url": URL, **values})
    config = Wiring.from_settings(settings).inbox
    assert isinstance(config, RedisInboxConfig)
    return config


PRODUCTION: dict[str, object] = {
    "profile": "production",
    "rabbitmq_url": "amqp://127.0.0.1:1/",
    "app_secret": SecretStr("an-app-secret"),
    "allowed_cidrs": "127.0.0.0/8",
}


@pytest.mark.parametrize(
    ("values", "enforced"),
    [
        (PRODUCTION, True),
        ({**PRODUCTION, "redis_durability": "unchecked"}, False),
        ({}, False),  # embedded with Redis: reported, never refused
    ],
    ids=["production", "production-unchecked", "embedded"],
)
def test_durability_is_enforced_in_production_unless_unchecked(
    values: dict[str, object], enforced: bool
) -> None:
    """Only the production profile with WA_REDIS_DURABILITY=checked (the default) refuses."""
    assert inbox(**values).enforce_durability is enforced


@pytest.mark.parametrize(
    ("spelled", "waitaof"),
    [
        ("off", None),
        ("local", WaitAof(1, 0, 2000)),
        ("replicas:2", WaitAof(0, 2, 2000)),
        ("local+replicas:1", WaitAof(1, 1, 2000)),
    ],
)
def test_waitaof_spellings(spelled: str, waitaof: WaitAof | None) -> None:
    """WA_REDIS_WAITAOF becomes the counts WAITAOF is called with (timeout: the default)."""
    config = inbox(redis_waitaof=spelled)
    assert config.waitaof() == waitaof
    if waitaof is not None:
        assert waitaof.describe() == spelled


@pytest.mark.parametrize(
    "values",
    [
        {"redis_waitaof": "always"},
        {"redis_waitaof": "replicas:0"},
        {"redis_waitaof": "local+local"},
        {"redis_waitaof": "local", "redis_waitaof_timeout_ms": 0},
        {"redis_waitaof": "local", "redis_waitaof_timeout_ms": 10_000},
    ],
)
def test_unusable_values_are_refused_with_the_variable_named(values: dict[str, object]) -> None:
    """A misspelled WAITAOF, a timeout the 10 s socket timeout would cut, or a TTL of 0."""
    with pytest.raises(SettingsError, match="WA_REDIS_"):
        inbox(**values)


def test_everysec_is_advice_unless_waitaof_covers_it() -> None:
    """appendfsync everysec loses the last second on a host crash: said, not refused; with
    WAITAOF local it waits for the fsync instead, so only a too-short timeout is refused."""
    info = {
        "redis_version": "7.2.4",
        "aof_enabled": 1,
        "maxmemory_policy": "noeviction",
        "maxmemory": 1 << 30,
        "role": "master",
        "connected_slaves": 0,
    }
    plain = assess(info, "everysec", None)
    assert plain.unsafe == plain.unusable == ()
    assert any("appendfsync is everysec" in a for a in plain.advice)
    covered = assess(info, "everysec", WaitAof(1, 0, 2000))
    assert covered.unsafe == covered.unusable == covered.advice == ()
    short = assess(info, "everysec", WaitAof(1, 0, 500))
    assert any("WA_REDIS_WAITAOF_TIMEOUT_MS >= 1500" in u for u in short.unusable)
    never = assess(info, "no", WaitAof(1, 0, 2000))
    assert any("never confirms" in u for u in never.unusable)
