"""Readiness while a dependency is down or hung: the broker is a detail with the backlog
(the replica keeps taking webhooks), a check that hangs is down within its bound, and a slow
first ping is awaited again, not restarted."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ingress.health import inbox_backlog, publisher_check
from tests.support.app import ingress_client, signed
from tests.support.bodies import two_customers_and_a_status
from tests.support.configs import sqlite_inbox
from tests.support.failing import FailingPublisher


async def test_an_unreachable_broker_is_a_detail_with_the_backlog_and_webhooks_are_stored(
    tmp_path: Path,
) -> None:
    """RabbitMQ down: the delivery is acknowledged into the inbox; /readyz 200 with the
    publisher `degraded`, naming the error and the entries waiting."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    check = publisher_check(FailingPublisher().ping, inbox_backlog(inbox, 4))
    raw, headers = signed(two_customers_and_a_status())
    async with ingress_client(tmp_path, inbox=inbox, ready_checks={"publisher": check}) as (
        client,
        _,
    ):
        accepted = await client.post("/webhook", content=raw, headers=headers)
        assert (accepted.status_code, accepted.json()["items"]) == (200, 3)
        ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {
            "inbox": "ok",
            "publisher": "degraded: unreachable (TransientError): deliveries are stored and "
            "published when it is back; inbox backlog 3 entries",
        },
    }


async def test_a_check_that_hangs_is_down_and_the_others_still_answer(tmp_path: Path) -> None:
    """A dependency that never answers (a stopped Redis): that check is `down:
    TimeoutError` after READY_CHECK_TIMEOUT_S, /readyz 503, and every other check answers."""
    never = asyncio.Event()

    async def hung() -> str | None:
        await never.wait()
        return None

    async with ingress_client(tmp_path, ready_checks={"store": hung}) as (client, _):
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"inbox": "ok", "store": "down: TimeoutError"}


async def test_a_slow_first_ping_is_awaited_again_not_restarted(tmp_path: Path) -> None:
    """A ping still connecting when the check gives up is `no answer yet` (still ready),
    keeps running, and the next check waits on the same ping; once it has answered, the
    next check pings again: ok."""
    connected = asyncio.Event()
    pings = 0

    async def slow_ping() -> None:
        nonlocal pings
        pings += 1
        await connected.wait()

    inbox = sqlite_inbox(tmp_path / "inbox.db")
    check = publisher_check(slow_ping, inbox_backlog(inbox, 4))
    async with ingress_client(tmp_path, inbox=inbox, ready_checks={"publisher": check}) as (
        client,
        _,
    ):
        first = (await client.get("/readyz")).json()
        second = (await client.get("/readyz")).json()
        pings_while_slow = pings
        connected.set()
        third = (await client.get("/readyz")).json()
    detail = "degraded: unreachable (no answer yet)"
    assert first["status"] == second["status"] == "ready"
    assert first["checks"]["publisher"].startswith(detail)
    assert second["checks"]["publisher"].startswith(detail)
    assert third["checks"]["publisher"] == "ok"
    assert pings_while_slow == 1  # the second check waited on the first ping
