"""The typed Serve application builder: used by `make run` and by ray-config/ (serve deploy)."""

from __future__ import annotations

import functools
from typing import Any

from ray.serve import Application

from actors.pool import ShardPool
from cluster.account_wiring import account_hook, account_refresher
from cluster.limiter_wiring import publish_budget
from cluster.media_wiring import pool_spec
from cluster.placement import IngressScaling, Placement
from cluster.settings import Settings
from cluster.tenant_wiring import live_tenants
from cluster.wiring import Wiring, archiver, ingress_deps, shard_config, shard_deps
from ingress.deployment import WebhookIngress

APP_NAME = "wa-ingest"


def build_application(
    wiring: Wiring, scaling: IngressScaling | None = None, placement: Placement | None = None
) -> Application:
    """Ingress replicas plus the shard pool, wired to the configured adapters; `scaling`:
    the ingress's replica count or autoscaling (one replica by default), `placement`:
    where the actors and replicas run on several nodes (Ray's defaults by default)."""
    scaling = scaling or IngressScaling()
    placement = placement or Placement()
    # Serve's decorators turn the classes into Deployments, which mypy cannot see.
    pool = ShardPool.options(  # type: ignore[attr-defined]
        ray_actor_options=placement.pool_actor_options()
    ).bind(
        wiring.partitions,
        functools.partial(shard_config, wiring),
        functools.partial(shard_deps, wiring),
        archiver_factory=functools.partial(archiver, wiring),
        media=pool_spec(
            wiring.media,
            wiring.tenants,
            wiring.log_level,
            wiring.secret_values(),
            (wiring.inbox, wiring.tenant_reload_s),
            wiring.limiter,
        ),
        refresher_factory=functools.partial(
            account_refresher,
            wiring.accounts,
            wiring.inbox,
            wiring.media.graph,
            wiring.tenants,
            wiring.log_level,
            wiring.secret_values(),
            wiring.tenant_reload_s,
            wiring.limiter,
        ),
        hook_factory=functools.partial(account_hook, wiring.accounts, wiring.inbox),
        # Each shard's live tenant directory and its registry watcher (docs/tenants.md).
        tenants_factory=functools.partial(
            live_tenants, wiring.inbox, wiring.tenants, wiring.tenant_reload_s, "shard"
        ),
        # Each shard's per-tenant publish budget (the limiter actors, docs/tenants.md).
        budget_factory=functools.partial(publish_budget, wiring.limiter)
        if wiring.limiter is not None and wiring.limiter.enabled
        else None,
        shard_options=placement.shard_options(),
        media_options=placement.media_options(),
    )
    per_node = placement.ingress_max_per_node
    app: Application = WebhookIngress.options(  # type: ignore[attr-defined]
        **scaling.deployment_options(),
        ray_actor_options=placement.ingress_actor_options(),
        **({"max_replicas_per_node": per_node} if per_node else {}),
    ).bind(functools.partial(ingress_deps, wiring), pool)
    return app


def app_builder(args: dict[str, Any]) -> Application:
    """`import_path: cluster.serve_app:app_builder`; settings come from WA_* env vars."""
    settings = Settings(**args)
    return build_application(
        Wiring.from_settings(settings), settings.ingress_scaling(), settings.placement_spec()
    )
