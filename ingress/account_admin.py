"""GET /admin/tenants/{tenant_id}/account, /templates and /stats: answered from the store.

Mounted on the admin router (bearer token, ingress/admin.py) when the app has an account
store. The store holds what the account refresher read from the Graph API and what
webhooks changed since (models/account.py), so these answers never call Meta: an admin
looking at a restricted account is not another Graph call against the tenant's allowance.

    404 tenant_not_found   no tenant by that id (the JSON error shape, ingress/rejection.py)
    503 store_unavailable  the store did not answer (retry)
    200                    `account`: null until the first refresh or webhook stored one
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from fastapi import APIRouter, Query

from adapters.errors import AdapterError
from adapters.ports import AccountStore
from ingress.admin import InvalidLookup, StateStoreUnavailable
from ingress.rejection import RequestRejected
from models.account import AccountSnapshot
from models.tenant import TenantDirectory
from models.tenant_stats import TenantStats

log = structlog.get_logger("ingress")

T = TypeVar("T")

_TEMPLATE_FILTER_CHARS = 64


async def _ask(call: Awaitable[T]) -> T:
    """The store's answer; StateStoreUnavailable (503) when it fails."""
    try:
        return await call
    except AdapterError as exc:
        log.warning("admin_store_unavailable", error_type=type(exc).__name__)
        raise StateStoreUnavailable from exc


class TenantNotFound(RequestRejected):
    """No tenant by that id."""

    status, code, default_message = 404, "tenant_not_found", "no such tenant"


def _account_view(tenant_id: str, snapshot: AccountSnapshot | None) -> dict[str, Any]:
    if snapshot is None:
        return {"tenant_id": tenant_id, "account": None, "flags": None, "templates": 0}
    flags = snapshot.flags()
    account = snapshot.model_dump(mode="json", exclude={"templates"})
    return {
        "tenant_id": tenant_id,
        "account": account,
        "flags": {
            "restricted": bool(flags.restricted),
            "unverified": bool(flags.unverified),
            "reasons": [*flags.restricted, *flags.unverified],
        },
        "templates": len(snapshot.templates),
    }


def _filter(name: str, value: str | None) -> str | None:
    if value is not None and len(value) > _TEMPLATE_FILTER_CHARS:
        raise InvalidLookup(f"{name} is longer than {_TEMPLATE_FILTER_CHARS} characters")
    return value.upper() if value else None


def account_routes(
    router: APIRouter,
    store: AccountStore,
    directory: TenantDirectory,
    limiter: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None,
) -> None:
    """Add the tenant account, templates and stats routes to the admin router;
    `limiter(tenant_id)`: the tenant's rate-limiter stats for `stats` (None: no section)."""

    def known(tenant_id: str) -> str:
        if directory.get(tenant_id) is None:
            raise TenantNotFound
        return tenant_id

    @router.get(
        "/tenants/{tenant_id}/account",
        summary="A tenant's phone numbers, WABAs and whether they are verified or restricted",
        responses={404: {"description": "No such tenant"}},
    )
    async def account(tenant_id: str) -> dict[str, Any]:
        """The stored snapshot without its templates, its flags and its template count."""
        snapshot = await _ask(store.get(known(tenant_id)))
        return _account_view(tenant_id, snapshot)

    @router.get(
        "/tenants/{tenant_id}/templates",
        summary="A tenant's message templates, by WABA, name and language",
        responses={404: {"description": "No such tenant"}},
    )
    async def templates(
        tenant_id: str,
        status: str | None = Query(None, description="Only templates in this status"),
        category: str | None = Query(None, description="Only templates of this category"),
    ) -> dict[str, Any]:
        """Every stored template (optionally filtered), ordered by WABA, name, language."""
        wanted_status, wanted_category = _filter("status", status), _filter("category", category)
        snapshot = await _ask(store.get(known(tenant_id)))
        found = list(snapshot.templates.values()) if snapshot is not None else []
        shown = [
            t
            for t in found
            if (wanted_status is None or (t.status or "").upper() == wanted_status)
            and (wanted_category is None or (t.category or "").upper() == wanted_category)
        ]
        shown.sort(key=lambda t: (t.waba_id, t.name or "", t.language or "", t.template_id))
        return {
            "tenant_id": tenant_id,
            "fetched_at": snapshot.fetched_at.isoformat()
            if snapshot is not None and snapshot.fetched_at
            else None,
            "templates": [t.model_dump(mode="json") for t in shown],
        }

    @router.get(
        "/tenants/{tenant_id}/stats",
        summary="A tenant's events by category and type, media files and bytes, failures",
        responses={404: {"description": "No such tenant"}},
    )
    async def stats(tenant_id: str) -> TenantStats:
        """Counts of committed events since the store was created."""
        counters = await _ask(store.counts(known(tenant_id)))
        shaped = TenantStats.from_counters(tenant_id, counters)
        if limiter is None:
            return shaped
        try:  # advice, not data: a limiter that cannot answer shows as null
            section = await limiter(tenant_id)
        except Exception:  # noqa: BLE001 -- the lookup has its own short timeout
            section = None
        return shaped.model_copy(update={"limiter": section})
