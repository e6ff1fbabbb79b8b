"""Meta's subscription handshake: GET with hub.mode, hub.verify_token, hub.challenge.

The challenge is echoed as plain text only when the mode is exactly `subscribe`, a
non-empty token equals a configured verify token (constant time, every tenant compared),
and the challenge is short URL-safe text (Meta sends digits; markup or anything else is not
reflected, so the endpoint cannot serve attacker-chosen content). On
`/webhook/{tenant_id}` a tenant that is not configured is compared against a random decoy,
so it fails like a wrong token, in the same time.

The tokens are read from the live directory on every handshake, so a token rotated or a
tenant added in the registry answers as soon as the replica's directory is swapped. A
disabled tenant's right token is answered 403 `tenant_disabled` (only once the token
matched: a wrong one cannot tell a disabled tenant from any other); on `/webhook` a token
only disabled tenants hold, likewise. The allowlist is the service's, or on a tenant's
path the tenant's own (rules.webhook).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Iterable
from secrets import token_bytes
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from ingress.rejection import error_response
from models.tenant import Tenant, TenantDirectory

_CHALLENGE = re.compile(r"^[A-Za-z0-9._~-]{1,512}$")


def _matches(tenants: Iterable[Tenant], given: bytes, decoy: bytes) -> tuple[bool, bool]:
    """Whether an enabled tenant, and whether a disabled one, holds the token `given`:
    every token compared in constant time, the decoy when no tenant has one."""
    enabled = disabled = compared = False
    for tenant in tenants:
        if tenant.verify_token is None:
            continue
        expected = tenant.verify_token.get_secret_value().encode()
        compared = True
        match = hmac.compare_digest(expected, given) and bool(expected)
        if tenant.disabled:
            disabled |= match
        else:
            enabled |= match
    if not compared:
        hmac.compare_digest(decoy, given)
    return enabled, disabled


def handshake_routes(
    directory: TenantDirectory, admit_source: Callable[[Request, str | None], Any]
) -> APIRouter:
    """GET /webhook and GET /webhook/{tenant_id}."""
    router = APIRouter()
    decoy = token_bytes(32)  # compared when no tenant of the path has a verify token

    def answer(
        mode: str | None, token: str | None, challenge: str | None, tenant: str | None
    ) -> Response:
        if tenant is None:
            tenants = directory.tenants
        else:
            one = directory.get(tenant)
            tenants = () if one is None else (one,)
        enabled, disabled = _matches(tenants, (token or "").encode(), decoy)
        if mode != "subscribe" or not challenge or not _CHALLENGE.match(challenge):
            return error_response(403, "verification_failed", "verification failed")
        if not enabled:
            if disabled:
                return error_response(403, "tenant_disabled", "the tenant is disabled")
            return error_response(403, "verification_failed", "verification failed")
        return PlainTextResponse(challenge, headers={"X-Content-Type-Options": "nosniff"})

    @router.get("/webhook", response_model=None, summary="Meta's subscription handshake")
    async def verify(
        request: Request,
        mode: str | None = Query(None, alias="hub.mode"),
        token: str | None = Query(None, alias="hub.verify_token"),
        challenge: str | None = Query(None, alias="hub.challenge"),
    ) -> Response:
        """Echo hub.challenge when hub.mode=subscribe and the verify token matches."""
        admit_source(request, None)
        return answer(mode, token, challenge, None)

    @router.get("/webhook/{tenant_id}", response_model=None, summary="Handshake, per-tenant path")
    async def verify_tenant(
        request: Request,
        tenant_id: str,
        mode: str | None = Query(None, alias="hub.mode"),
        token: str | None = Query(None, alias="hub.verify_token"),
        challenge: str | None = Query(None, alias="hub.challenge"),
    ) -> Response:
        """The handshake against one tenant's verify token."""
        admit_source(request, tenant_id)
        return answer(mode, token, challenge, tenant_id)

    return router
