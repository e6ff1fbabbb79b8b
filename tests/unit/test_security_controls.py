"""The positive side of the security checks: what a genuine Meta delivery, an operator with
the admin token and the shards' replay quarantine see."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from ingress.app import IngressDeps, create_app
from models.tenant import TenantDirectory
from tests.support.app import SECRET, VERIFY, tenant
from tests.support.configs import ingress_config
from tests.support.security import ADMIN_TOKEN, security_stack
from tests.support.security_cases import NOW, body, post_signed


async def test_meta_through_a_trusted_proxy_is_accepted(tmp_path: Path) -> None:
    """Peer = loopback proxy, X-Forwarded-For = Meta's address: 200 and stored."""
    async with security_stack(tmp_path, "embedded") as stack:
        headers = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7"}
        reply = await post_signed(stack, body(), peer="127.0.0.1", headers=headers)
        assert reply.json()["status"] == "accepted"
        assert await stack.backlog() == 1


async def test_handshake_answers_plain_text_not_sniffable(tmp_path: Path) -> None:
    """The echoed challenge is text/plain with nosniff."""
    async with security_stack(tmp_path, "embedded") as stack:
        params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "42"}
        reply = await stack.client().get("/webhook", params=params)
    assert (reply.status_code, reply.text) == (200, "42")
    assert reply.headers["x-content-type-options"] == "nosniff"


async def test_admin_lists_tenants_and_backlog_without_secrets(tmp_path: Path) -> None:
    """With the bearer token: ids and numbers, which secrets are set, never a value."""
    async with security_stack(tmp_path, "embedded") as stack:
        await post_signed(stack, body())
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        tenants = await stack.client("10.0.0.1").get("/admin/tenants", headers=auth)
        inbox = await stack.client("10.0.0.1").get("/admin/inbox", headers=auth)
    assert [t["id"] for t in tenants.json()["tenants"]] == ["acme", "other"]
    assert tenants.json()["tenants"][0]["app_secrets"] == [{"app_id": None, "set": True}] * 2
    assert SECRET not in tenants.text
    assert VERIFY not in tenants.text
    assert inbox.json()["total"] == 1


ACCESS = "an-access-token-for-graph"


@pytest.mark.parametrize("token", [SECRET, VERIFY, ACCESS, "short"])
def test_the_app_refuses_an_admin_token_equal_to_a_meta_secret(token: str, tmp_path: Path) -> None:
    """Never on the same secret as Meta's (app secret, verify or access token), never short:
    the same rule as the settings' (one function, models/tenant.py)."""
    owner = tenant().model_copy(update={"access_token": SecretStr(ACCESS)})
    deps = IngressDeps(
        ingress_config(partitions=1, admin_token=SecretStr(token)),
        TenantDirectory([owner]),
        inbox=None,  # type: ignore[arg-type]  # refused before the inbox is used
    )
    with pytest.raises(ValueError, match="admin token"):
        create_app(deps)


async def test_an_old_item_is_quarantined_as_replay_not_lost(tmp_path: Path) -> None:
    """30 days old by Meta's timestamp: published once, category `replay`, same event id."""
    async with security_stack(tmp_path, "embedded") as stack:
        await post_signed(stack, body("wamid.OLD", ts=NOW - 30 * 86400))
        await post_signed(stack, body("wamid.NEW"))
        await stack.drain()
        events = {e["event_id"]: e for e in stack.events()}
    assert events["wamid.OLD"]["category"] == "replay"
    assert events["wamid.NEW"]["category"] == "message"


async def test_signature_failures_and_duplicates_are_counted(tmp_path: Path) -> None:
    """/metrics: failures by reason; duplicates; rejections by outcome; no address label."""
    async with security_stack(tmp_path, "embedded") as stack:
        await post_signed(stack, body())
        await post_signed(stack, body())
        await post_signed(stack, body(), secret="wrong")
        await post_signed(stack, body(), headers={"X-Hub-Signature-256": "sha256=zz"})
        await post_signed(stack, body(), peer="198.51.100.1")
        text = (await stack.client().get("/metrics")).text
    assert 'wa_webhook_signature_failures_total{reason="mismatch"} 1.0' in text
    assert 'wa_webhook_signature_failures_total{reason="malformed"} 1.0' in text
    assert "wa_webhook_duplicate_deliveries_total 1.0" in text
    assert 'wa_webhook_requests_total{outcome="source_not_allowed"} 1.0' in text
    assert "198.51.100" not in text
