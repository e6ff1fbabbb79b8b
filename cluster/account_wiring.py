"""The business-account side of the wiring (issue 12 point 6, docs/accounts.md): where the
snapshots live (the inbox's own Redis or SQLite file) and the builders of each process's
part: the refresher loop on the shard pool's replica, the commit hook in each shard actor,
the store and readiness check in each ingress replica."""

from __future__ import annotations

from dataclasses import dataclass

from actors.account_hook import AccountHook
from actors.account_metrics import RayAccountMetrics, RayTenantMetrics
from actors.account_refresher import AccountRefresher, RefresherConfig
from actors.accounts import AccountBook
from adapters.ports import AccountStore
from adapters.redis_accounts import RedisAccountStore
from adapters.sqlite_accounts import SqliteAccountStore
from cluster.backends import InboxConfig, RedisInboxConfig
from cluster.limiter_wiring import LimiterConfig, graph_budget
from cluster.logging import configure_logging
from cluster.media_wiring import GraphConfig, graph_client
from cluster.settings import Settings
from cluster.tenant_wiring import watched_directory
from models.tenant import Tenant, TenantDirectory


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """How the accounts are kept current."""

    refresher: RefresherConfig
    template_page_size: int
    hook_flush_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> AccountConfig:
        """Derive it (the settings were checked)."""
        return cls(
            refresher=RefresherConfig(
                interval_s=settings.account_refresh_s,
                max_backoff_s=settings.account_refresh_max_backoff_s,
                concurrency=settings.account_refresh_concurrency,
            ),
            template_page_size=settings.account_template_page_size,
            hook_flush_s=settings.account_hook_flush_s,
        )


def build_account_store(inbox: InboxConfig) -> AccountStore:
    """The snapshots and per-tenant counters beside the inbox (same Redis, same file)."""
    if isinstance(inbox, RedisInboxConfig):
        return RedisAccountStore(inbox.url, inbox.prefix)
    return SqliteAccountStore(inbox.path)


def account_refresher(
    config: AccountConfig,
    inbox: InboxConfig,
    graph: GraphConfig,
    tenants: tuple[Tenant, ...],
    log_level: str,
    secrets: list[str],
    tenant_reload_s: float | None = None,
    limiter: LimiterConfig | None = None,
) -> AccountRefresher:
    """The refresh loop's logic and clients, built inside the shard pool's replica; with
    `tenant_reload_s`, its tenants and tokens follow the registry (a watcher thread:
    cluster/tenant_wiring.py), else the tenants given."""
    configure_logging(log_level, secrets)
    directory = (
        watched_directory(inbox, tenants, tenant_reload_s, "refresher")
        if tenant_reload_s is not None
        else TenantDirectory(tenants)
    )

    def token_for(tenant_id: str) -> object | None:
        tenant = directory.get(tenant_id)
        return tenant.access_token if tenant is not None else None

    book = AccountBook(
        build_account_store(inbox),
        graph_client(graph, directory, graph_budget(limiter, lambda: directory.ids)),
        directory,
        token_for=token_for,
        template_page_size=config.template_page_size,
    )
    return AccountRefresher(book, config.refresher, RayAccountMetrics())


def account_hook(config: AccountConfig, inbox: InboxConfig) -> AccountHook:
    """A shard actor's commit hook (account changes from webhooks, per-tenant counts)."""
    return AccountHook(
        build_account_store(inbox), flush_every_s=config.hook_flush_s, metrics=RayTenantMetrics()
    )
