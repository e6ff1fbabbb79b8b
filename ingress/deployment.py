"""The Ray Serve deployment that hosts the FastAPI ingress (one app per replica)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from ray import serve

from ingress.app import IngressDeps, create_app


@serve.deployment(
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=256,
    graceful_shutdown_wait_loop_s=1,
    graceful_shutdown_timeout_s=30,
    # Serve's per-request access log cost ~4% of the replica's CPU at saturation; the
    # ingress counts every outcome in /metrics and logs every rejection itself.
    logging_config={"enable_access_log": False},
)
@serve.ingress()
class WebhookIngress:
    """Builds its dependencies at replica start-up, then serves create_app(deps)."""

    def __init__(self, deps_factory: Callable[[Any], IngressDeps], pool: Any = None) -> None:
        # `pool` is the shard pool's handle; the factory puts it in the deps' readiness.
        self._deps = deps_factory(pool)
        self._app: FastAPI | None = None

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve calls this after __init__ on the replica."""
        self._app = create_app(self._deps)
        return self._app

    async def __del__(self) -> None:
        """Graceful shutdown: flush appends in flight, then close every connection."""
        if self._app is not None:
            await self._app.state.batcher.drain()
        await self._deps.close()
