"""Liveness, readiness and the Prometheus scrape of one replica.

Readiness answers within a bound whatever hangs: every check runs concurrently under
READY_CHECK_TIMEOUT_S, and one that has not answered by then is "down: TimeoutError" (a
Redis that is stopped, not refusing, would otherwise hold /readyz for its socket timeout).
Only the inbox (and its durability) and the shards can make the replica unready: a broker
that cannot be reached is a detail, because the ingress still stores what Meta sends and
taking the replica out of rotation would turn a broker outage into refused deliveries
(docs/reliability.md "Degradation").
"""

from __future__ import annotations

import asyncio
from asyncio import CancelledError
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from adapters.errors import BrokerMisconfigured
from adapters.ports import Inbox
from ingress.config import IngressDeps, ReadyCheck
from ingress.metrics import IngressMetrics

READY_CHECK_TIMEOUT_S = 1.0
"""The longest one readiness check may take (they run concurrently): past it, "down"."""

_PING_WAIT_S = 0.5  # the publisher check's wait for its ping; under READY_CHECK_TIMEOUT_S
_BACKLOG_WAIT_S = 0.3  # and for the inbox backlog it reports beside an unreachable broker


async def readiness(
    checks: Mapping[str, ReadyCheck], timeout_s: float = READY_CHECK_TIMEOUT_S
) -> dict[str, str]:
    """Run every check concurrently, each within `timeout_s`: "ok"; "degraded: <detail>"
    for one that answered with a detail (it works, but something needs attention);
    "down: <error type>" for one that raised or did not answer in time (TimeoutError).
    Only "down" makes the replica unready."""

    async def answer(check: ReadyCheck) -> str:
        try:
            detail = await asyncio.wait_for(check(), timeout=timeout_s)
        except Exception as exc:  # noqa: BLE001 -- readiness reports any failure as 'down'
            return f"down: {type(exc).__name__}"
        return "ok" if detail is None else f"degraded: {detail}"

    names = list(checks)
    answers = await asyncio.gather(*(answer(checks[name]) for name in names))
    return dict(zip(names, answers, strict=True))


def publisher_check(
    ping: Callable[[], Awaitable[None]], backlog: Callable[[], Awaitable[int]]
) -> ReadyCheck:
    """A readiness check over the publisher: None while it answers its ping; a detail (still
    ready) naming the error and the inbox backlog while it does not.

    The ping runs as a task of its own that a slow answer does not cancel: the first ping
    connects and declares the broker's topology, which may take longer than one check may
    wait; the next check then awaits the same ping instead of starting another.
    """
    pending: asyncio.Task[None] | None = None

    async def broker() -> str | None:
        nonlocal pending
        if pending is None or pending.done():
            pending = asyncio.ensure_future(ping())
            pending.add_done_callback(_retrieve)
        done, _ = await asyncio.wait({pending}, timeout=_PING_WAIT_S)
        error = None if not done or pending.cancelled() else pending.exception()
        if done and not pending.cancelled() and error is None:
            return None
        if isinstance(error, BrokerMisconfigured):  # a topology changed under a running service
            state = f"misconfigured ({error}): deliveries are stored, published once it is fixed"
        else:
            reason = "no answer yet" if not done else type(error or CancelledError()).__name__
            state = f"unreachable ({reason}): deliveries are stored and published when it is back"
        try:
            waiting = await asyncio.wait_for(backlog(), timeout=_BACKLOG_WAIT_S)
            queued = f"{waiting} entries"
        except Exception:  # noqa: BLE001 -- the inbox check reports the inbox itself
            queued = "unknown"
        return f"{state}; inbox backlog {queued}"

    return broker


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a ping's outcome as seen (a ping no check awaited again must not be logged as
    an exception never retrieved)."""
    if not task.cancelled():
        task.exception()


def inbox_backlog(inbox: Inbox, partitions: int) -> Callable[[], Awaitable[int]]:
    """The entries waiting in every partition of `inbox` (read concurrently)."""

    async def total() -> int:
        return sum(await asyncio.gather(*(inbox.backlog(p) for p in range(partitions))))

    return total


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
