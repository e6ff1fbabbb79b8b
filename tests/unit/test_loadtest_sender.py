"""Meta-style sending: retries with backoff on non-200, through an in-memory transport."""

from __future__ import annotations

import random

import httpx

from loadtest.clients import httpx_poster
from loadtest.sender import MetaSender, RetryPolicy
from loadtest.traffic import Delivery

DELIVERY = Delivery("t", b'{"object":"x"}', "sha256=" + "0" * 64, ("w1",), "new")


def test_backoff_grows_and_is_capped() -> None:
    """Delays double from base and stop at max_s; jitter stays within its bounds."""
    policy = RetryPolicy(base_s=0.5, factor=2, max_s=3, jitter=0)
    rng = random.Random(1)
    assert [policy.delay(n, rng) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    jittered = RetryPolicy(base_s=1, jitter=0.2)
    assert all(0.8 <= jittered.delay(1, rng) <= 1.2 for _ in range(100))


async def test_non_200_is_retried_until_acked() -> None:
    """503 then 200: two attempts, acked, the same bytes and signature both times."""
    seen: list[tuple[bytes, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.content, request.headers["x-hub-signature-256"]))
        return httpx.Response(503 if len(seen) == 1 else 200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        sender = MetaSender(httpx_poster(client), "http://sim/webhook", RetryPolicy(base_s=0.001))
        result = await sender.send(DELIVERY, scheduled=0.0)
    assert [a.outcome for a in result.attempts] == ["503", "200"]
    assert result.acked
    assert seen == [(DELIVERY.body, DELIVERY.signature)] * 2


async def test_gives_up_after_max_attempts() -> None:
    """A server that always fails gets max_attempts tries and the delivery is not acked."""
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        sender = MetaSender(
            httpx_poster(client), "http://sim/webhook", RetryPolicy(3, base_s=0.001)
        )
        result = await sender.send(DELIVERY, scheduled=0.0)
    assert calls == 3
    assert not result.acked
    assert {a.outcome for a in result.attempts} == {"connect_error"}
