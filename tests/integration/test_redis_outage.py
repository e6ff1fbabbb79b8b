"""The ingress on a real RedisInbox while its Redis is hung (SIGSTOP) or killed (kill -9,
restarted on its AOF): 503 with a JSON error instead of a hang or a 200, readiness down,
and everything back by itself when Redis is, with every delivery answered 200 stored once.

The Redis is the test's own (tests/chaos/redis_node.py: AOF, fixed port, stopped by pid);
the machine's Redis is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from adapters.redis_client import SOCKET_TIMEOUT_S
from adapters.redis_inbox import RedisInbox
from tests.chaos.redis_node import RedisNode
from tests.support.app import ingress_client, signed
from tests.support.bodies import envelope, messages_value, text_message
from tests.support.configs import redis_inbox, redis_rate_limiter
from tests.support.redis_server import server_binary

pytestmark = pytest.mark.redis

PARTITIONS = 4
# A bound on what must not hang, not a speed: half the client's socket timeout, so an
# ingress that waited for the socket (no ack deadline) fails the test.
ANSWER_BOUND_S = SOCKET_TIMEOUT_S / 2


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RedisNode]:
    """A Redis with AOF of this test's own; resumed and stopped by pid afterwards."""
    binary = server_binary()
    if binary is None:
        pytest.skip("no redis-server >= 7.0")
    node = RedisNode(binary, tmp_path / "redis")
    node.start()
    try:
        yield node
    finally:
        resume(node)
        node.stop()


def pause(node: RedisNode) -> None:
    """SIGSTOP the server: connections stay open, nothing is answered (a hung Redis)."""
    assert node.process is not None
    os.kill(node.process.pid, signal.SIGSTOP)


def resume(node: RedisNode) -> None:
    """SIGCONT the server (a no-op when it is not stopped or not running)."""
    if node.process is not None and node.process.poll() is None:
        os.kill(node.process.pid, signal.SIGCONT)


def delivery(wamid: str) -> tuple[bytes, dict[str, str]]:
    """One text message as Meta signs it; the same bytes on every retry."""
    body = envelope(("messages", messages_value([text_message(wamid, "16505550001", ts=1)])))
    return signed(body)


async def post(client: httpx.AsyncClient, wamid: str) -> httpx.Response:
    raw, headers = delivery(wamid)
    return await client.post("/webhook", content=raw, headers=headers)


async def stored_wamids(url: str, prefix: str) -> Counter[str]:
    """How many times each message id is in the inbox, read by a fresh consumer."""
    inbox = redis_inbox(prefix, url=url)
    found: Counter[str] = Counter()
    try:
        for partition in range(PARTITIONS):
            while batch := await inbox.read(partition, 10_000, 1):
                found.update(str(s.item.item["id"]) for s in batch)
    finally:
        await inbox.close()
    return found


async def backlog(inbox: RedisInbox) -> int:
    return sum([await inbox.backlog(p) for p in range(PARTITIONS)])


async def until(predicate: Callable[[], Awaitable[bool]], bound_s: float = ANSWER_BOUND_S) -> None:
    """Poll `predicate` until it is true, within `bound_s` (else the test fails)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    while not await predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def refused_in_time(response: httpx.Response, message: str) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == {"error": {"code": "inbox_unavailable", "message": message}}


async def test_a_hung_redis_is_503_in_time_and_a_landed_append_is_a_duplicate_on_retry(
    node: RedisNode, redis_prefix: str, tmp_path: Path
) -> None:
    """SIGSTOP: each request is answered 503 within the ack deadline (not the socket
    timeout), /readyz fails within its bound; SIGCONT: the appends already sent land, so
    Meta's retries are answered `duplicate`; each message is stored exactly once."""
    inbox = redis_inbox(redis_prefix, url=node.url)
    async with ingress_client(tmp_path, inbox=inbox, partitions=PARTITIONS) as (client, _):
        first = await post(client, "wamid.before")
        assert first.json()["status"] == "accepted"
        during = [f"wamid.during.{n}" for n in range(5)]
        pause(node)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            answers = await asyncio.wait_for(
                asyncio.gather(*(post(client, w) for w in during)), timeout=ANSWER_BOUND_S
            )
            answered_s = loop.time() - started
            ready = await asyncio.wait_for(client.get("/readyz"), timeout=ANSWER_BOUND_S)
        finally:
            resume(node)
        for answer in answers:
            refused_in_time(answer, "the inbox did not answer in time, try again later")
        print(f"hung redis: {len(during)} requests answered 503 after {answered_s:.2f}s")
        assert ready.status_code == 503
        assert ready.json()["checks"]["inbox"] == "down: TimeoutError"

        # The grouped append was on the wire before the deadline: Redis runs it now.
        async def all_landed() -> bool:
            return await backlog(inbox) == 1 + len(during)

        await until(all_landed)
        retries = await asyncio.gather(*(post(client, w) for w in during))
        assert [r.json() for r in retries] == [{"status": "duplicate", "items": 0}] * len(during)
        assert (await client.get("/readyz")).status_code == 200
    stored = await stored_wamids(node.url, redis_prefix)
    assert stored == Counter(["wamid.before", *during])


async def test_a_killed_redis_is_503_and_its_aof_restart_resumes_without_a_restart(
    node: RedisNode, redis_prefix: str, tmp_path: Path
) -> None:
    """kill -9: 503 at once and /readyz down; restarted on its AOF (same port): the same
    clients store Meta's retries, and what was acknowledged before the kill is still there."""
    inbox = redis_inbox(redis_prefix, url=node.url)
    limiter = redis_rate_limiter(redis_prefix, url=node.url)
    async with ingress_client(
        tmp_path, inbox=inbox, rate_limiter=limiter, partitions=PARTITIONS
    ) as (client, _):
        assert (await post(client, "wamid.before")).json()["status"] == "accepted"
        node.kill_hard()
        refused = await asyncio.wait_for(post(client, "wamid.during"), timeout=ANSWER_BOUND_S)
        refused_in_time(refused, "try again later")
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["inbox"] == "down: TransientError"
        node.start()
        retried = await post(client, "wamid.during")
        assert retried.json()["status"] == "accepted"
        assert (await client.get("/readyz")).status_code == 200
    await limiter.close()
    assert await stored_wamids(node.url, redis_prefix) == Counter(["wamid.before", "wamid.during"])


@dataclass
class Tally:
    """What the senders saw: each delivery's final answer, and every answer's status."""

    acknowledged: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    slowest_s: dict[str, float] = field(default_factory=dict)  # per status, for the report


async def meta_sender(
    client: httpx.AsyncClient, name: str, tally: Tally, stop: asyncio.Event
) -> None:
    """Like Meta: one delivery at a time, retried (same bytes) until it is answered 200."""
    for n in itertools.count():
        if stop.is_set():
            return
        wamid = f"wamid.{name}.{n}"
        while True:
            started = asyncio.get_running_loop().time()
            answer = await asyncio.wait_for(post(client, wamid), timeout=ANSWER_BOUND_S)
            took = asyncio.get_running_loop().time() - started
            status = answer.json().get("status") or answer.json()["error"]["code"]
            outcome = f"{answer.status_code} {status}"
            tally.statuses[outcome] += 1
            tally.slowest_s[outcome] = max(took, tally.slowest_s.get(outcome, 0.0))
            if answer.status_code == 200:
                tally.acknowledged.append(wamid)
                break
            assert answer.status_code == 503, answer.text
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def senders(client: httpx.AsyncClient, tally: Tally, count: int) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(meta_sender(client, f"s{i}", tally, stop)) for i in range(count)]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_under_load_a_hang_and_a_kill_lose_nothing_acknowledged(
    node: RedisNode, redis_prefix: str, tmp_path: Path
) -> None:
    """Steady senders (rate limits on, the same Redis): hung 3 s, then killed 2 s and
    restarted on its AOF. No answer but 200 and 503; every delivery answered 200 is stored
    exactly once; the senders end with everything acknowledged."""
    inbox = redis_inbox(redis_prefix, url=node.url)
    limiter = redis_rate_limiter(redis_prefix, url=node.url)
    tally = Tally()
    async with (
        ingress_client(tmp_path, inbox=inbox, rate_limiter=limiter, partitions=PARTITIONS) as (
            client,
            _,
        ),
        senders(client, tally, count=10),
    ):
        await asyncio.sleep(1)
        pause(node)
        await asyncio.sleep(3)
        resume(node)
        await asyncio.sleep(1)
        node.kill_hard()
        await asyncio.sleep(2)
        node.start()
        await asyncio.sleep(1)
    await limiter.close()
    stored = await stored_wamids(node.url, redis_prefix)
    slowest = {k: round(v, 2) for k, v in tally.slowest_s.items()}
    print(
        f"redis outage under load: {dict(tally.statuses)}, slowest {slowest}; stored {len(stored)}"
    )
    assert set(tally.statuses) <= {"200 accepted", "200 duplicate", "503 inbox_unavailable"}
    assert tally.statuses["503 inbox_unavailable"] > 0  # the faults were seen
    assert stored == Counter(tally.acknowledged)  # each acknowledged once, nothing else
