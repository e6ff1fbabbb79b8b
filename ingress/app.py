"""The FastAPI application: Meta's handshake, the webhook POST, admin, health and metrics.

The pieces live in their own modules: the POST pipeline in ingress/receiver.py, the
rejections in ingress/rejection.py and their handlers in ingress/error_handlers.py, the
handshake, admin and health routes in ingress/handshake.py, admin.py and health.py. This
module only assembles them around the per-replica dependencies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from ingress.account_admin import account_routes
from ingress.admin import admin_router
from ingress.batcher import AppendBatcher
from ingress.config import IngressConfig, IngressDeps, ReadyCheck
from ingress.error_handlers import install_error_handlers
from ingress.handshake import handshake_routes
from ingress.health import health_router
from ingress.media import media_router
from ingress.metrics import IngressMetrics
from ingress.receiver import WebhookReceiver, add_webhook_routes
from ingress.rejection import RequestRejected, error_response
from ingress.replay import Replayer
from ingress.replay_admin import replay_routes
from ingress.tenant_admin import tenant_routes

__all__ = [
    "IngressConfig",
    "IngressDeps",
    "ReadyCheck",
    "RequestRejected",
    "create_app",
    "error_response",
]


def _background(deps: IngressDeps) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: the deps' background loops (the tenant watcher) run on the
    replica's event loop while it serves (Serve runs the ASGI lifespan at start-up)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if deps.reload_tenants is not None:
            # The registry's tenants before the first request (never raises: a store
            # down leaves the tenants file's, and the watcher loads when it answers).
            await deps.reload_tenants()
        tasks: list[asyncio.Task[None]] = [asyncio.create_task(run()) for run in deps.background]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    return lifespan


def create_app(deps: IngressDeps) -> FastAPI:
    """Build the ingress app around per-replica dependencies (no module-level clients).

    `app.state` holds the batcher (drained at replica shutdown), the metrics and the receiver.
    """
    deps.directory.check_admin_token(deps.config.admin_token)
    config, directory = deps.config, deps.directory
    app = FastAPI(
        lifespan=_background(deps),
        title="WhatsApp webhook ingestion",
        version="0.1.0",
        description="Receives Meta's WhatsApp Cloud API webhooks and stores them durably.",
    )
    metrics = IngressMetrics()
    batcher = AppendBatcher(deps.inbox, config.append_linger_s, config.append_max_items)
    receiver = WebhookReceiver(config, directory, batcher, metrics, deps.rate_limiter)
    app.state.metrics, app.state.batcher, app.state.receiver = metrics, batcher, receiver
    install_error_handlers(app, metrics)
    app.include_router(handshake_routes(directory, receiver.admit_source))
    add_webhook_routes(app, receiver)
    if config.admin_token is not None:
        admin = admin_router(config.admin_token, directory, deps.inbox, config.partitions)
        if deps.archive is not None:  # POST /admin/replay (ingress/replay_admin.py)
            replayer = Replayer(deps.archive, deps.inbox, directory, config.partitions)
            replay_routes(admin, replayer)
        if deps.accounts is not None:  # GET /admin/tenants/{id}/... (ingress/account_admin.py)
            account_routes(admin, deps.accounts, directory, deps.limiter_stats)
        # /admin/tenants[/{id}[/rotate]] (ingress/tenant_admin.py)
        tenant_routes(
            admin,
            directory,
            deps.tenants,
            reload=deps.reload_tenants,
            admin_token=config.admin_token,
        )
        app.include_router(admin)
    app.include_router(health_router(metrics, deps))
    app.include_router(media_router(deps.media_files))  # GET /media/{key} (ingress/media.py)
    return app
