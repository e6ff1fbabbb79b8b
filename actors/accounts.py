"""Business accounts and templates (issue 12, point 6): refreshed from the Graph API.

`AccountBook.refresh` reads, with the tenant's token, every phone number the tenant owns
(models/tenant.py `phone_number_ids`), every WABA (`waba_ids`) and each WABA's templates
(all pages), concurrently, and merges the answer into the stored snapshot atomically
(models/account_change.py: a webhook applied while the reads ran is not lost). A read that
fails keeps that object's stored record with the error beside it; the others are stored.

The loop that refreshes every tenant in turn is actors/account_refresher.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from adapters.errors import AdapterError
from adapters.ports import AccountSource, AccountStore, PhoneNumberFacts, TemplateFacts, WabaFacts
from models.account import AccountSnapshot, PhoneNumberState, TemplateState, WabaState
from models.account_change import (
    PHONE_GRAPH_FIELDS,
    TEMPLATE_GRAPH_FIELDS,
    WABA_GRAPH_FIELDS,
    AccountChange,
)
from models.tenant import Tenant, TenantDirectory
from models.tenant_stats import seen_ids

log = structlog.get_logger("accounts")


class NoAccessToken(AdapterError):
    """The tenant has no access token configured: its account cannot be read."""


def error_text(exc: BaseException) -> str:
    """An error as one bounded line: its type and message."""
    return f"{type(exc).__name__}: {exc}"[:300]


def _phone(fact: PhoneNumberFacts, now: datetime) -> PhoneNumberState:
    return PhoneNumberState(
        phone_number_id=fact.id,
        display_phone_number=fact.display_phone_number,
        verified_name=fact.verified_name,
        name_status=fact.name_status,
        code_verification_status=fact.code_verification_status,
        quality_rating=fact.quality_rating,
        platform_type=fact.platform_type,
        throughput_level=fact.throughput_level,
        status=fact.status,
        messaging_limit=fact.messaging_limit,
        sources=dict.fromkeys(PHONE_GRAPH_FIELDS, "graph"),
        fetched_at=now,
        updated_at=now,
    )


def _waba(fact: WabaFacts, now: datetime) -> WabaState:
    return WabaState(
        waba_id=fact.id,
        name=fact.name,
        currency=fact.currency,
        timezone_id=fact.timezone_id,
        message_template_namespace=fact.message_template_namespace,
        account_review_status=fact.account_review_status,
        business_verification_status=fact.business_verification_status,
        country=fact.country,
        ownership_type=fact.ownership_type,
        sources=dict.fromkeys(WABA_GRAPH_FIELDS, "graph"),
        fetched_at=now,
        updated_at=now,
    )


def _template(waba_id: str, fact: TemplateFacts, now: datetime) -> TemplateState:
    return TemplateState(
        waba_id=waba_id,
        template_id=fact.id,
        name=fact.name,
        language=fact.language,
        status=fact.status,
        category=fact.category,
        quality_score=fact.quality_score,
        sources=dict.fromkeys(TEMPLATE_GRAPH_FIELDS, "graph"),
        fetched_at=now,
        updated_at=now,
    )


class AccountBook:
    """Reads a tenant's account from the Graph API into the store."""

    def __init__(
        self,
        store: AccountStore,
        source: AccountSource,
        directory: TenantDirectory,
        *,
        token_for: Callable[[str], object | None] | None = None,
        template_page_size: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.source = source
        self.directory = directory
        # The Graph client's own token lookup (WA_ACCESS_TOKEN for the default tenant, the
        # tenants file's tokens); without one, the tenants' `access_token`.
        self._token_for = token_for
        self._page_size = template_page_size
        self._clock = clock

    def has_token(self, tenant: Tenant) -> bool:
        """Whether the Graph client has a token for the tenant."""
        if self._token_for is not None:
            return bool(self._token_for(tenant.id))
        return tenant.access_token is not None

    def _tenant(self, tenant_id: str) -> Tenant:
        tenant = self.directory.get(tenant_id)
        if tenant is None:
            raise KeyError(tenant_id)
        return tenant

    async def _seen(self, tenant_id: str) -> dict[str, int]:
        """The tenant's counters (the numbers and WABAs its webhooks came through: a
        default tenant owns its numbers without naming them); none if unreadable."""
        try:
            return dict(await self.store.counts(tenant_id))
        except AdapterError as exc:
            log.warning("account_counts_unread", tenant_id=tenant_id, error=error_text(exc))
            return {}

    async def unknown_ids(self, tenant_id: str) -> bool:
        """Whether the tenant's webhooks came through a number or WABA its snapshot lacks
        (refresh it now rather than at its next turn)."""
        seen = await self._seen(tenant_id)
        numbers, wabas = seen_ids(seen, "numbers"), seen_ids(seen, "wabas")
        if not numbers and not wabas:
            return False
        snapshot = await self.store.get(tenant_id)
        if snapshot is None:
            return True
        return bool(numbers - set(snapshot.phone_numbers) or wabas - set(snapshot.wabas))

    async def refresh(self, tenant_id: str) -> AccountSnapshot:
        """Read the tenant's numbers, WABAs and templates and merge them into the store;
        the stored snapshot after it. NoAccessToken without a token; the first read's
        error (GraphError, GraphThrottled, TransientError) when every read failed; a
        partial failure is stored (`refresh_error`, each record's `fetch_error`)."""
        tenant = self._tenant(tenant_id)
        if not self.has_token(tenant):
            raise NoAccessToken(f"tenant {tenant_id} has no access token")
        started = datetime.fromtimestamp(self._clock(), UTC)
        seen = await self._seen(tenant_id)
        numbers = sorted(tenant.phone_number_ids | seen_ids(seen, "numbers"))
        wabas = sorted(tenant.waba_ids | seen_ids(seen, "wabas"))
        phone_reads, waba_reads, template_reads = await asyncio.gather(
            asyncio.gather(
                *(self.source.phone_number(tenant_id, n) for n in numbers), return_exceptions=True
            ),
            asyncio.gather(
                *(self.source.waba(tenant_id, w) for w in wabas), return_exceptions=True
            ),
            asyncio.gather(
                *(self.source.templates(tenant_id, w, self._page_size) for w in wabas),
                return_exceptions=True,
            ),
        )
        done = datetime.fromtimestamp(self._clock(), UTC)
        reads = [*phone_reads, *waba_reads, *template_reads]
        errors = [r for r in reads if isinstance(r, BaseException)]
        for error in errors:
            if not isinstance(error, Exception):
                raise error  # cancellation and the like are not a read's failure
        if reads and len(errors) == len(reads):
            raise errors[0]
        snapshot = AccountSnapshot(
            tenant_id=tenant_id,
            phone_numbers={
                n: (
                    PhoneNumberState(phone_number_id=n, fetch_error=error_text(r))
                    if isinstance(r, BaseException)
                    else _phone(r, done).model_copy(update={"phone_number_id": n})
                )
                for n, r in zip(numbers, phone_reads, strict=True)
            },
            wabas={
                w: (
                    WabaState(waba_id=w, fetch_error=error_text(r))
                    if isinstance(r, BaseException)
                    else _waba(r, done).model_copy(update={"waba_id": w})
                )
                for w, r in zip(wabas, waba_reads, strict=True)
            },
            fetched_at=done,
            refresh_error=error_text(errors[0]) if errors else None,
        )
        templates: dict[str, TemplateState] = {}
        unlisted: list[str] = []
        for w, listing in zip(wabas, template_reads, strict=True):
            if isinstance(listing, BaseException):
                unlisted.append(w)
                continue
            for fact in listing:
                state = _template(w, fact, done)
                templates[state.key] = state
        snapshot = snapshot.model_copy(update={"templates": templates})
        change = AccountChange(
            tenant_id=tenant_id,
            target="refresh",
            at=started,
            refreshed=snapshot,
            unlisted_wabas=tuple(unlisted),
        )
        await self.store.apply([change])
        stored = await self.store.get(tenant_id)
        return stored if stored is not None else snapshot
