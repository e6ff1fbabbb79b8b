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

    def __init__(self, deps_factory: Callable[[], IngressDeps], pool: Any = None) -> None:
        self._deps = deps_factory()
        self._pool = pool
        self._app: FastAPI | None = None

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve calls this after __init__ on the replica."""
        deps = self._deps
        if self._pool is not None:
            pool = self._pool

            async def shards_running() -> None:
                statuses = await pool.status.remote()
                stopped = [s.partition for s in statuses if not s.running]
                if stopped:
                    raise RuntimeError(f"shards not running: {stopped}")

            deps.ready_checks["shards"] = shards_running
        self._app = create_app(deps)
        return self._app

    async def __del__(self) -> None:
        """Graceful shutdown: flush appends in flight, then close every connection."""
        if self._app is not None:
            await self._app.state.batcher.drain()
        await self._deps.close()
