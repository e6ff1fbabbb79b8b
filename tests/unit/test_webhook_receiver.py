"""Each check of the webhook POST pipeline alone (WebhookReceiver), without the HTTP app:
what it returns when the input is right, which rejection it raises when not, what it counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import Request

from adapters.local_rate_limit import LocalRateLimiter
from adapters.ports import Inbox, RateLimiter
from ingress.batcher import AppendBatcher
from ingress.client_ip import SourcePolicy, parse_address, parse_networks
from ingress.metrics import IngressMetrics
from ingress.receiver import WebhookReceiver
from ingress.rejection import (
    BadContentLength,
    BodyOutOfBounds,
    BodyTimeout,
    BodyTooLarge,
    InboxUnavailable,
    InvalidJson,
    NotAWebhook,
    RateLimited,
    SignatureInvalid,
    SignatureMissing,
    SourceNotAllowed,
    UnsupportedMediaType,
)
from ingress.signature import sign
from models.envelope import DeliveryContext
from models.tenant import TenantDirectory
from tests.support.app import SECRET, tenant
from tests.support.bodies import envelope, messages_value, text_message, two_customers_and_a_status
from tests.support.clock import FixedClock
from tests.support.configs import ingress_config, sqlite_inbox
from tests.support.failing import FailingInbox, FailingRateLimiter

CAP = 100
META = "203.0.113.7"
POLICY = SourcePolicy(
    trusted_proxies=parse_networks(["127.0.0.0/8"]), allowed=parse_networks(["203.0.113.0/24"])
)
CONFIG = ingress_config(
    partitions=2,
    max_body_bytes=CAP,
    max_json_depth=4,
    max_json_array=3,
    body_timeout_s=0.05,
    rate_limit_per_ip=2,
    rate_limit_per_tenant=3,
    source_policy=POLICY,
)
# `a` is the default tenant; `b` owns number 222 and signs with its own secret.
TENANTS = TenantDirectory(
    [tenant("a", (SECRET,)), tenant("b", ("secret-b",), phone_ids=("222",), default=False)]
)


class Built:
    """A receiver and what it was built on."""

    def __init__(self, inbox: Inbox, limiter: RateLimiter | None) -> None:
        self.inbox = inbox
        self.metrics = IngressMetrics()
        self.batcher = AppendBatcher(inbox, linger_s=0.0, max_items=512)
        self.receiver = WebhookReceiver(CONFIG, TENANTS, self.batcher, self.metrics, limiter)

    def count(self, name: str, **labels: str) -> float:
        """A sample of the receiver's registry (0 when never incremented)."""
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def built(tmp_path: Path) -> AsyncIterator[Built]:
    """A receiver on a SQLite inbox and a local limiter whose clock stands still."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    yield Built(inbox, LocalRateLimiter(1, clock=FixedClock()))
    await inbox.close()


def request(
    headers: dict[str, str] | None = None,
    peer: str = META,
    chunks: Iterable[bytes] = (b"",),
    delay_s: float = 0.0,
) -> Request:
    """A POST /webhook as the app would see it: headers, TCP peer, the body in chunks."""
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        if delay_s:
            await asyncio.sleep(delay_s)
        chunk = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/webhook",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": (peer, 40000),
    }
    return Request(scope, receive)


def context() -> DeliveryContext:
    return DeliveryContext("delivery-1", datetime.now(UTC), CONFIG.partitions)


def body_for(phone_number_id: str = "106540352242922") -> Any:
    return envelope(
        ("messages", messages_value([text_message("m", "1")], phone_number_id=phone_number_id))
    )


# --- source allowlist ----------------------------------------------------------------------


def test_admit_source_returns_the_client_and_keeps_it_for_the_logs(built: Built) -> None:
    """An allowed peer is the client; it is kept in request.state."""
    incoming = request(peer=META)
    assert built.receiver.admit_source(incoming) == parse_address(META)
    assert incoming.state.client == parse_address(META)


def test_admit_source_follows_x_forwarded_for_from_a_trusted_proxy(built: Built) -> None:
    """Peer = trusted proxy: the client is the X-Forwarded-For hop it names."""
    incoming = request({"X-Forwarded-For": META}, peer="127.0.0.1")
    assert built.receiver.admit_source(incoming) == parse_address(META)


def test_admit_source_refuses_a_stranger_but_still_records_it(built: Built) -> None:
    """A peer outside the allowlist: SourceNotAllowed (403), its address kept for the log."""
    incoming = request(peer="198.51.100.1")
    with pytest.raises(SourceNotAllowed) as refused:
        built.receiver.admit_source(incoming)
    assert (refused.value.status, refused.value.code) == (403, "source_not_allowed")
    assert incoming.state.client == parse_address("198.51.100.1")


# --- content type and body -----------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON; charset=utf-8", " application/json "]
)
def test_json_content_types_pass(built: Built, content_type: str) -> None:
    """Case and parameters do not matter."""
    built.receiver.check_media_type(content_type)


@pytest.mark.parametrize("content_type", ["", "text/plain", "application/x-www-form-urlencoded"])
def test_other_content_types_are_415(built: Built, content_type: str) -> None:
    """Anything but JSON (or none): UnsupportedMediaType."""
    with pytest.raises(UnsupportedMediaType):
        built.receiver.check_media_type(content_type)


async def test_read_body_joins_the_chunks_and_observes_the_size(built: Built) -> None:
    """Chunks within the cap come back as one body; its size is observed."""
    body = await built.receiver.read_body(request(chunks=[b"ab", b"cd"]))
    assert body == b"abcd"
    assert built.count("wa_webhook_body_bytes_sum") == 4


@pytest.mark.parametrize(
    ("declared", "rejection"),
    [("abc", BadContentLength), ("-1", BadContentLength), (str(CAP + 1), BodyTooLarge)],
)
async def test_a_bad_or_too_large_content_length_is_refused_before_reading(
    built: Built, declared: str, rejection: type[Exception]
) -> None:
    """Content-Length not a number: 400; over the cap: 413; the body is not read."""
    with pytest.raises(rejection):
        await built.receiver.read_body(
            request({"Content-Length": declared}, chunks=[b"x" * (CAP + 1)])
        )


async def test_a_streamed_body_over_the_cap_is_413(built: Built) -> None:
    """No Content-Length, chunks summing past the cap: BodyTooLarge naming the cap."""
    with pytest.raises(BodyTooLarge, match=f"body exceeds {CAP} bytes"):
        await built.receiver.read_body(request(chunks=[b"x" * 60, b"x" * 60]))


async def test_a_body_slower_than_the_deadline_is_408(built: Built) -> None:
    """Chunks arriving after body_timeout_s: BodyTimeout (408 request_timeout)."""
    with pytest.raises(BodyTimeout) as refused:
        await built.receiver.read_body(request(chunks=[b"{", b"}"], delay_s=0.2))
    assert (refused.value.status, refused.value.code) == (408, "request_timeout")


# --- signature -----------------------------------------------------------------------------


def test_verify_names_the_tenants_whose_secret_signed(built: Built) -> None:
    """Signed with b's secret: {"b"}; with the shared default secret: {"a"}."""
    raw = b'{"x":1}'
    assert built.receiver.verify(raw, sign(b"secret-b", raw), None) == {"b"}
    assert built.receiver.verify(raw, sign(SECRET.encode(), raw), None) == {"a"}


@pytest.mark.parametrize(("header", "reason"), [(None, "missing"), ("sha256=zz", "malformed")])
def test_a_missing_or_malformed_signature_is_401_and_counted(
    built: Built, header: str | None, reason: str
) -> None:
    """SignatureMissing; the failure counted with its reason."""
    with pytest.raises(SignatureMissing):
        built.receiver.verify(b"{}", header, None)
    assert built.count("wa_webhook_signature_failures_total", reason=reason) == 1


def test_a_signature_no_candidate_made_is_403_and_counted(built: Built) -> None:
    """A well-formed signature no secret produced: SignatureInvalid (403 signature_mismatch)."""
    with pytest.raises(SignatureInvalid) as refused:
        built.receiver.verify(b"{}", sign(b"nobody", b"{}"), None)
    assert (refused.value.status, refused.value.code) == (403, "signature_mismatch")
    assert built.count("wa_webhook_signature_failures_total", reason="mismatch") == 1


def test_the_tenant_path_checks_only_that_tenants_secrets(built: Built) -> None:
    """On /webhook/a, b's (valid) signature does not verify."""
    with pytest.raises(SignatureInvalid):
        built.receiver.verify(b"{}", sign(b"secret-b", b"{}"), "a")


def test_an_unknown_tenant_path_fails_like_a_wrong_signature(built: Built) -> None:
    """/webhook/zzz: SignatureInvalid counted as a mismatch, whatever secret signed, after
    as many HMACs as any tenant's path (decoys pad every tenant to the widest)."""
    raw = b"{}"
    for secret in (SECRET, "secret-b"):
        with pytest.raises(SignatureInvalid):
            built.receiver.verify(raw, sign(secret.encode(), raw), "zzz")
    assert built.count("wa_webhook_signature_failures_total", reason="mismatch") == 2
    widths = {len(built.receiver.candidates.for_path(t)) for t in ("a", "b", "zzz")}
    assert widths == {built.receiver.candidates.width} == {1}


# --- parse and split -----------------------------------------------------------------------


def test_parse_returns_the_body_within_bounds(built: Built) -> None:
    """Valid JSON within depth 4 and arrays of 3."""
    assert built.receiver.parse(b'{"a":[1,2,3]}') == {"a": [1, 2, 3]}


@pytest.mark.parametrize(
    ("raw", "rejection"),
    [
        (b"{not json", InvalidJson),
        (b"\xff", InvalidJson),
        (b'{"a":[1,2,3,4]}', BodyOutOfBounds),
        (b'{"a":{"b":{"c":{"d":{}}}}}', BodyOutOfBounds),
    ],
)
def test_parse_refuses_garbage_and_out_of_bounds_shapes(
    built: Built, raw: bytes, rejection: type[Exception]
) -> None:
    """Not JSON: InvalidJson; too long an array or too deep: BodyOutOfBounds (both 400)."""
    with pytest.raises(rejection):
        built.receiver.parse(raw)


def test_split_returns_one_item_per_message_and_status(built: Built) -> None:
    """Two customers and a status of the default tenant: three items of tenant a."""
    items = built.receiver.split(two_customers_and_a_status(), context(), {"a"}).items
    assert [i.kind for i in items] == ["message", "message", "status"]
    assert {i.tenant_id for i in items} == {"a"}


def test_split_refuses_a_body_that_is_not_a_webhook(built: Built) -> None:
    """The envelope's own message is the rejection's."""
    with pytest.raises(NotAWebhook, match="'entry' must be a non-empty list"):
        built.receiver.split({"object": "whatsapp_business_account", "entry": []}, context(), {"a"})


def test_split_refuses_a_number_of_a_tenant_that_did_not_sign(built: Built) -> None:
    """Number 222 is b's, only a's secret signed: SignatureInvalid, counted as tenant_mismatch."""
    with pytest.raises(SignatureInvalid):
        built.receiver.split(body_for("222"), context(), {"a"})
    assert built.count("wa_webhook_signature_failures_total", reason="tenant_mismatch") == 1


async def test_split_holds_an_unowned_number_without_a_default_tenant(tmp_path: Path) -> None:
    """No default tenant and nobody owns the number: no item for the shards, the change
    held whole in the unowned partition."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    directory = TenantDirectory([tenant("b", phone_ids=("222",), default=False)])
    receiver = WebhookReceiver(CONFIG, directory, AppendBatcher(inbox, 0.0, 512), IngressMetrics())
    body = body_for("333")
    split = receiver.split(body, context(), {"b"})
    assert (split.items, split.held_items) == ([], 1)
    [held] = split.held
    assert (held.partition, held.held, held.item) == (
        -1,
        "unowned_number",
        body["entry"][0]["changes"][0],
    )
    await inbox.close()


# --- rate limits ---------------------------------------------------------------------------


async def test_limits_count_the_address_and_refuse_past_it(built: Built) -> None:
    """Two per address per window: the third is RateLimited with Retry-After in whole
    seconds (the fixed clock is 0.25 s into a 1 s window: 0.75 s rounds up to 1)."""
    client = parse_address(META)
    await built.receiver.enforce_limits(client, {"a"})
    await built.receiver.enforce_limits(client, {"a"})
    with pytest.raises(RateLimited) as refused:
        await built.receiver.enforce_limits(client, {"a"})
    assert refused.value.headers == {"Retry-After": "1"}
    await built.receiver.enforce_limits(parse_address("203.0.113.8"), {"b"})  # another address


async def test_limits_count_each_tenant_whatever_the_address(built: Built) -> None:
    """Three per tenant: the fourth delivery naming tenant a is refused from a new address."""
    for n in range(3):
        await built.receiver.enforce_limits(parse_address(f"203.0.113.{n + 10}"), {"a"})
    with pytest.raises(RateLimited):
        await built.receiver.enforce_limits(parse_address("203.0.113.99"), {"a", "b"})


async def test_a_failing_limiter_lets_the_request_through_and_is_counted(tmp_path: Path) -> None:
    """The limiter's TransientError is not a rejection: fail open, limiter_errors + 1."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    limiter = FailingRateLimiter()
    failing = Built(inbox, limiter)
    await failing.receiver.enforce_limits(parse_address(META), {"a"})
    assert limiter.hits == 1
    assert failing.count("wa_rate_limiter_errors_total") == 1
    await inbox.close()


async def test_without_a_limiter_nothing_is_limited(tmp_path: Path) -> None:
    """No limiter configured: any number of requests pass."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    unlimited = Built(inbox, None)
    for _ in range(10):
        await unlimited.receiver.enforce_limits(parse_address(META), {"a"})
    await inbox.close()


# --- store and answer ----------------------------------------------------------------------


async def test_store_appends_once_per_body(built: Built) -> None:
    """True when stored, False for the same body again; the append time is observed."""
    raw = orjson.dumps(two_customers_and_a_status())
    items = built.receiver.split(orjson.loads(raw), context(), {"a"}).items
    assert await built.receiver.store(raw, items, context()) is True
    assert await built.receiver.store(raw, items, context()) is False
    assert built.count("wa_inbox_append_duration_seconds_count") == 2


async def test_store_on_a_failing_inbox_is_503_and_marks_nothing(tmp_path: Path) -> None:
    """InboxUnavailable while the inbox is down; once it is back the same body is new."""
    store = sqlite_inbox(tmp_path / "inbox.db")
    inbox = FailingInbox(store)
    failing = Built(inbox, None)
    raw = orjson.dumps(two_customers_and_a_status())
    items = failing.receiver.split(orjson.loads(raw), context(), {"a"}).items
    with pytest.raises(InboxUnavailable) as refused:
        await failing.receiver.store(raw, items, context())
    assert (refused.value.status, refused.value.code) == (503, "inbox_unavailable")
    assert failing.count("wa_inbox_append_duration_seconds_count") == 0
    inbox.down = False
    assert await failing.receiver.store(raw, items, context()) is True
    await inbox.close()


def test_answer_accepted_counts_the_items_by_kind(built: Built) -> None:
    """accepted: the delivery id and item count; items counted by kind."""
    split = built.receiver.split(two_customers_and_a_status(), context(), {"a"})
    reply = built.receiver.answer(True, split, context(), None, 0.0)
    assert orjson.loads(reply.body) == {
        "status": "accepted",
        "delivery_id": "delivery-1",
        "items": 3,
    }
    assert built.count("wa_webhook_items_total", kind="message") == 2
    assert built.count("wa_webhook_requests_total", outcome="accepted") == 1


def test_answer_duplicate_is_200_with_no_items(built: Built) -> None:
    """duplicate: 200, items 0, counted as a duplicate delivery."""
    split = built.receiver.split(two_customers_and_a_status(), context(), {"a"})
    reply = built.receiver.answer(False, split, context(), None, 0.0)
    assert (reply.status_code, orjson.loads(reply.body)) == (
        200,
        {"status": "duplicate", "items": 0},
    )
    assert built.count("wa_webhook_duplicate_deliveries_total") == 1
    assert built.count("wa_webhook_requests_total", outcome="duplicate") == 1
