"""Building the ingress app in-process on the embedded adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

from adapters.ports import Inbox, RateLimiter
from ingress.app import IngressDeps, ReadyCheck, create_app
from ingress.signature import sign
from models.tenant import Tenant, TenantDirectory
from tests.support.configs import ingress_config, sqlite_inbox

SECRET = "test-app-secret"
VERIFY = "test-verify-token"


def tenant(
    tenant_id: str = "acme",
    secrets: tuple[str, ...] = (SECRET,),
    phone_ids: tuple[str, ...] = (),
    default: bool = True,
    verify: str = VERIFY,
) -> Tenant:
    """A tenant for tests."""
    return Tenant(
        id=tenant_id,
        app_secrets=tuple(SecretStr(s) for s in secrets),
        verify_token=SecretStr(verify),
        phone_number_ids=frozenset(phone_ids),
        default=default,
    )


def signed(body: Any, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    """Raw bytes and headers of a body signed like Meta does."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return raw, {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": sign(secret.encode(), raw),
    }


@asynccontextmanager
async def ingress_client(
    tmp_path: Path,
    tenants: list[Tenant] | None = None,
    partitions: int = 4,
    max_body_bytes: int = 4 * 1024 * 1024,
    inbox: Inbox | None = None,
    rate_limiter: RateLimiter | None = None,
    ready_checks: Mapping[str, ReadyCheck] | None = None,
) -> AsyncIterator[tuple[httpx.AsyncClient, Inbox]]:
    """An httpx client on create_app() over `inbox` (default: a SQLite inbox in tmp_path),
    without rate limits unless `rate_limiter` is given; the inbox is closed afterwards."""
    inbox = inbox if inbox is not None else sqlite_inbox(tmp_path / "inbox.db")
    deps = IngressDeps(
        config=ingress_config(partitions=partitions, max_body_bytes=max_body_bytes),
        directory=TenantDirectory(tenants or [tenant()]),
        inbox=inbox,
        ready_checks=dict(ready_checks or {}),
        rate_limiter=rate_limiter,
    )
    app = create_app(deps)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client, inbox
    await inbox.close()


async def stored_count(inbox: Inbox, partitions: int = 4) -> int:
    """Entries in the inbox over all partitions."""
    return sum([await inbox.backlog(p) for p in range(partitions)])
