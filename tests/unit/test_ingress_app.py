"""The ingress app: handshake, every rejection with its status, the durable accept, and the
failure paths behind "nothing lost" (on adapters whose store is down, tests/support/failing)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from adapters.outbox import OutboxPublisher
from tests.support.app import VERIFY, ingress_client, signed, stored_count, tenant
from tests.support.bodies import envelope, messages_value, text_message, two_customers_and_a_status
from tests.support.configs import sqlite_inbox
from tests.support.failing import FailingInbox, FailingPublisher, FailingRateLimiter


async def test_handshake_echoes_the_challenge_as_text(tmp_path: Path) -> None:
    """hub.mode=subscribe with the right token: 200 and the challenge as plain text."""
    async with ingress_client(tmp_path) as (client, _):
        params = {
            "hub.mode": "subscribe",
            "hub.verify_token": VERIFY,
            "hub.challenge": "1158201444",
        }
        response = await client.get("/webhook", params=params)
    assert response.status_code == 200
    assert response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY, "hub.challenge": "1"},
        {"hub.verify_token": VERIFY, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
    ],
)
async def test_handshake_refuses_anything_else(tmp_path: Path, params: dict[str, str]) -> None:
    """Wrong token or mode: 403 with a JSON error, never the challenge."""
    async with ingress_client(tmp_path) as (client, _):
        response = await client.get("/webhook", params=params)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "verification_failed"


async def test_a_signed_delivery_is_stored_item_by_item(tmp_path: Path) -> None:
    """200 only after all three items are in the inbox."""
    raw, headers = signed(two_customers_and_a_status())
    async with ingress_client(tmp_path) as (client, inbox):
        response = await client.post("/webhook", content=raw, headers=headers)
        assert response.status_code == 200
        assert response.json()["items"] == 3
        assert await stored_count(inbox) == 3


@pytest.mark.parametrize(
    ("header", "status", "code"),
    [
        (None, 401, "signature_missing"),
        ("sha256=nothex", 401, "signature_missing"),
        ("sha1=" + "a" * 40, 401, "signature_missing"),
        ("sha256=" + "0" * 64, 403, "signature_mismatch"),
    ],
)
async def test_bad_signatures_store_nothing(
    tmp_path: Path, header: str | None, status: int, code: str
) -> None:
    """Missing/malformed: 401; mismatch: 403; in both cases nothing is stored."""
    raw, headers = signed(two_customers_and_a_status())
    headers.pop("X-Hub-Signature-256")
    if header is not None:
        headers["X-Hub-Signature-256"] = header
    async with ingress_client(tmp_path) as (client, inbox):
        response = await client.post("/webhook", content=raw, headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code)
        assert await stored_count(inbox) == 0


async def test_signed_with_another_tenants_secret_is_refused(tmp_path: Path) -> None:
    """A body naming tenant B's number but signed with tenant A's secret: 403."""
    tenants = [
        tenant("a", ("secret-a",), phone_ids=("111",), default=False),
        tenant("b", ("secret-b",), phone_ids=("222",), default=False, verify="vb"),
    ]
    body = envelope(("messages", messages_value([text_message("m", "1")], phone_number_id="222")))
    raw, headers = signed(body, "secret-a")
    async with ingress_client(tmp_path, tenants) as (client, inbox):
        response = await client.post("/webhook", content=raw, headers=headers)
        assert response.status_code == 403
        assert await stored_count(inbox) == 0
        raw, headers = signed(body, "secret-b")
        assert (await client.post("/webhook", content=raw, headers=headers)).status_code == 200


async def test_an_unowned_number_is_kept_aside_when_there_is_no_default(tmp_path: Path) -> None:
    """Without a default tenant, the changes of a number nobody claims are kept aside (the
    signature is valid): 200, nothing for the shards (tests/unit/test_unowned_numbers.py)."""
    tenants = [tenant("a", phone_ids=("111",), default=False)]
    raw, headers = signed(two_customers_and_a_status())
    async with ingress_client(tmp_path, tenants) as (client, inbox):
        response = await client.post("/webhook", content=raw, headers=headers)
        assert response.status_code == 200
        assert (response.json()["items"], response.json()["unowned"]) == (0, 3)
        assert await stored_count(inbox) == 0


async def test_rotation_accepts_the_old_and_the_new_secret(tmp_path: Path) -> None:
    """Two active secrets: bodies signed with either are accepted (distinct bodies: the
    same body twice would be a duplicate delivery, whichever secret signed it)."""
    tenants = [tenant("a", ("new-secret", "old-secret"))]
    async with ingress_client(tmp_path, tenants) as (client, inbox):
        for secret in ("new-secret", "old-secret"):
            body = envelope(("messages", messages_value([text_message(f"m-{secret}", "1")])))
            raw, headers = signed(body, secret)
            assert (await client.post("/webhook", content=raw, headers=headers)).status_code == 200
        assert await stored_count(inbox) == 2


async def test_per_tenant_path_checks_only_that_tenants_secret(tmp_path: Path) -> None:
    """POST /webhook/{tenant}: the other tenant's secret does not verify; an unknown tenant
    fails the same way (403, tests/unit/test_tenant_path_enumeration.py)."""
    tenants = [tenant("a", ("secret-a",)), tenant("b", ("secret-b",), default=False, verify="x")]
    raw, headers = signed(two_customers_and_a_status(), "secret-b")
    async with ingress_client(tmp_path, tenants) as (client, _):
        assert (await client.post("/webhook/a", content=raw, headers=headers)).status_code == 403
        assert (await client.post("/webhook/zzz", content=raw, headers=headers)).status_code == 403
        raw, headers = signed(two_customers_and_a_status(), "secret-a")
        assert (await client.post("/webhook/a", content=raw, headers=headers)).status_code == 200


async def test_oversized_body_is_413_before_anything_is_stored(tmp_path: Path) -> None:
    """A body over the cap is refused with 413, declared or streamed."""
    raw, headers = signed(two_customers_and_a_status())
    async with ingress_client(tmp_path, max_body_bytes=100) as (client, inbox):
        response = await client.post("/webhook", content=raw, headers=headers)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "body_too_large"

        async def stream() -> object:
            yield raw

        streamed = await client.post("/webhook", content=stream(), headers=headers)  # type: ignore[arg-type]
        assert streamed.status_code == 413
        assert await stored_count(inbox) == 0


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "invalid_json"),
        (orjson.dumps({"object": "page", "entry": []}), "not_a_whatsapp_webhook"),
        (orjson.dumps([1, 2]), "not_a_whatsapp_webhook"),
    ],
)
async def test_signed_garbage_is_400(tmp_path: Path, raw: bytes, code: str) -> None:
    """A genuine signature over a body that is not a WhatsApp webhook: 400, nothing stored."""
    body, headers = signed(raw)
    async with ingress_client(tmp_path) as (client, inbox):
        response = await client.post("/webhook", content=body, headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (400, code)
        assert await stored_count(inbox) == 0


async def test_health_and_readiness(tmp_path: Path) -> None:
    """healthz is alive; readyz checks the inbox; OpenAPI is served at /docs."""
    async with ingress_client(tmp_path) as (client, _):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["inbox"] == "ok"
        assert (await client.get("/docs")).status_code == 200
        assert "/webhook" in (await client.get("/openapi.json")).json()["paths"]


async def test_metrics_count_outcomes_and_items(tmp_path: Path) -> None:
    """/metrics: accepted and rejected POSTs by outcome, items by kind, no numbers as labels."""
    raw, headers = signed(two_customers_and_a_status())
    async with ingress_client(tmp_path) as (client, _):
        await client.post("/webhook", content=raw, headers=headers)
        await client.post("/webhook", content=raw, headers={**headers, "X-Hub-Signature-256": ""})
        text = (await client.get("/metrics")).text
    assert 'wa_webhook_requests_total{outcome="accepted"} 1.0' in text
    assert 'wa_webhook_requests_total{outcome="signature_missing"} 1.0' in text
    assert 'wa_webhook_items_total{kind="message"} 2.0' in text
    assert 'wa_webhook_items_total{kind="status"} 1.0' in text
    assert "wa_inbox_append_duration_seconds_count 1.0" in text
    assert "16505550001" not in text


async def test_an_inbox_outage_is_503_and_metas_retry_is_stored_afterwards(tmp_path: Path) -> None:
    """The append fails: 503 inbox_unavailable, nothing stored and no dedup mark set, so the
    same body retried once the inbox is back is accepted (and only then is a duplicate)."""
    store = sqlite_inbox(tmp_path / "inbox.db")
    inbox = FailingInbox(store)
    raw, headers = signed(two_customers_and_a_status())
    async with ingress_client(tmp_path, inbox=inbox) as (client, _):
        refused = await client.post("/webhook", content=raw, headers=headers)
        assert refused.status_code == 503
        assert refused.json() == {
            "error": {"code": "inbox_unavailable", "message": "try again later"}
        }
        assert inbox.append_attempts == 1
        assert await stored_count(store) == 0

        inbox.down = False
        retried = await client.post("/webhook", content=raw, headers=headers)
        assert (retried.status_code, retried.json()["status"]) == (200, "accepted")
        assert retried.json()["items"] == 3
        assert await stored_count(store) == 3
        again = await client.post("/webhook", content=raw, headers=headers)
        assert again.json() == {"status": "duplicate", "items": 0}
        text = (await client.get("/metrics")).text
    assert 'wa_webhook_requests_total{outcome="inbox_unavailable"} 1.0' in text
    assert 'wa_webhook_requests_total{outcome="accepted"} 1.0' in text


async def test_a_rate_limiter_outage_fails_open_and_is_counted(tmp_path: Path) -> None:
    """The limiter's store is down: the delivery is still accepted and stored, and
    wa_rate_limiter_errors_total counts the failed check."""
    limiter = FailingRateLimiter()
    raw, headers = signed(two_customers_and_a_status())
    async with ingress_client(tmp_path, rate_limiter=limiter) as (client, inbox):
        reply = await client.post("/webhook", content=raw, headers=headers)
        assert (reply.status_code, reply.json()["status"]) == (200, "accepted")
        assert await stored_count(inbox) == 3
        text = (await client.get("/metrics")).text
    assert limiter.hits == 1
    assert "wa_rate_limiter_errors_total 1.0" in text


async def test_readyz_is_503_and_names_each_failing_check(tmp_path: Path) -> None:
    """Inbox and publisher down: 503 not_ready, each check reported with its error type."""
    inbox = FailingInbox(sqlite_inbox(tmp_path / "inbox.db"))
    checks = {"publisher": FailingPublisher().ping}
    async with ingress_client(tmp_path, inbox=inbox, ready_checks=checks) as (client, _):
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "not_ready",
        "checks": {"inbox": "down: TransientError", "publisher": "down: TransientError"},
    }


async def test_readyz_is_503_when_only_another_dependency_is_down(tmp_path: Path) -> None:
    """The inbox answers, the publisher does not: 503, the inbox ok and the publisher named."""
    checks = {"publisher": FailingPublisher().ping}
    async with ingress_client(tmp_path, ready_checks=checks) as (client, _):
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"inbox": "ok", "publisher": "down: TransientError"}


async def test_readyz_is_200_when_every_check_passes(tmp_path: Path) -> None:
    """The inbox and a working publisher answer: 200 ready, every check ok."""
    publisher = OutboxPublisher(tmp_path / "outbox.db")
    checks = {"publisher": publisher.ping}
    try:
        async with ingress_client(tmp_path, ready_checks=checks) as (client, _):
            ready = await client.get("/readyz")
    finally:
        await publisher.close()
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"inbox": "ok", "publisher": "ok"}}
