"""What a Redis server promises about an acknowledged append, read from the server itself.

The inbox is the durability point of a 200, so its Redis must keep what it acknowledged:
AOF on (without it a restart loses every stream), and no eviction. Keys with an expiry are
the dedup marks and the message records (and, with a conversation retention, the
conversation records); streams and consumer groups have none. So:

- `noeviction`: accepted, the only policy that is. At the memory limit appends are refused
  (503, Meta retries) and the shards' commit script still drains (it is `allow-oom`).
- `allkeys-*`: refused. They evict streams: acknowledged deliveries nobody has published.
- `volatile-*`: refused. Streams are safe, but they evict exactly the keys with a TTL: a
  dedup mark (a replay inside the window is published again), a message record (a status
  ordered against nothing) and, with a retention, a conversation record (the conversation
  starts over at sequence 1 while it is active, so consumers see it go back).

`appendfsync everysec`/`no` lose the last second (or the kernel's ~30 s) of acknowledged
appends on a host crash: advice, not refused, unless WAITAOF covers it. WAITAOF itself is
checked against what it needs (Redis 7.2, AOF on locally, enough replicas), because with
any of those missing every append would time out: that is refused in every profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from adapters.errors import TransientError
from adapters.ports import InboxDurability

_ACCEPTED_POLICY = "noeviction"
# WAITAOF local under `everysec` waits for the next once-a-second fsync: measured 1.01 s
# p50, 1.10 s p99 on Redis 8.2 (2 cores, tests/bench/redis_waitaof.py). A shorter timeout
# fails appends.
_EVERYSEC_WAIT_MS = 1500


@dataclass(frozen=True, slots=True)
class WaitAof:
    """`WAITAOF numlocal numreplicas timeout` after each append, before the 200."""

    numlocal: int  # 0 or 1: this server's AOF fsynced
    numreplicas: int  # replicas whose AOF fsynced
    timeout_ms: int

    def command(self) -> tuple[str, int, int, int]:
        """The command's words, to pipeline behind the appends."""
        return ("WAITAOF", self.numlocal, self.numreplicas, self.timeout_ms)

    def describe(self) -> str:
        """The setting as WA_REDIS_WAITAOF spells it."""
        parts = ["local"] if self.numlocal else []
        if self.numreplicas:
            parts.append(f"replicas:{self.numreplicas}")
        return "+".join(parts) or "off"


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(".")[:3])
    except ValueError:
        return (0,)


async def read_durability(client: aioredis.Redis, waitaof: WaitAof | None) -> InboxDurability:
    """INFO server/persistence/memory/replication and CONFIG GET appendfsync, one round trip.

    CONFIG may be renamed away (managed Redis): appendfsync is then unknown, which is
    advice; everything else comes from INFO, which every server answers.
    """
    try:
        async with client.pipeline(transaction=False) as pipe:
            for section in ("server", "persistence", "memory", "replication"):
                pipe.info(section)
            pipe.config_get("appendfsync")
            replies = await pipe.execute(raise_on_error=False)
    except RedisError as exc:
        raise TransientError(f"redis durability: {exc}") from exc
    *infos, fsync_reply = replies
    for reply in infos:
        if isinstance(reply, Exception):
            raise TransientError(f"redis durability: {reply}")
    info: dict[str, Any] = {}
    for reply in infos:
        info.update(reply)
    appendfsync = None if isinstance(fsync_reply, Exception) else fsync_reply.get("appendfsync")
    return assess(info, appendfsync, waitaof)


def assess(
    info: Mapping[str, Any], appendfsync: str | None, waitaof: WaitAof | None
) -> InboxDurability:
    """Sort what the server reports into unsafe / unusable / advice (rules: module doc)."""
    version = str(info.get("redis_version", "0"))
    aof = int(info.get("aof_enabled", 0)) == 1
    policy = str(info.get("maxmemory_policy", "unknown"))
    maxmemory = int(info.get("maxmemory", 0))
    role = str(info.get("role", "master"))
    replicas = int(info.get("connected_slaves", 0))
    unsafe: list[str] = []
    unusable: list[str] = []
    advice: list[str] = []
    if _version(version) < (7, 0):
        unusable.append(f"Redis {version}: the inbox's commit script needs Redis 7.0 or later")
    if role != "master":
        unusable.append(f"the server is a {role} (read-only): point WA_REDIS_URL at the primary")
    if not aof:
        unsafe.append(
            "appendonly is no: a Redis restart loses every acknowledged delivery not yet "
            "published; set appendonly yes (appendfsync always)"
        )
    if policy != _ACCEPTED_POLICY:
        evicts = (
            "inbox streams (acknowledged, unpublished deliveries)"
            if policy.startswith("allkeys")
            else "dedup marks, message and conversation records (the keys with a TTL)"
        )
        unsafe.append(f"maxmemory-policy is {policy}: it evicts {evicts}; set noeviction")
    if maxmemory == 0:
        advice.append(
            "maxmemory is 0: Redis grows until the kernel's OOM killer stops it; set maxmemory "
            "(sizing: docs/redis.md) so appends are refused (503) before that"
        )
    if waitaof is not None:
        unusable.extend(_waitaof_unusable(waitaof, version, aof, appendfsync, replicas))
    covered = waitaof is not None and (waitaof.numlocal or waitaof.numreplicas)
    if appendfsync is None:
        advice.append("appendfsync unknown (CONFIG GET refused); it should be always")
    elif appendfsync != "always" and aof and not covered:
        advice.append(
            f"appendfsync is {appendfsync}: a host crash loses the acknowledged appends not "
            "yet fsynced; set appendfsync always, or WA_REDIS_WAITAOF"
        )
    settings = (
        ("version", version),
        ("appendonly", "yes" if aof else "no"),
        ("appendfsync", appendfsync or "unknown"),
        ("maxmemory", str(maxmemory)),
        ("maxmemory-policy", policy),
        ("role", role),
        ("connected_replicas", str(replicas)),
        ("waitaof", "off" if waitaof is None else waitaof.describe()),
    )
    return InboxDurability(
        store=f"redis {version}",
        settings=settings,
        unsafe=tuple(unsafe),
        unusable=tuple(unusable),
        advice=tuple(advice),
    )


def _waitaof_unusable(
    waitaof: WaitAof, version: str, aof: bool, appendfsync: str | None, replicas: int
) -> list[str]:
    """Why every append with this WAITAOF would fail on this server (empty: it can work)."""
    name = f"WA_REDIS_WAITAOF={waitaof.describe()}"
    if _version(version) < (7, 2):
        return [f"{name} needs Redis 7.2 or later (WAITAOF); this server is {version}"]
    problems: list[str] = []
    if waitaof.numlocal and not aof:
        problems.append(f"{name} needs appendonly yes on this server")
    if waitaof.numlocal and appendfsync == "no":
        problems.append(f"{name} never confirms under appendfsync no; set appendfsync always")
    if waitaof.numlocal and appendfsync == "everysec" and waitaof.timeout_ms < _EVERYSEC_WAIT_MS:
        problems.append(
            f"{name} waits up to 1 s for the next fsync under appendfsync everysec: set "
            f"WA_REDIS_WAITAOF_TIMEOUT_MS >= {_EVERYSEC_WAIT_MS} or appendfsync always"
        )
    if waitaof.numreplicas > replicas:
        problems.append(f"{name} but only {replicas} replica(s) are connected")
    return problems


def check_waitaof(reply: Any, waitaof: WaitAof) -> None:
    """Raise TransientError unless WAITAOF's [local, replicas] reply reaches the asked counts."""
    local, replicas = (int(n) for n in reply)
    if local < waitaof.numlocal or replicas < waitaof.numreplicas:
        raise TransientError(
            f"redis append not fsynced within {waitaof.timeout_ms} ms: "
            f"WAITAOF {waitaof.numlocal} {waitaof.numreplicas} answered {local} {replicas}"
        )
