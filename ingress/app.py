"""The FastAPI application: Meta's handshake, the webhook POST, health and readiness."""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import structlog
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from adapters.errors import AdapterError
from adapters.ports import Inbox
from ingress.batcher import AppendBatcher
from ingress.metrics import IngressMetrics
from ingress.signature import SignatureMissing, matching_secrets, parse_signature
from models.envelope import DeliveryContext, EnvelopeError, UnknownNumberError, split_delivery
from models.tenant import TenantDirectory

log = structlog.get_logger("ingress")

ReadyCheck = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class IngressConfig:
    """The ingress's narrow view of the settings."""

    partitions: int
    max_body_bytes: int = 4 * 1024 * 1024
    append_linger_s: float = 0.001
    append_max_items: int = 512


@dataclass(slots=True)
class IngressDeps:
    """Everything the app needs, built per replica by the composition root."""

    config: IngressConfig
    directory: TenantDirectory
    inbox: Inbox
    ready_checks: dict[str, ReadyCheck] = field(default_factory=dict)


class RequestRejected(Exception):
    """A request answered with a 4xx/5xx and a JSON error; nothing was stored."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _TenantNotVerified(LookupError):
    """The body names a number of a tenant whose secret did not sign it."""


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The one shape of every error body: {"error": {"code", "message"}}."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


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


def create_app(deps: IngressDeps) -> FastAPI:
    """Build the ingress app around per-replica dependencies (no module-level clients)."""
    app = FastAPI(
        title="WhatsApp webhook ingestion",
        version="0.1.0",
        description="Receives Meta's WhatsApp Cloud API webhooks and stores them durably.",
    )
    directory = deps.directory
    config = deps.config
    batcher = AppendBatcher(deps.inbox, config.append_linger_s, config.append_max_items)
    app.state.batcher = batcher
    metrics = IngressMetrics()
    app.state.metrics = metrics
    all_secrets = directory.secrets()

    @app.exception_handler(RequestRejected)
    async def rejected(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestRejected)
        log.info("webhook_rejected", code=exc.code, status=exc.status, path=request.url.path)
        started = getattr(request.state, "started", None)
        if started is not None:
            metrics.observe_request(exc.code, time.perf_counter() - started)
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path, error_type=type(exc).__name__)
        return error_response(500, "internal_error", "internal error")

    def handshake(
        mode: str | None, token: str | None, challenge: str | None, tenant: str | None
    ) -> Response:
        tenants = (
            directory.tenants
            if tenant is None
            else tuple(t for t in directory.tenants if t.id == tenant)
        )
        ok = False
        given = (token or "").encode()
        for candidate in tenants:
            if candidate.verify_token is not None:
                expected = candidate.verify_token.get_secret_value().encode()
                ok |= hmac.compare_digest(expected, given)
        if mode != "subscribe" or not ok or not challenge or len(challenge) > 512:
            return error_response(403, "verification_failed", "verification failed")
        return PlainTextResponse(challenge)

    @app.get("/webhook", response_model=None, summary="Meta's subscription handshake")
    async def verify(
        mode: str | None = Query(None, alias="hub.mode"),
        token: str | None = Query(None, alias="hub.verify_token"),
        challenge: str | None = Query(None, alias="hub.challenge"),
    ) -> Response:
        """Echo hub.challenge when hub.mode=subscribe and the verify token matches."""
        return handshake(mode, token, challenge, None)

    @app.get("/webhook/{tenant_id}", response_model=None, summary="Handshake, per-tenant path")
    async def verify_tenant(
        tenant_id: str,
        mode: str | None = Query(None, alias="hub.mode"),
        token: str | None = Query(None, alias="hub.verify_token"),
        challenge: str | None = Query(None, alias="hub.challenge"),
    ) -> Response:
        """The handshake against one tenant's verify token."""
        return handshake(mode, token, challenge, tenant_id)

    async def accept(request: Request, tenant_id: str | None) -> JSONResponse:
        received_at = datetime.now(UTC)
        started = request.state.started = time.perf_counter()
        body = await _read_capped(request, config.max_body_bytes)
        metrics.body_bytes.observe(len(body))
        try:
            digest = parse_signature(request.headers.get("x-hub-signature-256"))
        except SignatureMissing as exc:
            raise RequestRejected(401, "signature_missing", str(exc)) from exc
        candidates = all_secrets if tenant_id is None else directory.secrets(tenant_id)
        matched = matching_secrets(digest, body, candidates)
        if not matched:
            raise RequestRejected(403, "signature_mismatch", "signature does not match")
        verified: set[str] = set().union(*(candidates[s] for s in matched))
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RequestRejected(400, "invalid_json", "body is not valid JSON") from exc

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
            raise RequestRejected(403, "signature_mismatch", "signature does not match") from exc
        append_started = time.perf_counter()
        try:
            await batcher.append(items)
        except AdapterError as exc:
            log.error("inbox_append_failed", delivery_id=ctx.delivery_id, error=str(exc))
            raise RequestRejected(503, "inbox_unavailable", "try again later") from exc
        done = time.perf_counter()
        metrics.append_duration.observe(done - append_started)
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
