"""Liveness, readiness and the Prometheus scrape of one replica."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from ingress.config import IngressDeps, ReadyCheck
from ingress.metrics import IngressMetrics


async def readiness(checks: Mapping[str, ReadyCheck]) -> dict[str, str]:
    """Run every check in turn: "ok", or "down: <error type>" for one that raised."""
    answers: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await check()
            answers[name] = "ok"
        except Exception as exc:  # noqa: BLE001 -- readiness reports any failure as 'down'
            answers[name] = f"down: {type(exc).__name__}"
    return answers


def shard_pool_check(pool: Any) -> ReadyCheck:
    """A readiness check over the shard pool's handle: raises when a shard is not running."""

    async def shards_running() -> None:
        statuses = await pool.status.remote()
        stopped = [s.partition for s in statuses if not s.running]
        if stopped:
            raise RuntimeError(f"shards not running: {stopped}")

    return shards_running


def health_router(metrics: IngressMetrics, deps: IngressDeps) -> APIRouter:
    """GET /metrics, /healthz and /readyz (the inbox first, then every other check).

    The checks are read from `deps` on each request, so one added after the app was built
    is run too.
    """
    router = APIRouter()

    @router.get("/metrics", summary="Prometheus metrics of this replica", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        """The ingress metrics in the Prometheus text format."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: dependencies reachable")
    async def readyz() -> JSONResponse:
        """200 when the inbox (and every other configured dependency) answers, else 503."""
        checks = await readiness({"inbox": deps.inbox.ping, **deps.ready_checks})
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    return router
