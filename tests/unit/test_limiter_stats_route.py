"""`GET /admin/tenants/{id}/stats` carries the tenant's limiter section (issue 13): what
the composition root's look-up answers, null when the limiter does not run, null (not a
500) when the look-up fails; no section asked when the app has no look-up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from adapters.sqlite_accounts import SqliteAccountStore
from ingress.app import IngressDeps, create_app
from models.tenant import TenantDirectory
from tests.support.app import tenant
from tests.support.configs import ingress_config, sqlite_inbox

ADMIN = "limiter-stats-admin-token-0123"

Lookup = Callable[[str], Awaitable[dict[str, Any] | None]]


async def stats_of(tmp_path: Path, lookup: Lookup | None, tenant_id: str) -> dict[str, Any]:
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    store = SqliteAccountStore(tmp_path / "inbox.db")
    deps = IngressDeps(
        config=ingress_config(partitions=1, admin_token=SecretStr(ADMIN)),
        directory=TenantDirectory([tenant()]),
        inbox=inbox,
        accounts=store,
        limiter_stats=lookup,
    )
    transport = httpx.ASGITransport(app=create_app(deps))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.get(
                f"/admin/tenants/{tenant_id}/stats", headers={"Authorization": f"Bearer {ADMIN}"}
            )
    finally:
        await store.close()
        await inbox.close()
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_the_limiter_section_is_the_lookups_answer(tmp_path: Path) -> None:
    asked: list[str] = []
    tenant_id = tenant().id

    async def lookup(tid: str) -> dict[str, Any] | None:
        asked.append(tid)
        return {"publish_rate_per_s": 50.0, "throttled_until": None}

    body = await stats_of(tmp_path, lookup, tenant_id)
    assert body["limiter"] == {"publish_rate_per_s": 50.0, "throttled_until": None}
    assert asked == [tenant_id]


async def test_a_lookup_that_fails_or_finds_nothing_gives_null(tmp_path: Path) -> None:
    async def absent(tid: str) -> dict[str, Any] | None:
        return None

    async def broken(tid: str) -> dict[str, Any] | None:
        raise RuntimeError("ray is away")

    assert (await stats_of(tmp_path / "a", absent, tenant().id))["limiter"] is None
    assert (await stats_of(tmp_path / "b", broken, tenant().id))["limiter"] is None
    assert (await stats_of(tmp_path / "c", None, tenant().id))["limiter"] is None
