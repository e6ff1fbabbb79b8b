"""The admin API under /admin: bearer token, compared in constant time.

Mounted only when a token is configured: without one every /admin path is an ordinary
404, indistinguishable from a path that does not exist. Answers never carry a secret.
Later issues add replay and dead letters here.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import SecretStr

from adapters.ports import Inbox
from models.tenant import TenantDirectory


class AdminUnauthorized(Exception):
    """No or a wrong bearer token (answered 401 with WWW-Authenticate)."""


def admin_router(
    token: SecretStr, directory: TenantDirectory, inbox: Inbox, partitions: int
) -> APIRouter:
    """The /admin routes, guarded by `Authorization: Bearer <token>`."""
    expected = token.get_secret_value().encode()

    async def authorized(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # compare_digest even when the scheme is wrong: the time taken says nothing.
        ok = hmac.compare_digest(expected, given.strip().encode())
        if scheme.lower() != "bearer" or not ok:
            raise AdminUnauthorized

    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(authorized)])

    @router.get("/tenants", summary="Tenants and the Meta ids they own (never secrets)")
    async def tenants() -> dict[str, Any]:
        """Tenant ids, their WABA and phone number ids, default flag, secret counts."""
        return {
            "tenants": [
                {
                    "id": t.id,
                    "default": t.default,
                    "waba_ids": sorted(t.waba_ids),
                    "phone_number_ids": sorted(t.phone_number_ids),
                    "app_secrets": len(t.app_secrets),
                    "verify_token": t.verify_token is not None,
                }
                for t in directory.tenants
            ]
        }

    @router.get("/inbox", summary="Backlog per inbox partition")
    async def backlog() -> dict[str, Any]:
        """Entries not yet committed, per partition, and their total."""
        per_partition = {str(p): await inbox.backlog(p) for p in range(partitions)}
        return {"partitions": per_partition, "total": sum(per_partition.values())}

    return router
