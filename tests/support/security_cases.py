"""The bad inputs of the security suite: forged, replayed, oversized, malformed, spoofed,
flooded, unauthorized. Each case may first do something legitimate (`setup`), then sends
one bad request (`attack`) whose status and error code are stated."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from ingress.signature import sign
from tests.support.app import SECRET, VERIFY, signed
from tests.support.bodies import envelope, messages_value, status, text_message
from tests.support.security import ADMIN_TOKEN, OTHER_PHONE, OTHER_SECRET, PER_IP, PER_TENANT, Stack

Step = Callable[[Stack], Awaitable[httpx.Response]]
Setup = Callable[[Stack], Awaitable[object]]
NOW = int(time.time())


def body(wamid: str = "wamid.SEC1", sender: str = "16505550123", ts: int = NOW) -> dict[str, Any]:
    """A fresh one-message delivery."""
    return envelope(("messages", messages_value([text_message(wamid, sender, "hello", ts)])))


async def post(
    stack: Stack,
    raw: bytes | Any,
    headers: dict[str, str],
    path: str = "/webhook",
    peer: str = "203.0.113.7",
) -> httpx.Response:
    """POST raw bytes (or an async iterator of chunks) from `peer`."""
    return await stack.client(peer).post(path, content=raw, headers=headers)


async def post_signed(
    stack: Stack, data: Any, secret: str = SECRET, path: str = "/webhook", **kw: Any
) -> httpx.Response:
    """POST a body signed with `secret`."""
    raw, headers = signed(data, secret)
    return await post(stack, raw, {**headers, **kw.pop("headers", {})}, path, **kw)


def with_signature(header: str | None) -> Step:
    async def attack(stack: Stack) -> httpx.Response:
        raw, headers = signed(body())
        headers.pop("X-Hub-Signature-256")
        if header is not None:
            headers["X-Hub-Signature-256"] = header
        return await post(stack, raw, headers)

    return attack


def signed_raw(raw: bytes, content_type: str | None = "application/json") -> Step:
    async def attack(stack: Stack) -> httpx.Response:
        headers = {"X-Hub-Signature-256": sign(SECRET.encode(), raw)}
        if content_type is not None:
            headers["Content-Type"] = content_type
        return await post(stack, raw, headers)

    return attack


async def tampered(stack: Stack) -> httpx.Response:
    raw, headers = signed(body())
    return await post(stack, raw.replace(b"hello", b"hellO"), headers)


async def other_tenants_number_with_acme_secret(stack: Stack) -> httpx.Response:
    data = envelope(
        ("messages", messages_value([text_message("wamid.X", "1")], phone_number_id=OTHER_PHONE))
    )
    return await post_signed(stack, data, SECRET)


async def tenant_path_with_other_secret(stack: Stack) -> httpx.Response:
    return await post_signed(stack, body(), OTHER_SECRET, path="/webhook/acme")


async def unknown_tenant_path(stack: Stack) -> httpx.Response:
    return await post_signed(stack, body(), SECRET, path="/webhook/nobody")


async def unknown_tenant_path_from_stranger(stack: Stack) -> httpx.Response:
    return await post_signed(stack, body(), SECRET, path="/webhook/nobody", peer="198.51.100.7")


def many_items(count: int, per_change: int = 1_000) -> bytes:
    """`count` minimal statuses in changes of at most `per_change` (the stack's array bound)."""
    sizes = [min(per_change, count - start) for start in range(0, count, per_change)]
    return orjson.dumps(envelope(*(("messages", {"statuses": [{}] * size}) for size in sizes)))


def shared_contact(messages: int, name_bytes: int) -> bytes:
    """One contact with a `name_bytes` name shared by `messages` tiny messages."""
    contact = {"profile": {"name": "x" * name_bytes}, "wa_id": "16505550123"}
    tiny = [{"from": "16505550123", "id": f"m{n}"} for n in range(messages)]
    return orjson.dumps(envelope(("messages", messages_value(tiny, contacts=[contact]))))


async def deliver_once(stack: Stack) -> httpx.Response:
    response = await post_signed(stack, body())
    assert response.status_code == 200, response.text
    return response


async def same_body_again(stack: Stack) -> httpx.Response:
    return await post_signed(stack, body())


async def same_body_on_tenant_path(stack: Stack) -> httpx.Response:
    return await post_signed(stack, body(), path="/webhook/acme")


async def same_body_rotated_secret(stack: Stack) -> httpx.Response:
    return await post_signed(stack, body(), "acme-previous-secret")


async def same_wamid_other_envelope(stack: Stack) -> httpx.Response:
    data = body()
    data["entry"][0]["changes"][0]["value"]["contacts"][0]["profile"]["name"] = "Someone Else"
    return await post_signed(stack, data)


async def deliver_status(stack: Stack) -> httpx.Response:
    data = envelope(
        ("messages", messages_value(statuses=[status("wamid.OUT9", "1650555", ts=NOW)]))
    )
    response = await post_signed(stack, data)
    assert response.status_code == 200
    return response


async def same_status_other_envelope(stack: Stack) -> httpx.Response:
    data = envelope(
        ("messages", messages_value(statuses=[status("wamid.OUT9", "1650555", ts=NOW)])),
        ("account_update", {"event": "VERIFIED_ACCOUNT"}),
    )
    data["entry"][0]["changes"] = data["entry"][0]["changes"][:1]
    data["entry"][0]["id"] = "another-entry-id"
    return await post_signed(stack, data)


async def thirty_days_old(stack: Stack) -> httpx.Response:
    return await post_signed(stack, body("wamid.OLD", ts=NOW - 30 * 86400))


async def declared_too_large(stack: Stack) -> httpx.Response:
    raw, headers = signed(body())
    return await post(stack, raw, {**headers, "Content-Length": str(10**9)})


async def streamed_too_large(stack: Stack) -> httpx.Response:
    raw, headers = signed(b"{" + b" " * 70_000 + b"}")

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 8192):
            yield raw[start : start + 8192]

    return await post(stack, chunks(), headers)


async def bad_content_length(stack: Stack) -> httpx.Response:
    raw, headers = signed(body())
    return await post(stack, raw, {**headers, "Content-Length": "12abc"})


def deep(depth: int) -> bytes:
    nested: Any = "x"
    for _ in range(depth):
        nested = {"n": nested}
    data = body()
    data["entry"][0]["changes"][0]["value"]["messages"][0]["extra"] = nested
    return orjson.dumps(data)


def long_array(length: int) -> bytes:
    data = body()
    data["entry"][0]["changes"][0]["value"]["messages"][0]["extra"] = list(range(length))
    return orjson.dumps(data)


async def slow_body(stack: Stack) -> httpx.Response:
    raw, headers = signed(body())

    async def trickle() -> AsyncIterator[bytes]:
        yield raw[:10]
        await asyncio.sleep(1.5)
        yield raw[10:]

    return await post(stack, trickle(), headers)


def from_peer(peer: str, forwarded_for: str | None = None) -> Step:
    async def attack(stack: Stack) -> httpx.Response:
        headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
        return await post_signed(stack, body(), peer=peer, headers=headers)

    return attack


def handshake(params: dict[str, str], peer: str = "203.0.113.7") -> Step:
    async def attack(stack: Stack) -> httpx.Response:
        return await stack.client(peer).get("/webhook", params=params)

    return attack


def hs(
    token: str = VERIFY, mode: str = "subscribe", challenge: str = "1158201444"
) -> dict[str, str]:
    return {"hub.mode": mode, "hub.verify_token": token, "hub.challenge": challenge}


async def fill_ip_limit(stack: Stack) -> None:
    for n in range(PER_IP):
        ok = await post_signed(stack, body(f"wamid.F{n}"))
        assert ok.status_code == 200, ok.text


async def one_more(stack: Stack) -> httpx.Response:
    return await post_signed(stack, body("wamid.over"), peer="203.0.113.99")


async def one_more_same_ip(stack: Stack) -> httpx.Response:
    return await post_signed(stack, body("wamid.over"))


async def fill_tenant_limit(stack: Stack) -> None:
    for n in range(PER_TENANT):  # spread over addresses: only the tenant's limit trips
        ok = await post_signed(stack, body(f"wamid.T{n}"), peer=f"203.0.113.{10 + n}")
        assert ok.status_code == 200, ok.text


def admin_get(headers: dict[str, str], path: str = "/admin/tenants") -> Step:
    async def attack(stack: Stack) -> httpx.Response:
        return await stack.client("10.1.2.3").get(path, headers=headers)

    return attack


@dataclass(frozen=True)
class Case:
    """One bad input and its answer."""

    id: str
    kind: str
    attack: Step
    status: int
    code: str | None
    setup: Setup | None = None
    admin: bool = True


CASES: list[Case] = [
    Case("no_signature", "forged", with_signature(None), 401, "signature_missing"),
    Case("empty_signature", "forged", with_signature(""), 401, "signature_missing"),
    Case("sha1_signature", "forged", with_signature("sha1=" + "a" * 40), 401, "signature_missing"),
    Case(
        "non_hex_signature",
        "forged",
        with_signature("sha256=" + "g" * 64),
        401,
        "signature_missing",
    ),
    Case(
        "short_signature", "forged", with_signature("sha256=" + "a" * 63), 401, "signature_missing"
    ),
    Case(
        "zero_signature", "forged", with_signature("sha256=" + "0" * 64), 403, "signature_mismatch"
    ),
    Case(
        "wrong_secret",
        "forged",
        with_signature(sign(b"guess", orjson.dumps(body()))),
        403,
        "signature_mismatch",
    ),
    Case("tampered_body", "forged", tampered, 403, "signature_mismatch"),
    Case(
        "other_tenants_number",
        "forged",
        other_tenants_number_with_acme_secret,
        403,
        "signature_mismatch",
    ),
    Case(
        "tenant_path_other_secret",
        "forged",
        tenant_path_with_other_secret,
        403,
        "signature_mismatch",
    ),
    Case("unknown_tenant_path", "forged", unknown_tenant_path, 403, "signature_mismatch"),
    Case(
        "unknown_tenant_path_from_stranger",
        "spoofed",
        unknown_tenant_path_from_stranger,
        403,
        "source_not_allowed",
    ),
    Case("same_body_again", "replayed", same_body_again, 200, "duplicate", deliver_once),
    Case(
        "same_body_tenant_path",
        "replayed",
        same_body_on_tenant_path,
        200,
        "duplicate",
        deliver_once,
    ),
    Case(
        "same_body_rotated_secret",
        "replayed",
        same_body_rotated_secret,
        200,
        "duplicate",
        deliver_once,
    ),
    Case(
        "same_wamid_new_envelope",
        "replayed",
        same_wamid_other_envelope,
        200,
        "accepted",
        deliver_once,
    ),
    Case(
        "same_status_new_envelope",
        "replayed",
        same_status_other_envelope,
        200,
        "accepted",
        deliver_status,
    ),
    Case("item_30_days_old", "replayed", thirty_days_old, 200, "accepted"),
    Case("declared_too_large", "oversized", declared_too_large, 413, "body_too_large"),
    Case("streamed_too_large", "oversized", streamed_too_large, 413, "body_too_large"),
    Case("bad_content_length", "oversized", bad_content_length, 400, "bad_content_length"),
    Case("nested_too_deep", "oversized", signed_raw(deep(40)), 400, "body_out_of_bounds"),
    Case("array_too_long", "oversized", signed_raw(long_array(5_000)), 400, "body_out_of_bounds"),
    Case("slow_body", "oversized", slow_body, 408, "request_timeout"),
    Case("too_many_items", "oversized", signed_raw(many_items(5_001)), 413, "too_many_items"),
    Case(
        "shared_contact_amplified",
        "oversized",
        signed_raw(shared_contact(1_000, 20_000)),
        413,
        "delivery_too_large",
    ),
    Case("invalid_json", "malformed", signed_raw(b"{not json"), 400, "invalid_json"),
    Case("invalid_utf8", "malformed", signed_raw(b'{"entry": "\xff\xfe"}'), 400, "invalid_json"),
    Case("nan_literal", "malformed", signed_raw(b'{"entry": NaN}'), 400, "invalid_json"),
    Case("top_level_array", "malformed", signed_raw(b"[1, 2]"), 400, "not_a_whatsapp_webhook"),
    Case(
        "other_object",
        "malformed",
        signed_raw(b'{"object": "page", "entry": [{"changes": []}]}'),
        400,
        "not_a_whatsapp_webhook",
    ),
    Case(
        "empty_entry",
        "malformed",
        signed_raw(b'{"object": "whatsapp_business_account", "entry": []}'),
        400,
        "not_a_whatsapp_webhook",
    ),
    Case(
        "change_without_field",
        "malformed",
        signed_raw(b'{"entry": [{"changes": [{"value": {}}]}]}'),
        400,
        "not_a_whatsapp_webhook",
    ),
    Case(
        "text_plain",
        "malformed",
        signed_raw(orjson.dumps(body()), "text/plain"),
        415,
        "unsupported_media_type",
    ),
    Case(
        "form_encoded",
        "malformed",
        signed_raw(orjson.dumps(body()), "application/x-www-form-urlencoded"),
        415,
        "unsupported_media_type",
    ),
    Case(
        "no_content_type",
        "malformed",
        signed_raw(orjson.dumps(body()), None),
        415,
        "unsupported_media_type",
    ),
    Case("stranger_ipv4", "spoofed", from_peer("198.51.100.7"), 403, "source_not_allowed"),
    Case("stranger_ipv6", "spoofed", from_peer("2001:db9::1"), 403, "source_not_allowed"),
    Case(
        "stranger_claims_meta_in_xff",
        "spoofed",
        from_peer("198.51.100.7", "203.0.113.7"),
        403,
        "source_not_allowed",
    ),
    Case(
        "xff_prepended_through_proxy",
        "spoofed",
        from_peer("10.0.0.5", "203.0.113.7, 198.51.100.7"),
        403,
        "source_not_allowed",
    ),
    Case(
        "garbage_xff_through_proxy",
        "spoofed",
        from_peer("127.0.0.1", "not-an-ip"),
        403,
        "source_not_allowed",
    ),
    Case("proxy_without_xff", "spoofed", from_peer("10.0.0.5"), 403, "source_not_allowed"),
    Case(
        "handshake_from_stranger",
        "spoofed",
        handshake(hs(), "198.51.100.7"),
        403,
        "source_not_allowed",
    ),
    Case(
        "handshake_wrong_token", "forged", handshake(hs(token="wrong")), 403, "verification_failed"
    ),
    Case("handshake_empty_token", "forged", handshake(hs(token="")), 403, "verification_failed"),
    Case(
        "handshake_unsubscribe",
        "forged",
        handshake(hs(mode="unsubscribe")),
        403,
        "verification_failed",
    ),
    Case(
        "handshake_html_challenge",
        "forged",
        handshake(hs(challenge="<script>x</script>")),
        403,
        "verification_failed",
    ),
    Case("flood_one_ip", "flooded", one_more_same_ip, 429, "rate_limited", fill_ip_limit),
    Case("flood_one_tenant", "flooded", one_more, 429, "rate_limited", fill_tenant_limit),
    Case("admin_no_token", "unauthorized", admin_get({}), 401, "unauthorized"),
    Case(
        "admin_wrong_token",
        "unauthorized",
        admin_get({"Authorization": "Bearer nope"}),
        401,
        "unauthorized",
    ),
    Case(
        "admin_basic_scheme",
        "unauthorized",
        admin_get({"Authorization": f"Basic {ADMIN_TOKEN}"}),
        401,
        "unauthorized",
    ),
    Case(
        "admin_app_secret_as_token",
        "unauthorized",
        admin_get({"Authorization": f"Bearer {SECRET}"}),
        401,
        "unauthorized",
    ),
    Case(
        "admin_disabled",
        "unauthorized",
        admin_get({"Authorization": f"Bearer {ADMIN_TOKEN}"}),
        404,
        None,
        admin=False,
    ),
]


async def run_case(stack: Stack, case: Case) -> None:
    """Setup, then the attack: its status and code, nothing stored, nothing published."""
    if case.setup is not None:
        await case.setup(stack)
    await stack.drain()
    published_before = stack.normal_events()
    response = await case.attack(stack)
    assert response.status_code == case.status, response.text
    if case.status == 200:
        assert response.json()["status"] == case.code
    elif case.code is not None:
        assert response.json() == {
            "error": {"code": case.code, "message": response.json()["error"]["message"]}
        }
    if case.status == 429:
        assert 1 <= int(response.headers["retry-after"]) <= 60
    if case.code != "accepted":
        assert await stack.backlog() == 0, "a rejected or duplicate request stored something"
    await stack.drain()
    assert stack.normal_events() == published_before, "a bad input produced an event"
