"""Memory held by bodies whose signature is not checked yet (issue 9, point 5): one byte
budget per replica, charged as the chunks arrive and released once the signature is
checked or on any other way out; past it, 503 overloaded with Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import ClientDisconnect, Request

from adapters.ports import Delivery, Inbox
from ingress.batcher import AppendBatcher
from ingress.metrics import IngressMetrics
from ingress.receiver import WebhookReceiver
from ingress.rejection import (
    BadContentLength,
    BodyTimeout,
    BodyTooLarge,
    Overloaded,
    SignatureInvalid,
    SignatureMissing,
)
from ingress.unverified import UnverifiedBudget
from models.tenant import TenantDirectory
from tests.support.app import SECRET, ingress_client, signed, tenant
from tests.support.bodies import two_customers_and_a_status
from tests.support.configs import ingress_config, sqlite_inbox
from tests.support.failing import FailingInbox

MIB = 1 << 20


async def test_past_the_default_budget_a_body_is_503_and_the_budget_comes_back(
    tmp_path: Path,
) -> None:
    """16 bodies of 4 MiB held mid-stream fill the default 64 MiB; a 17th is 503 overloaded
    with Retry-After before it is buffered; once the 16 finish, a body is read again."""
    gate = asyncio.Event()
    started = asyncio.Semaphore(0)

    async def held_body() -> AsyncIterator[bytes]:
        yield b" " * (4 * MIB - 16)
        started.release()
        await gate.wait()
        yield b"{}"

    raw, headers = signed(b"{}")
    async with ingress_client(tmp_path) as (client, _):
        holders = [
            asyncio.create_task(client.post("/webhook", content=held_body(), headers=headers))
            for _ in range(16)
        ]
        for _ in holders:
            await asyncio.wait_for(started.acquire(), 5)
        refused = await client.post("/webhook", content=b" " * MIB + raw, headers=headers)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "overloaded"
        assert refused.headers["retry-after"] == "1"
        gate.set()
        finished = await asyncio.gather(*holders)
        assert {r.status_code for r in finished} == {403}  # the bodies were read, then checked
        metrics = (await client.get("/metrics")).text
        assert "wa_webhook_unverified_bytes 0.0" in metrics
        assert 'wa_webhook_requests_total{outcome="overloaded"} 1.0' in metrics
        again = await client.post("/webhook", content=b" " * MIB + raw, headers=headers)
        assert again.status_code == 403


# --- every way out of the read gives the budget back (the receiver alone) --------------------

LIMIT = 1_000


class Incoming:
    """A POST /webhook as the app sees it: chunks arrive one per receive(); None in the
    chunks is the client going away; `pause` awaits an event before the next chunk."""

    def __init__(
        self,
        chunks: list[bytes | None],
        headers: dict[str, str] | None = None,
        pause: asyncio.Event | None = None,
        delay_s: float = 0.0,
    ) -> None:
        self.pending = list(chunks)
        self.received = 0
        self.delivered = asyncio.Event()  # set once the first chunk was handed over
        self.pause = pause
        self.delay_s = delay_s
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/webhook",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            "client": ("203.0.113.7", 40000),
        }
        self.request = Request(scope, self.receive)

    async def receive(self) -> dict[str, Any]:
        if self.received and self.pause is not None:
            await self.pause.wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.received += 1
        self.delivered.set()
        chunk = self.pending.pop(0) if self.pending else b""
        if chunk is None:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunk, "more_body": bool(self.pending)}


class SlowInbox(FailingInbox):
    """A working inbox whose appends wait until `go` is set (to look inside a request)."""

    def __init__(self, inner: Inbox) -> None:
        super().__init__(inner, down=False)
        self.go = asyncio.Event()
        self.appending = asyncio.Event()

    async def append_deliveries(self, deliveries: Sequence[Delivery]) -> list[bool]:
        self.appending.set()
        await self.go.wait()
        return await super().append_deliveries(deliveries)


@pytest.fixture
async def inbox(tmp_path: Path) -> AsyncIterator[SlowInbox]:
    store = SlowInbox(sqlite_inbox(tmp_path / "inbox.db"))
    yield store
    await store.close()


def receiver(inbox: Inbox, limit: int = LIMIT, cap: int = 600) -> WebhookReceiver:
    config = ingress_config(
        partitions=2, max_body_bytes=cap, body_timeout_s=0.2, max_unverified_bytes=limit
    )
    directory = TenantDirectory([tenant()])
    return WebhookReceiver(config, directory, AppendBatcher(inbox, 0.0, 512), IngressMetrics())


def signed_chunks(body: bytes, secret: str = SECRET) -> tuple[list[bytes | None], dict[str, str]]:
    raw, headers = signed(body, secret)
    return [raw[:10], raw[10:]], headers


async def test_the_budget_is_free_once_the_signature_is_checked(inbox: SlowInbox) -> None:
    """Verified: nothing is held while the items are being stored, nor after the 200."""
    sut = receiver(inbox, limit=2_000, cap=2_000)
    chunks, headers = signed_chunks(orjson.dumps(two_customers_and_a_status()))
    task = asyncio.create_task(sut.receive(Incoming(chunks, headers).request, None))
    await asyncio.wait_for(inbox.appending.wait(), 5)
    assert sut.budget.in_use == 0
    inbox.go.set()
    assert (await task).status_code == 200
    assert sut.budget.in_use == 0


@pytest.mark.parametrize(
    ("secret", "header", "rejection"),
    [("nope", None, SignatureInvalid), (SECRET, "", SignatureMissing)],
)
async def test_a_refused_signature_gives_the_budget_back(
    inbox: SlowInbox, secret: str, header: str | None, rejection: type[Exception]
) -> None:
    """Wrong or missing signature: refused, nothing held."""
    sut = receiver(inbox)
    chunks, headers = signed_chunks(b'{"x": 1}', secret)
    if header is not None:
        headers["X-Hub-Signature-256"] = header
    with pytest.raises(rejection):
        await sut.receive(Incoming(chunks, headers).request, None)
    assert sut.budget.in_use == 0


@pytest.mark.parametrize(
    ("incoming", "rejection"),
    [
        (lambda: Incoming([b"x" * 400, b"x" * 400], {}), BodyTooLarge),
        (lambda: Incoming([b"x" * 10, b"x"], {}, delay_s=0.15), BodyTimeout),
        (lambda: Incoming([b"x" * 100, None], {}), ClientDisconnect),
        (lambda: Incoming([b"x" * 700], {"Content-Length": "700"}), BodyTooLarge),
        (lambda: Incoming([b"x"], {"Content-Length": "1x"}), BadContentLength),
    ],
    ids=["streamed_too_large", "deadline", "client_disconnect", "declared_too_large", "bad_length"],
)
async def test_every_failed_read_gives_the_budget_back(
    inbox: SlowInbox, incoming: Any, rejection: type[Exception]
) -> None:
    """Too large (streamed or declared), too slow, client gone, bad length: nothing held."""
    sut = receiver(inbox)
    with pytest.raises(rejection):
        await sut.read_body(incoming().request)
    assert sut.budget.in_use == 0


async def test_a_cancelled_read_gives_the_budget_back(inbox: SlowInbox) -> None:
    """The request task cancelled mid-body (server shutdown, HAProxy gone): nothing held."""
    sut = receiver(inbox)
    pause = asyncio.Event()
    incoming = Incoming([b"x" * 300, b"y"], {"Content-Type": "application/json"}, pause)
    task = asyncio.create_task(sut.receive(incoming.request, None))
    await asyncio.wait_for(incoming.delivered.wait(), 5)
    await asyncio.sleep(0.01)  # the chunk is charged, the read waits for the next one
    assert sut.budget.in_use == 300
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sut.budget.in_use == 0


async def test_past_the_budget_mid_stream_is_503_and_the_partial_charge_is_returned(
    inbox: SlowInbox,
) -> None:
    """One body holds 600 of 1,000 bytes; another streams 300 then 300 more: Overloaded
    (503 + Retry-After 1) at its second chunk, its 300 given back, the first's kept."""
    sut = receiver(inbox)
    pause = asyncio.Event()
    holder = Incoming([b" " * 300, b" " * 300, b"{}"], pause=pause)
    with sut.budget.hold() as held:
        held.charge(600)
        with pytest.raises(Overloaded) as refused:
            await sut.read_body(Incoming([b" " * 300, b" " * 300]).request)
        assert sut.budget.in_use == 600
    assert (refused.value.status, refused.value.code) == (503, "overloaded")
    assert refused.value.headers == {"Retry-After": "1"}
    assert sut.budget.in_use == 0
    assert holder.received == 0


async def test_a_declared_length_that_cannot_fit_is_refused_before_reading(
    inbox: SlowInbox,
) -> None:
    """500 of 1,000 bytes held, a body declaring 501: Overloaded without reading a chunk."""
    sut = receiver(inbox)
    incoming = Incoming([b" " * 501], {"Content-Length": "501"})
    with sut.budget.hold() as held:
        held.charge(500)
        with pytest.raises(Overloaded):
            await sut.read_body(incoming.request)
    assert incoming.received == 0
    assert sut.budget.in_use == 0


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 2_000),
    st.lists(st.lists(st.integers(1, 400), min_size=1, max_size=5), min_size=1, max_size=6),
)
def test_the_budget_is_never_exceeded_and_always_returned(
    limit: int, bodies: list[list[int]]
) -> None:
    """Concurrent bodies of arbitrary chunks against an arbitrary budget: the bytes held never
    exceed it, a body is refused only when its next chunk would not fit, nothing is held
    after the last request ends."""

    async def scenario() -> None:
        budget = UnverifiedBudget(limit)
        peak = 0

        async def one(sizes: list[int]) -> bool:
            nonlocal peak
            with budget.hold() as hold:
                for size in sizes:
                    fits = budget.in_use + size <= limit
                    try:
                        hold.charge(size)
                    except Overloaded:
                        assert not fits
                        return False
                    assert fits
                    peak = max(peak, budget.in_use)
                    await asyncio.sleep(0)
            return True

        await asyncio.gather(*(one(sizes) for sizes in bodies))
        assert peak <= limit
        assert budget.in_use == 0

    asyncio.run(scenario())
