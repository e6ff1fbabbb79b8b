"""The tenant admin API (ingress/tenant_admin.py) in-process over the embedded registry:
create, read, replace, patch, delete and rotate with the project's error shape; secrets
never in an answer or a log line; the replica's own directory reloaded after each write,
so a tenant created through the API has its webhooks accepted at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from adapters.sqlite_tenants import SqliteTenantRegistry
from cluster.tenant_wiring import TenantWatcher
from ingress.app import IngressDeps, create_app
from ingress.tenant_admin import MAX_BODY_BYTES
from models.tenant import Tenant, TenantDirectory
from tests.support.app import signed
from tests.support.bodies import envelope, messages_value, text_message
from tests.support.configs import ingress_config, sqlite_inbox

TOKEN = "admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FILE_SECRET = "the-file-tenants-secret"
NEW_SECRET = "secret-of-the-new-tenant"
ACCESS = "access-token-of-the-new-tenant"


def acme(**extra: Any) -> dict[str, Any]:
    return {
        "id": "acme",
        "app_secrets": [NEW_SECRET],
        "access_token": ACCESS,
        "verify_token": "verify-of-the-new-tenant",
        "phone_number_ids": ["106540352242922"],
        "waba_ids": ["102290129340398"],
    } | extra


class Api:
    """The app over a SQLite registry, its directory and watcher, and a client."""

    def __init__(self, client: httpx.AsyncClient, watcher: TenantWatcher) -> None:
        self.client = client
        self.watcher = watcher
        self.directory = watcher.directory

    async def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        content = (
            None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
        )
        return await self.client.request(method, path, content=content, headers=AUTH)


@asynccontextmanager
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    seed = [Tenant.model_validate({"id": "filed", "app_secrets": [FILE_SECRET], "default": True})]
    registry = SqliteTenantRegistry(tmp_path / "inbox.db")
    watcher = TenantWatcher(registry, TenantDirectory(seed), seed, 1.0)
    await watcher.refresh()
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    deps = IngressDeps(
        config=ingress_config(partitions=1, admin_token=SecretStr(TOKEN)),
        directory=watcher.directory,
        inbox=inbox,
        tenants=registry,
        reload_tenants=watcher.refresh,
    )
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield Api(client, watcher)
    await deps.close()


def error_of(reply: httpx.Response) -> tuple[int, str, str]:
    body = reply.json()
    assert set(body) == {"error"}
    return reply.status_code, body["error"]["code"], body["error"]["message"]


async def test_create_answers_201_with_the_public_view_and_reloads_the_replica(
    tmp_path: Path,
) -> None:
    async with api(tmp_path) as a:
        reply = await a.call("POST", "/admin/tenants", acme())
        assert reply.status_code == 201
        shown = reply.json()["tenant"]
        assert shown["id"] == "acme"
        assert shown["app_secrets"] == [{"app_id": None, "set": True}]
        assert shown["access_token"] == {"set": True}
        assert "pii_key" not in shown
        for secret in (NEW_SECRET, ACCESS, "verify-of-the-new-tenant"):
            assert secret not in reply.text
        resolved = a.directory.resolve("106540352242922", None)
        assert resolved is not None
        assert resolved.id == "acme"
        # The new tenant's webhooks are accepted at once on this replica.
        body = envelope(("messages", messages_value([text_message("wamid.1", "15550001111")])))
        raw, headers = signed(body, NEW_SECRET)
        posted = await a.client.post("/webhook", content=raw, headers=headers)
        assert posted.status_code == 200


async def test_list_and_show_never_carry_a_secret(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        await a.call("POST", "/admin/tenants", acme())
        listed = await a.call("GET", "/admin/tenants")
        shown = await a.call("GET", "/admin/tenants/acme")
    assert [t["id"] for t in listed.json()["tenants"]] == ["filed", "acme"]
    assert listed.json()["version"] == 2
    assert shown.json()["tenant"]["phone_number_ids"] == ["106540352242922"]
    for secret in (NEW_SECRET, ACCESS, FILE_SECRET):
        assert secret not in listed.text
        assert secret not in shown.text


async def test_a_known_id_and_a_number_claimed_twice_are_409(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        await a.call("POST", "/admin/tenants", acme())
        again = await a.call("POST", "/admin/tenants", acme())
        thief = await a.call("POST", "/admin/tenants", acme(id="thief", app_secrets=["x" * 9]))
        listed = await a.call("GET", "/admin/tenants")
    assert error_of(again)[:2] == (409, "tenant_exists")
    status, code, message = error_of(thief)
    assert (status, code) == (409, "tenant_conflict")
    assert "106540352242922" in message or "102290129340398" in message
    assert "acme" in message
    assert "thief" not in [t["id"] for t in listed.json()["tenants"]]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (acme(colour="blue"), "colour"),
        (acme(rules={"forward": {"categories": ["nope"]}}), "rules.forward.categories"),
        (acme(rules={"pii": {"phone": "scramble"}}), "rules.pii.phone"),
        (acme(rules={"unknown_rule": 1}), "rules.unknown_rule"),
        (acme(app_secrets=[]), "app_secrets"),
        (acme(phone_number_ids=["+1 555"]), "phone_number_ids"),
        (acme(id="Not Valid"), "id"),
    ],
)
async def test_an_invalid_tenant_is_400_with_its_location(
    tmp_path: Path, body: dict[str, Any], where: str
) -> None:
    async with api(tmp_path) as a:
        reply = await a.call("POST", "/admin/tenants", body)
    status, code, message = error_of(reply)
    assert (status, code) == (400, "invalid_tenant")
    assert where in message
    assert NEW_SECRET not in reply.text
    assert ACCESS not in reply.text


async def test_a_refused_secret_is_never_echoed(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        bad = await a.call(
            "POST", "/admin/tenants", acme(app_secrets=[{"secret": NEW_SECRET, "app_id": "b d"}])
        )
        wrong_type = await a.call("POST", "/admin/tenants", acme(access_token=["in-a-list-secret"]))
    assert error_of(bad)[:2] == (400, "invalid_tenant")
    assert NEW_SECRET not in bad.text
    assert error_of(wrong_type)[:2] == (400, "invalid_tenant")
    assert "in-a-list-secret" not in wrong_type.text


async def test_bodies_are_bounded_and_must_be_json_objects(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        big = await a.call("POST", "/admin/tenants", b"{" + b" " * MAX_BODY_BYTES + b"}")
        broken = await a.call("POST", "/admin/tenants", b"{not json")
        listed = await a.call("POST", "/admin/tenants", [acme()])
    assert error_of(big)[:2] == (413, "body_too_large")
    assert error_of(broken)[:2] == (400, "invalid_json")
    assert error_of(listed)[:2] == (400, "invalid_tenant")


async def test_patch_replaces_members_and_merges_rules(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        await a.call(
            "POST", "/admin/tenants", acme(rules={"publish_rate_per_s": 50, "reorder_window_ms": 5})
        )
        before = await a.watcher.registry.get("acme")
        disabled = await a.call("PATCH", "/admin/tenants/acme", {"disabled": True})
        assert disabled.status_code == 200
        assert disabled.json()["tenant"]["disabled"] is True
        got = a.directory.get("acme")
        assert got is not None
        assert got.disabled  # this replica at once
        pii = await a.call("PATCH", "/admin/tenants/acme", {"rules": {"pii": {"phone": "hash"}}})
        rules = pii.json()["tenant"]["rules"]
        assert rules["pii"] == {"customer_name": "keep", "phone": "hash"}
        assert rules["publish_rate_per_s"] == 50  # the other rules kept
        after = await a.watcher.registry.get("acme")
        renamed = await a.call("PATCH", "/admin/tenants/acme", {"id": "other"})
        unknown = await a.call("PATCH", "/admin/tenants/acme", {"colour": "blue"})
        missing = await a.call("PATCH", "/admin/tenants/nobody", {"disabled": True})
    assert before is not None
    assert after is not None
    assert after.pii_key == before.pii_key  # kept: the hashes stay stable
    assert after.app_secrets == before.app_secrets
    assert error_of(renamed)[:2] == (400, "invalid_tenant")
    assert error_of(unknown)[:2] == (400, "invalid_tenant")
    assert error_of(missing)[:2] == (404, "tenant_not_found")


async def test_put_replaces_the_tenant_whole(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        await a.call("POST", "/admin/tenants", acme(rules={"publish_rate_per_s": 50}))
        body = acme()
        del body["id"]
        replaced = await a.call("PUT", "/admin/tenants/acme", body)
        other_id = await a.call("PUT", "/admin/tenants/acme", acme(id="beta"))
        missing = await a.call("PUT", "/admin/tenants/nobody", acme(id="nobody"))
    assert replaced.status_code == 200
    assert replaced.json()["tenant"]["rules"]["publish_rate_per_s"] is None
    assert error_of(other_id)[:2] == (400, "invalid_tenant")
    assert error_of(missing)[:2] == (404, "tenant_not_found")


async def test_delete_removes_it_here_at_once(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        await a.call("POST", "/admin/tenants", acme())
        deleted = await a.call("DELETE", "/admin/tenants/acme")
        again = await a.call("DELETE", "/admin/tenants/acme")
        shown = await a.call("GET", "/admin/tenants/acme")
        assert "acme" not in a.directory.ids
    assert deleted.json()["deleted"] == "acme"
    assert error_of(again)[:2] == (404, "tenant_not_found")
    assert error_of(shown)[:2] == (404, "tenant_not_found")


async def test_rotate_puts_the_new_secret_first_and_keeps_one_previous(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        await a.call(
            "POST",
            "/admin/tenants",
            acme(app_secrets=[NEW_SECRET, {"app_id": "222", "secret": "other-apps-secret"}]),
        )
        for n in (1, 2):
            reply = await a.call(
                "POST", "/admin/tenants/acme/rotate", {"app_secret": f"rotated-secret-{n}"}
            )
            assert reply.status_code == 200
            assert f"rotated-secret-{n}" not in reply.text
        tokens = await a.call(
            "POST",
            "/admin/tenants/acme/rotate",
            {"access_token": "rotated-access", "verify_token": "rotated-verify"},
        )
        assert tokens.status_code == 200
        got = a.directory.get("acme")
        dropped = await a.call(
            "POST",
            "/admin/tenants/acme/rotate",
            {"app_secret": "fresh-secret-222", "app_id": "222", "keep_previous": False},
        )
        assert dropped.status_code == 200
        after = a.directory.get("acme")
        nothing = await a.call("POST", "/admin/tenants/acme/rotate", {})
        unknown = await a.call("POST", "/admin/tenants/acme/rotate", {"app_secret": "s", "x": 1})
    assert got is not None
    assert [(s.app_id, s.get_secret_value()) for s in got.app_secrets] == [
        (None, "rotated-secret-2"),
        (None, "rotated-secret-1"),
        ("222", "other-apps-secret"),
    ]
    assert got.access_token == SecretStr("rotated-access")
    assert got.verify_token == SecretStr("rotated-verify")
    assert after is not None
    assert [(s.app_id, s.get_secret_value()) for s in after.app_secrets] == [
        ("222", "fresh-secret-222"),
        (None, "rotated-secret-2"),
        (None, "rotated-secret-1"),
    ]
    assert error_of(nothing)[:2] == (400, "invalid_tenant")
    assert error_of(unknown)[:2] == (400, "invalid_tenant")


async def test_a_secret_equal_to_the_admin_token_is_refused(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        reply = await a.call("POST", "/admin/tenants", acme(app_secrets=[TOKEN]))
    assert error_of(reply)[:2] == (400, "invalid_tenant")
    assert TOKEN not in reply.text


async def test_writes_log_ids_never_secrets(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        with capture_logs() as logs:
            await a.call("POST", "/admin/tenants", acme())
            await a.call("POST", "/admin/tenants/acme/rotate", {"app_secret": "rotated-in-log"})
            await a.call("POST", "/admin/tenants", acme(colour=NEW_SECRET))
    events = [e["event"] for e in logs]
    assert "tenant_created" in events
    assert "tenant_rotated" in events
    text = repr(logs)
    for secret in (NEW_SECRET, ACCESS, "rotated-in-log"):
        assert secret not in text


async def test_without_the_token_every_tenant_route_is_401(tmp_path: Path) -> None:
    async with api(tmp_path) as a:
        listed = await a.client.get("/admin/tenants")
        created = await a.client.post("/admin/tenants", content=orjson.dumps(acme()))
    assert listed.status_code == created.status_code == 401
    assert "acme" not in a.directory.ids
