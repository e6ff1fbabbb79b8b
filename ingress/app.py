"""The FastAPI application: Meta's handshake, the webhook POST, health and readiness.

The POST runs its checks cheapest first and stores nothing until all have passed:
source allowlist (403) -> content type (415) -> body cap and read deadline (413/408) ->
signature (401/403) -> JSON, shape bounds, envelope (400) -> tenant ownership (403) ->
rate limits (429) -> durable append with delivery dedup -> 200.

Tenant resolution never trusts the body before the signature: the raw bytes are checked
against every configured secret (or, on `/webhook/{tenant_id}`, that tenant's secrets)
first; only then is the body parsed, and each item's number must belong to a tenant whose
secret matched. Every candidate secret is computed, so timing reveals nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import SecretStr

from adapters.errors import AdapterError
from adapters.ports import Inbox, RateLimiter
from ingress.admin import AdminUnauthorized, admin_router
from ingress.batcher import AppendBatcher
from ingress.bounds import BodyOutOfBounds, check_bounds
from ingress.client_ip import LOOPBACK, IpAddress, SourcePolicy, mask_address, parse_networks
from ingress.handshake import handshake_routes
from ingress.metrics import IngressMetrics
from ingress.rejection import RequestRejected, error_response
from ingress.signature import SignatureMissing, matching_secrets, parse_signature
from models.envelope import DeliveryContext, EnvelopeError, UnknownNumberError, split_delivery
from models.tenant import TenantDirectory

log = structlog.get_logger("ingress")

ReadyCheck = Callable[[], Awaitable[None]]
_JSON_TYPES = frozenset({"application/json"})
_DEFAULT_POLICY = SourcePolicy(trusted_proxies=parse_networks(LOOPBACK))  # allowlist off

__all__ = ["IngressConfig", "IngressDeps", "RequestRejected", "create_app", "error_response"]


@dataclass(frozen=True, slots=True)
class IngressConfig:
    """The ingress's narrow view of the settings (defaults: the embedded profile)."""

    partitions: int
    max_body_bytes: int = 4 * 1024 * 1024
    append_linger_s: float = 0.001
    append_max_items: int = 512
    max_json_depth: int = 32
    max_json_array: int = 10_000
    body_timeout_s: float = 10.0
    rate_limit_per_ip: int = 5_000
    rate_limit_per_tenant: int = 20_000
    source_policy: SourcePolicy = _DEFAULT_POLICY
    admin_token: SecretStr | None = None


@dataclass(slots=True)
class IngressDeps:
    """Everything the app needs, built per replica by the composition root."""

    config: IngressConfig
    directory: TenantDirectory
    inbox: Inbox
    ready_checks: dict[str, ReadyCheck] = field(default_factory=dict)
    rate_limiter: RateLimiter | None = None  # None: no rate limits (tests of other checks)
    # Other resources the replica holds (e.g. the publisher behind a readiness check).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        """Release every connection the dependencies hold."""
        closers = [self.inbox.close, *self.closers]
        if self.rate_limiter is not None:
            closers.append(self.rate_limiter.close)
        await asyncio.gather(*(close() for close in closers), return_exceptions=True)


class _TenantNotVerified(LookupError):
    """The body names a number of a tenant whose secret did not sign it."""


async def _read_capped(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestRejected(400, "bad_content_length", "Content-Length is not a number")
        if int(declared) > cap:
            raise RequestRejected(413, "body_too_large", f"body exceeds {cap} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise RequestRejected(413, "body_too_large", f"body exceeds {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_admin_token(deps: IngressDeps) -> None:
    token = deps.config.admin_token
    if token is None:
        return
    value = token.get_secret_value()
    others = {t.verify_token.get_secret_value() for t in deps.directory.tenants if t.verify_token}
    if len(value) < 16 or value.encode() in deps.directory.secrets() or value in others:
        raise ValueError("the admin token must be 16+ characters and differ from Meta's secrets")


def create_app(deps: IngressDeps) -> FastAPI:
    """Build the ingress app around per-replica dependencies (no module-level clients)."""
    _check_admin_token(deps)
    app = FastAPI(
        title="WhatsApp webhook ingestion",
        version="0.1.0",
        description="Receives Meta's WhatsApp Cloud API webhooks and stores them durably.",
    )
    directory = deps.directory
    config = deps.config
    policy = config.source_policy
    limiter = deps.rate_limiter
    batcher = AppendBatcher(deps.inbox, config.append_linger_s, config.append_max_items)
    app.state.batcher = batcher
    metrics = IngressMetrics()
    app.state.metrics = metrics
    all_secrets = directory.secrets()

    @app.exception_handler(RequestRejected)
    async def rejected(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestRejected)
        source: IpAddress | None = getattr(request.state, "client", None)
        log.info(
            "webhook_rejected",
            code=exc.code,
            status=exc.status,
            path=request.url.path,
            source=mask_address(source),
        )
        started = getattr(request.state, "started", None)
        if started is not None:
            metrics.observe_request(exc.code, time.perf_counter() - started)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(AdminUnauthorized)
    async def admin_unauthorized(request: Request, exc: Exception) -> JSONResponse:
        log.info("admin_unauthorized", path=request.url.path)
        headers = {"WWW-Authenticate": "Bearer"}
        return error_response(401, "unauthorized", "a valid bearer token is required", headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path, error_type=type(exc).__name__)
        return error_response(500, "internal_error", "internal error")

    def admit_source(request: Request) -> IpAddress | None:
        """The client address; RequestRejected(403) when the allowlist does not hold it."""
        peer = request.client.host if request.client else None
        client = policy.client(peer, request.headers.getlist("x-forwarded-for"))
        request.state.client = client
        if not policy.allows(client):
            raise RequestRejected(403, "source_not_allowed", "source address not allowed")
        return client

    app.include_router(handshake_routes(directory, admit_source))

    def verify(body: bytes, header: str | None, tenant_id: str | None) -> set[str]:
        """The ids of the tenants whose secret signed the body, or RequestRejected."""
        try:
            digest = parse_signature(header)
        except SignatureMissing as exc:
            metrics.signature_failures.labels("missing" if not header else "malformed").inc()
            raise RequestRejected(401, "signature_missing", str(exc)) from exc
        candidates = all_secrets if tenant_id is None else directory.secrets(tenant_id)
        matched = matching_secrets(digest, body, candidates)
        if not matched:
            metrics.signature_failures.labels("mismatch").inc()
            raise RequestRejected(403, "signature_mismatch", "signature does not match")
        return set().union(*(candidates[s] for s in matched))

    async def enforce_limits(client: IpAddress | None, tenants: set[str]) -> None:
        if limiter is None:
            return
        limits = [(f"ip:{client}", config.rate_limit_per_ip)]
        limits += [(f"tenant:{t}", config.rate_limit_per_tenant) for t in sorted(tenants)]
        try:
            retry_after = await limiter.hit(limits)
        except AdapterError as exc:
            # Fail open: the append that follows needs the same store and answers 503 if it
            # is really down; refusing here would make Meta retry deliveries we could store.
            metrics.limiter_errors.inc()
            log.warning("rate_limiter_unavailable", error=str(exc))
            return
        if retry_after > 0:
            seconds = str(max(1, math.ceil(retry_after)))
            raise RequestRejected(
                429, "rate_limited", "too many requests", {"Retry-After": seconds}
            )

    async def accept(request: Request, tenant_id: str | None) -> JSONResponse:
        received_at = datetime.now(UTC)
        started = request.state.started = time.perf_counter()
        client = admit_source(request)
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type not in _JSON_TYPES:
            raise RequestRejected(415, "unsupported_media_type", "Content-Type must be JSON")
        try:
            async with asyncio.timeout(config.body_timeout_s):
                body = await _read_capped(request, config.max_body_bytes)
        except TimeoutError as exc:
            raise RequestRejected(408, "request_timeout", "body not received in time") from exc
        metrics.body_bytes.observe(len(body))
        verified = verify(body, request.headers.get("x-hub-signature-256"), tenant_id)
        try:
            payload = orjson.loads(body)
            check_bounds(payload, config.max_json_depth, config.max_json_array)
        except orjson.JSONDecodeError as exc:
            raise RequestRejected(400, "invalid_json", "body is not valid JSON") from exc
        except BodyOutOfBounds as exc:
            raise RequestRejected(400, "body_out_of_bounds", str(exc)) from exc

        def resolve(phone_number_id: str | None, waba_id: str | None) -> str | None:
            tenant = directory.resolve(phone_number_id, waba_id)
            if tenant is None:
                return None
            if tenant.id not in verified:
                raise _TenantNotVerified(tenant.id)
            return tenant.id

        ctx = DeliveryContext(uuid.uuid4().hex, received_at, config.partitions)
        try:
            items = split_delivery(payload, ctx, resolve)
        except EnvelopeError as exc:
            raise RequestRejected(400, "not_a_whatsapp_webhook", str(exc)) from exc
        except UnknownNumberError as exc:
            raise RequestRejected(403, "unknown_business_number", str(exc)) from exc
        except _TenantNotVerified as exc:
            metrics.signature_failures.labels("tenant_mismatch").inc()
            raise RequestRejected(403, "signature_mismatch", "signature does not match") from exc
        await enforce_limits(client, {item.tenant_id for item in items})
        append_started = time.perf_counter()
        # 128 bits of the body's SHA-256: collisions are out of reach, keys stay short.
        delivery_key = "d:" + hashlib.sha256(body).hexdigest()[:32]
        try:
            stored = await batcher.append(delivery_key, items)
        except AdapterError as exc:
            log.error("inbox_append_failed", delivery_id=ctx.delivery_id, error=str(exc))
            raise RequestRejected(503, "inbox_unavailable", "try again later") from exc
        done = time.perf_counter()
        metrics.append_duration.observe(done - append_started)
        if not stored:
            metrics.duplicates.inc()
            metrics.observe_request("duplicate", done - started)
            log.debug("webhook_duplicate", source=mask_address(client))
            return JSONResponse({"status": "duplicate", "items": 0})
        metrics.observe_request("accepted", done - started)
        for item in items:
            metrics.items.labels(item.kind).inc()
        log.debug("webhook_accepted", delivery_id=ctx.delivery_id, items=len(items))
        return JSONResponse(
            {"status": "accepted", "delivery_id": ctx.delivery_id, "items": len(items)}
        )

    @app.post("/webhook", summary="Receive a webhook delivery from Meta")
    async def receive(request: Request) -> JSONResponse:
        """Verify, split into items, store durably, then 200."""
        return await accept(request, None)

    @app.post("/webhook/{tenant_id}", summary="Receive a delivery on a tenant's own path")
    async def receive_tenant(tenant_id: str, request: Request) -> JSONResponse:
        """As POST /webhook, checked against this tenant's secrets only."""
        if directory.get(tenant_id) is None:
            raise RequestRejected(404, "unknown_tenant", "no such tenant")
        return await accept(request, tenant_id)

    if config.admin_token is not None:
        app.include_router(
            admin_router(config.admin_token, directory, deps.inbox, config.partitions)
        )

    @app.get("/metrics", summary="Prometheus metrics of this replica", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        """The ingress metrics in the Prometheus text format."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: dependencies reachable")
    async def readyz() -> JSONResponse:
        """200 when the inbox (and every other configured dependency) answers, else 503."""
        checks: dict[str, str] = {}
        for name, check in {"inbox": deps.inbox.ping, **deps.ready_checks}.items():
            try:
                await check()
                checks[name] = "ok"
            except Exception as exc:  # noqa: BLE001 -- readiness reports any failure as 'down'
                checks[name] = f"down: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    return app
