"""The typed Serve application builder: used by `make run` and by ray-config/ (serve deploy)."""

from __future__ import annotations

import functools
from typing import Any

from ray.serve import Application

from actors.pool import ShardPool
from cluster.account_wiring import account_hook, account_refresher
from cluster.media_wiring import pool_spec
from cluster.settings import Settings
from cluster.wiring import Wiring, archiver, ingress_deps, shard_config, shard_deps
from ingress.deployment import WebhookIngress

APP_NAME = "wa-ingest"


def build_application(wiring: Wiring, ingress_replicas: int = 1) -> Application:
    """Ingress replicas plus the shard pool, wired to the configured adapters."""
    # Serve's decorators turn the classes into Deployments, which mypy cannot see.
    pool = ShardPool.bind(  # type: ignore[attr-defined]
        wiring.partitions,
        functools.partial(shard_config, wiring),
        functools.partial(shard_deps, wiring),
        archiver_factory=functools.partial(archiver, wiring),
        media=pool_spec(wiring.media, wiring.tenants, wiring.log_level, wiring.secret_values()),
        refresher_factory=functools.partial(
            account_refresher,
            wiring.accounts,
            wiring.inbox,
            wiring.media.graph,
            wiring.tenants,
            wiring.log_level,
            wiring.secret_values(),
        ),
        hook_factory=functools.partial(account_hook, wiring.accounts, wiring.inbox),
    )
    app: Application = WebhookIngress.options(  # type: ignore[attr-defined]
        num_replicas=ingress_replicas
    ).bind(functools.partial(ingress_deps, wiring), pool)
    return app


def app_builder(args: dict[str, Any]) -> Application:
    """`import_path: cluster.serve_app:app_builder`; settings come from WA_* env vars."""
    settings = Settings(**args)
    return build_application(Wiring.from_settings(settings), settings.ingress_replicas)
