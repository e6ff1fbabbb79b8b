"""The webhook POST: every check in order, cheapest first, then the durable append.

source allowlist (403) -> content type (415) -> body cap and read deadline (400/413/408) ->
signature (401/403) -> JSON and shape bounds (400) -> envelope and tenant ownership
(400/403) -> rate limits (429) -> durable append with delivery dedup (503) -> 200.
Nothing is stored until every check has passed.

Tenant resolution never trusts the body before the signature: the raw bytes are checked
against every configured secret (or, on `/webhook/{tenant_id}`, that tenant's secrets)
first; only then is the body parsed, and each item's number must belong to a tenant whose
secret matched. Every candidate secret is computed, so timing reveals nothing.

Each check is one method that returns what the next one needs or raises the
RequestRejected subclass naming what happened (ingress/rejection.py); `receive` is the
hot path and only calls them in order.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from adapters.errors import AdapterError
from adapters.ports import RateLimiter
from ingress.batcher import AppendBatcher
from ingress.bounds import check_bounds
from ingress.client_ip import IpAddress, mask_address
from ingress.config import IngressConfig
from ingress.metrics import IngressMetrics
from ingress.rejection import (
    BadContentLength,
    BodyTimeout,
    BodyTooLarge,
    InboxUnavailable,
    InvalidJson,
    NotAWebhook,
    RateLimited,
    SignatureInvalid,
    SignatureMissing,
    SourceNotAllowed,
    UnknownBusinessNumber,
    UnknownTenant,
    UnsupportedMediaType,
)
from ingress.signature import matching_secrets, parse_signature
from models import dedup
from models.envelope import DeliveryContext, EnvelopeError, UnknownNumberError, split_delivery
from models.inbox import InboxItem
from models.tenant import TenantDirectory

log = structlog.get_logger("ingress")

_JSON_TYPES = frozenset({"application/json"})


class WebhookReceiver:
    """The POST /webhook pipeline of one replica, its dependencies as attributes."""

    def __init__(
        self,
        config: IngressConfig,
        directory: TenantDirectory,
        batcher: AppendBatcher,
        metrics: IngressMetrics,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.config = config
        self.directory = directory
        self.batcher = batcher
        self.metrics = metrics
        self.limiter = limiter  # None: no rate limits
        self.policy = config.source_policy
        self.all_secrets = directory.secrets()

    async def receive(self, request: Request, tenant_id: str | None) -> JSONResponse:
        """Run every check, store the items durably, then 200; else raise a rejection."""
        received_at = datetime.now(UTC)
        started = request.state.started = time.perf_counter()
        client = self.admit_source(request)
        headers = request.headers
        self.check_media_type(headers.get("content-type", ""))
        body = await self.read_body(request)
        verified = self.verify(body, headers.get("x-hub-signature-256"), tenant_id)
        payload = self.parse(body)
        ctx = DeliveryContext(uuid.uuid4().hex, received_at, self.config.partitions)
        items = self.split(payload, ctx, verified)
        await self.enforce_limits(client, {item.tenant_id for item in items})
        stored = await self.store(body, items, ctx)
        return self.answer(stored, items, ctx, client, started)

    def check_tenant_path(self, tenant_id: str) -> None:
        """UnknownTenant unless `tenant_id` (of /webhook/{tenant_id}) is configured."""
        if self.directory.get(tenant_id) is None:
            raise UnknownTenant

    def admit_source(self, request: Request) -> IpAddress | None:
        """The client address (kept in request.state for the logs); SourceNotAllowed when
        the allowlist does not hold it."""
        peer = request.client.host if request.client else None
        client = self.policy.client(peer, request.headers.getlist("x-forwarded-for"))
        request.state.client = client
        if not self.policy.allows(client):
            raise SourceNotAllowed
        return client

    def check_media_type(self, content_type: str) -> None:
        """UnsupportedMediaType unless the Content-Type is JSON (parameters ignored)."""
        if content_type.split(";", 1)[0].strip().lower() not in _JSON_TYPES:
            raise UnsupportedMediaType

    async def read_body(self, request: Request) -> bytes:
        """The raw body, read within the deadline (BodyTimeout) and the cap (BodyTooLarge,
        declared or streamed: a body is never read past the cap); BadContentLength if the
        declared length is not a number."""
        cap = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise BadContentLength
            if int(declared) > cap:
                raise BodyTooLarge(cap)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.config.body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > cap:
                        raise BodyTooLarge(cap)
                    chunks.append(chunk)
        except TimeoutError as exc:
            raise BodyTimeout from exc
        body = b"".join(chunks)
        self.metrics.body_bytes.observe(len(body))
        return body

    def verify(self, body: bytes, header: str | None, tenant_id: str | None) -> set[str]:
        """The ids of the tenants whose secret signed the body (only `tenant_id`'s secrets
        when given); SignatureMissing or SignatureInvalid, each counted."""
        try:
            digest = parse_signature(header)
        except SignatureMissing:
            self.metrics.signature_failures.labels("missing" if not header else "malformed").inc()
            raise
        candidates = self.all_secrets if tenant_id is None else self.directory.secrets(tenant_id)
        matched = matching_secrets(digest, body, candidates)
        if not matched:
            self.metrics.signature_failures.labels("mismatch").inc()
            raise SignatureInvalid
        return set().union(*(candidates[s] for s in matched))

    def parse(self, body: bytes) -> Any:
        """The body parsed once; InvalidJson, or BodyOutOfBounds past the depth/array bounds."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidJson from exc
        check_bounds(payload, self.config.max_json_depth, self.config.max_json_array)
        return payload

    def split(self, payload: Any, ctx: DeliveryContext, verified: set[str]) -> list[InboxItem]:
        """The delivery's items, each of a tenant in `verified`; NotAWebhook,
        UnknownBusinessNumber, or SignatureInvalid when the body names another tenant."""
        directory, failures = self.directory, self.metrics.signature_failures

        def resolve(phone_number_id: str | None, waba_id: str | None) -> str | None:
            tenant = directory.resolve(phone_number_id, waba_id)
            if tenant is None:
                return None
            if tenant.id not in verified:
                failures.labels("tenant_mismatch").inc()
                raise SignatureInvalid
            return tenant.id

        try:
            return split_delivery(payload, ctx, resolve)
        except EnvelopeError as exc:
            raise NotAWebhook(str(exc)) from exc
        except UnknownNumberError as exc:
            raise UnknownBusinessNumber(str(exc)) from exc

    async def enforce_limits(self, client: IpAddress | None, tenants: set[str]) -> None:
        """Count the request against its address and each tenant; RateLimited when over."""
        limiter = self.limiter
        if limiter is None:
            return
        limits = [(f"ip:{client}", self.config.rate_limit_per_ip)]
        limits += [(f"tenant:{t}", self.config.rate_limit_per_tenant) for t in sorted(tenants)]
        try:
            retry_after = await limiter.hit(limits)
        except AdapterError as exc:
            # Fail open: the append that follows needs the same store and answers 503 if it
            # is really down; refusing here would make Meta retry deliveries we could store.
            self.metrics.limiter_errors.inc()
            log.warning("rate_limiter_unavailable", error=str(exc))
            return
        if retry_after > 0:
            raise RateLimited(retry_after)

    async def store(self, body: bytes, items: list[InboxItem], ctx: DeliveryContext) -> bool:
        """True once the items are durable, False for a duplicate body; InboxUnavailable
        if the inbox failed (then nothing was marked, so Meta's retry is stored)."""
        append_started = time.perf_counter()
        # 128 bits of the body's SHA-256: collisions are out of reach, keys stay short.
        delivery_key = dedup.delivery_key(body)
        try:
            stored = await self.batcher.append(delivery_key, items)
        except AdapterError as exc:
            log.error("inbox_append_failed", delivery_id=ctx.delivery_id, error=str(exc))
            raise InboxUnavailable from exc
        self.metrics.append_duration.observe(time.perf_counter() - append_started)
        return stored

    def answer(
        self,
        stored: bool,
        items: list[InboxItem],
        ctx: DeliveryContext,
        client: IpAddress | None,
        started: float,
    ) -> JSONResponse:
        """The 200, counted: `accepted` with the delivery id and item count, or `duplicate`."""
        elapsed = time.perf_counter() - started
        if not stored:
            self.metrics.duplicates.inc()
            self.metrics.observe_request("duplicate", elapsed)
            log.debug("webhook_duplicate", source=mask_address(client))
            return JSONResponse({"status": "duplicate", "items": 0})
        self.metrics.observe_request("accepted", elapsed)
        for item in items:
            self.metrics.items.labels(item.kind).inc()
        log.debug("webhook_accepted", delivery_id=ctx.delivery_id, items=len(items))
        return JSONResponse(
            {"status": "accepted", "delivery_id": ctx.delivery_id, "items": len(items)}
        )


def add_webhook_routes(app: FastAPI, receiver: WebhookReceiver) -> None:
    """POST /webhook and /webhook/{tenant_id}, on the app itself, not an included router:
    FastAPI 0.165 matches an included router's routes twice per request (measured: ~27
    more Python calls, ~10 us, about 4% of the in-process ack path)."""

    @app.post("/webhook", summary="Receive a webhook delivery from Meta")
    async def receive(request: Request) -> JSONResponse:
        """Verify, split into items, store durably, then 200."""
        return await receiver.receive(request, None)

    @app.post("/webhook/{tenant_id}", summary="Receive a delivery on a tenant's own path")
    async def receive_tenant(tenant_id: str, request: Request) -> JSONResponse:
        """As POST /webhook, checked against this tenant's secrets only."""
        receiver.check_tenant_path(tenant_id)
        return await receiver.receive(request, tenant_id)
