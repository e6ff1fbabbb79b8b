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
    """Run every check in turn: "ok"; "degraded: <detail>" for one that answered with a
    detail (it works, but something needs attention); "down: <error type>" for one that
    raised. Only "down" makes the replica unready."""
    answers: dict[str, str] = {}
    for name, check in checks.items():
        try:
            detail = await check()
            answers[name] = "ok" if detail is None else f"degraded: {detail}"
        except Exception as exc:  # noqa: BLE001 -- readiness reports any failure as 'down'
            answers[name] = f"down: {type(exc).__name__}"
    return answers


def shard_pool_check(pool: Any) -> ReadyCheck:
    """A readiness check over the shard pool's handle: raises when a shard is not running;
    names the stalled partitions (entries waiting, no progress past the shard's bound).

    A stall is a detail, not "down": the ingress still stores what Meta sends, and taking
    it out of rotation would turn one stuck partition into refused deliveries for all.
    """

    async def shards_running() -> str | None:
        statuses = await pool.status.remote()
        stopped = [s.partition for s in statuses if not s.running]
        if stopped:
            raise RuntimeError(f"shards not running: {stopped}")
        stalled = {s.partition: round(s.stalled_s) for s in statuses if s.stalled_s is not None}
        return f"partitions stalled (seconds): {stalled}" if stalled else None

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
        ready = not any(v.startswith("down") for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    return router
