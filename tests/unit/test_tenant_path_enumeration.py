"""POST /webhook/{tenant_id} for a tenant that is not configured (issue 9, point 9): the
allowlist runs first, and the answer is the one a wrong signature gets, in status, body,
headers and (as far as one HMAC per candidate secret makes it) time."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx

from tests.support.app import SECRET, VERIFY, ingress_client, signed, tenant
from tests.support.security import security_stack
from tests.support.security_cases import body, post, post_signed


def _answer(reply: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
    return reply.status_code, reply.content, dict(reply.headers)


async def test_an_unknown_tenant_path_answers_like_a_wrong_signature(tmp_path: Path) -> None:
    """Same status, body bytes and headers as a known tenant's path with a wrong secret."""
    async with security_stack(tmp_path, "embedded") as stack:
        unknown = await post_signed(stack, body(), SECRET, path="/webhook/nobody")
        wrong = await post_signed(stack, body(), "not-the-secret", path="/webhook/acme")
        assert _answer(unknown) == _answer(wrong)
        assert unknown.json()["error"]["code"] == "signature_mismatch"
        assert await stack.backlog() == 0


async def test_an_unknown_tenant_path_without_signature_is_401_like_a_known_one(
    tmp_path: Path,
) -> None:
    """No X-Hub-Signature-256: 401 signature_missing on either path."""
    raw, headers = signed(body())
    del headers["X-Hub-Signature-256"]
    async with security_stack(tmp_path, "embedded") as stack:
        unknown = await post(stack, raw, headers, path="/webhook/nobody")
        known = await post(stack, raw, headers, path="/webhook/acme")
    assert _answer(unknown) == _answer(known)
    assert unknown.status_code == 401


async def test_the_allowlist_runs_before_the_tenant_path(tmp_path: Path) -> None:
    """From outside the allowlist: 403 source_not_allowed, whether the tenant exists or not."""
    async with security_stack(tmp_path, "embedded") as stack:
        stranger = "198.51.100.7"
        unknown = await post_signed(stack, body(), path="/webhook/nobody", peer=stranger)
        known = await post_signed(stack, body(), path="/webhook/acme", peer=stranger)
    assert _answer(unknown) == _answer(known)
    assert unknown.json()["error"]["code"] == "source_not_allowed"


async def test_an_unknown_tenant_path_takes_as_long_as_a_wrong_signature(tmp_path: Path) -> None:
    """A 1 MiB body: the unknown path reads it and computes as many HMACs as a known tenant's
    path, so the median times are close (before: 404 without reading, ~100x faster)."""
    raw, headers = signed(b'{"x":"' + b"a" * (1 << 20) + b'"}', "not-the-secret")
    durations: dict[str, list[float]] = {"/webhook/nobody": [], "/webhook/acme": []}
    tenants = [tenant("acme", (SECRET, "acme-previous-secret"))]
    async with ingress_client(tmp_path, tenants) as (client, _):
        for _ in range(15):
            for path, samples in durations.items():
                started = time.perf_counter()
                reply = await client.post(path, content=raw, headers=headers)
                samples.append(time.perf_counter() - started)
                assert reply.status_code == 403
    unknown, known = (statistics.median(s) for s in durations.values())
    assert 0.5 < unknown / known < 2.0, (unknown, known)


async def test_the_handshake_of_an_unknown_tenant_fails_like_a_wrong_token(
    tmp_path: Path,
) -> None:
    """GET /webhook/nobody with acme's verify token: the answer a wrong token gets on acme's
    path (the unknown tenant is compared against a decoy)."""
    params = {"hub.mode": "subscribe", "hub.challenge": "1158201444"}
    async with security_stack(tmp_path, "embedded") as stack:
        client = stack.client()
        unknown = await client.get("/webhook/nobody", params={**params, "hub.verify_token": VERIFY})
        wrong = await client.get("/webhook/acme", params={**params, "hub.verify_token": "nope"})
        right = await client.get("/webhook/acme", params={**params, "hub.verify_token": VERIFY})
    assert _answer(unknown) == _answer(wrong)
    assert unknown.json()["error"]["code"] == "verification_failed"
    assert (right.status_code, right.text) == (200, "1158201444")
