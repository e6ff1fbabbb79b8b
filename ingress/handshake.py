"""Meta's subscription handshake: GET with hub.mode, hub.verify_token, hub.challenge.

The challenge is echoed as plain text only when the mode is exactly `subscribe`, a
non-empty token equals a configured verify token (constant time, every tenant compared),
and the challenge is short URL-safe text (Meta sends digits; markup or anything else is not
reflected, so the endpoint cannot serve attacker-chosen content). On
`/webhook/{tenant_id}` a tenant that is not configured is compared against a random decoy,
so it fails like a wrong token, in the same time.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from secrets import token_bytes
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from ingress.rejection import error_response
from models.tenant import TenantDirectory

_CHALLENGE = re.compile(r"^[A-Za-z0-9._~-]{1,512}$")


def handshake_routes(
    directory: TenantDirectory, admit_source: Callable[[Request], Any]
) -> APIRouter:
    """GET /webhook and GET /webhook/{tenant_id}."""
    router = APIRouter()
    decoy = token_bytes(32)  # compared when no tenant of the path has a verify token

    def answer(
        mode: str | None, token: str | None, challenge: str | None, tenant: str | None
    ) -> Response:
        tenants = (
            directory.tenants
            if tenant is None
            else tuple(t for t in directory.tenants if t.id == tenant)
        )
        expected = [t.verify_token.get_secret_value().encode() for t in tenants if t.verify_token]
        ok = False
        given = (token or "").encode()
        for candidate in expected or [decoy]:
            ok |= hmac.compare_digest(candidate, given) and bool(candidate) and candidate != decoy
        if mode != "subscribe" or not ok or not challenge or not _CHALLENGE.match(challenge):
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
        admit_source(request)
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
        admit_source(request)
        return answer(mode, token, challenge, tenant_id)

    return router
