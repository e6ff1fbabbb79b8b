"""The webhook POST: every check in order, cheapest first, then the durable append.

source allowlist (403) -> content type (415) -> body cap, read deadline and the replica's
budget of unverified bytes (400/413/408/503) -> signature (401/403) -> JSON and shape
bounds (400) -> envelope, tenant ownership and delivery size (400/403/413) -> rate limits
(429) -> durable append with delivery dedup (503, also when the limiter and the append
together take longer than the ack timeout) -> 200. Nothing is stored until every check has
passed.

Tenant resolution never trusts the body before the signature: the raw bytes are checked
against every configured secret (or, on `/webhook/{tenant_id}`, that tenant's secrets,
padded so that every tenant path, configured or not, costs as many HMACs and fails alike:
ingress/candidates.py) first; only then is the body parsed, and each item's number must
belong to a tenant whose secret matched. Every candidate secret is computed, so timing
reveals nothing. A number of another configured tenant refuses the whole delivery; a
number nobody owns does not: its change is kept aside in the same append (the unowned
partition, models/routing.py) with the ids of the tenants that signed it, counted and
logged, and the 200 says how many items; such a delivery counts against those tenants'
rate limits. A number only the default tenant's fallback would own counts as nobody's
when the default did not sign.

Each check is one method that returns what the next one needs or raises the
RequestRejected subclass naming what happened (ingress/rejection.py); `receive` is the
hot path and only calls them in order.
"""

from __future__ import annotations

import asyncio
import time
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
from ingress.candidates import SecretCandidates
from ingress.client_ip import IpAddress, mask_address
from ingress.config import IngressConfig
from ingress.metrics import IngressMetrics
from ingress.rejection import (
    DeliveryTooLarge,
    InboxUnavailable,
    InvalidJson,
    NotAWebhook,
    RateLimited,
    SignatureInvalid,
    SignatureMissing,
    SourceNotAllowed,
    TooManyItems,
    UnsupportedMediaType,
)
from ingress.signature import matching_secrets, parse_signature
from ingress.unverified import BodyHold, UnverifiedBudget, read_body
from models import dedup
from models.archive import RawDelivery, new_delivery_id
from models.delivery_size import DeliveryLimits, DeliveryTooLargeError, TooManyItemsError
from models.envelope import DeliveryContext, EnvelopeError, Split, count_items, split_signed
from models.inbox import InboxItem
from models.tenant import TenantDirectory

log = structlog.get_logger("ingress")

_JSON_TYPES = frozenset({"application/json"})
_NO_ANSWER = "the inbox did not answer in time, try again later"


def _masked(meta_id: str | None) -> str:
    """A Meta id for the logs: its last four characters only."""
    return "***" + (meta_id or "")[-4:]


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
        self.candidates = SecretCandidates(directory)
        self.budget = UnverifiedBudget(config.max_unverified_bytes)
        metrics.unverified_bytes.set_function(lambda: self.budget.in_use)
        caps = (config.max_items_per_delivery, config.max_item_bytes, config.max_stored_ratio)
        self.limits = DeliveryLimits(*caps, dumps=orjson.dumps)

    async def receive(self, request: Request, tenant_id: str | None) -> JSONResponse:
        """Run every check, store the items durably, then 200; else raise a rejection."""
        received_at = datetime.now(UTC)
        started = request.state.started = time.perf_counter()
        client = self.admit_source(request)
        headers = request.headers
        self.check_media_type(headers.get("content-type", ""))
        with self.budget.hold() as hold:  # released once verified, or on any way out
            body = await self.read_body(request, hold)
            verified = self.verify(body, headers.get("x-hub-signature-256"), tenant_id)
        payload = self.parse(body)
        ctx = DeliveryContext(new_delivery_id(received_at), received_at, self.config.partitions)
        split = self.split(payload, ctx, verified, len(body))
        # One deadline for both of the store's round trips (docs/reliability.md).
        deadline = asyncio.get_running_loop().time() + self.config.ack_timeout_s
        await self.enforce_limits(client, self.charged_tenants(split, verified), deadline)
        raw = self.raw_delivery(body, headers.get("x-hub-signature-256"), split, ctx, verified)
        stored = await self.store(body, split.entries, ctx, raw, deadline)
        return self.answer(stored, split, ctx, client, started)

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

    async def read_body(self, request: Request, hold: BodyHold | None = None) -> bytes:
        """The raw body, read within the deadline (BodyTimeout), the cap (BodyTooLarge,
        declared or streamed: a body is never read past the cap) and the replica's budget
        of unverified bytes, charged to `hold` (Overloaded; without a hold, one released on
        return); BadContentLength if the declared length is not a number."""
        if hold is None:
            with self.budget.hold() as own:
                return await self.read_body(request, own)
        config = self.config
        body = await read_body(request, config.max_body_bytes, config.body_timeout_s, hold)
        self.metrics.body_bytes.observe(len(body))
        return body

    def verify(self, body: bytes, header: str | None, tenant_id: str | None) -> set[str]:
        """The ids of the tenants whose secret signed the body (only `tenant_id`'s secrets
        when given, padded with decoys; none but decoys for an unknown tenant);
        SignatureMissing or SignatureInvalid, each counted."""
        try:
            digest = parse_signature(header)
        except SignatureMissing:
            self.metrics.signature_failures.labels("missing" if not header else "malformed").inc()
            raise
        candidates = self.candidates.for_path(tenant_id)
        matched = matching_secrets(digest, body, candidates)
        if not matched:
            self.metrics.signature_failures.labels("mismatch").inc()
            raise SignatureInvalid
        return set().union(*(candidates[s] for s in matched))

    def parse(self, body: bytes) -> Any:
        """The body parsed once; InvalidJson, or BodyOutOfBounds past the depth, array or
        value-count bounds."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidJson from exc
        config = self.config
        check_bounds(payload, config.max_json_depth, config.max_json_array, config.max_json_nodes)
        return payload

    def split(
        self,
        payload: Any,
        ctx: DeliveryContext,
        verified: set[str],
        body_bytes: int | None = None,
    ) -> Split:
        """The delivery's items, each of a tenant in `verified`, and the changes of numbers
        nobody owns held aside (with `verified` as their `signed_by`); NotAWebhook,
        SignatureInvalid when the body names a number or WABA another tenant claims,
        TooManyItems or DeliveryTooLarge past the limits (the stored size relative to
        `body_bytes`, by default the payload's compact size). A number only the default
        tenant's fallback owns is the default's if it signed, else held like any other
        number nobody owns."""
        directory, failures = self.directory, self.metrics.signature_failures

        def resolve(phone_number_id: str | None, waba_id: str | None) -> str | None:
            tenant, fallback = directory.claim(phone_number_id, waba_id)
            if tenant is None or (fallback and tenant.id not in verified):
                return None
            if tenant.id not in verified:
                failures.labels("tenant_mismatch").inc()
                raise SignatureInvalid
            return tenant.id

        size = len(orjson.dumps(payload)) if body_bytes is None else body_bytes
        try:
            return split_signed(payload, ctx, resolve, self.limits, size, verified)
        except EnvelopeError as exc:
            raise NotAWebhook(str(exc)) from exc
        except TooManyItemsError as exc:
            raise TooManyItems(str(exc)) from exc
        except DeliveryTooLargeError as exc:
            raise DeliveryTooLarge(str(exc)) from exc

    @staticmethod
    def charged_tenants(split: Split, verified: set[str]) -> set[str]:
        """The tenants a delivery counts against: those of its items and, when it holds
        changes of numbers nobody owns, the tenants whose secret signed it (so a signer
        cannot fill the unowned partition beyond its own tenant limit)."""
        tenants = {item.tenant_id for item in split.items}
        return tenants | verified if split.held else tenants

    async def enforce_limits(
        self, client: IpAddress | None, tenants: set[str], deadline: float | None = None
    ) -> None:
        """Count the request against its address and each tenant; RateLimited when over.
        A limiter that fails, or has not answered by `deadline` (loop time), lets it pass."""
        limiter = self.limiter
        if limiter is None:
            return
        limits = [(f"ip:{client}", self.config.rate_limit_per_ip)]
        limits += [(f"tenant:{t}", self.config.rate_limit_per_tenant) for t in sorted(tenants)]
        try:
            async with asyncio.timeout_at(deadline):
                retry_after = await limiter.hit(limits)
        except (AdapterError, TimeoutError) as exc:
            # Fail open: the append that follows needs the same store and answers 503 if it
            # is really down (within what is left of the deadline); refusing here would
            # make Meta retry deliveries we could store.
            self.metrics.limiter_errors.inc()
            log.warning("rate_limiter_unavailable", error=str(exc) or type(exc).__name__)
            return
        if retry_after > 0:
            raise RateLimited(retry_after)

    @staticmethod
    def raw_delivery(
        body: bytes,
        signature: str | None,
        split: Split,
        ctx: DeliveryContext,
        verified: set[str],
    ) -> RawDelivery:
        """The body for the archive, appended with the items (the archiver moves it to the
        archive store: docs/archive.md), filed under the items' tenants, else under the
        signers (a body of numbers nobody owns is kept too)."""
        owners = {(i.phone_number_id, i.waba_id, i.tenant_id) for i in split.items}
        tenants = {owner[2] for owner in owners} or verified
        return RawDelivery(
            delivery_id=ctx.delivery_id,
            received_at=ctx.received_at,
            tenants=tuple(sorted(tenants)),
            signed_by=tuple(sorted(verified)),
            owners=tuple(sorted(owners, key=str)),
            signature=signature,
            body=body,
        )

    async def store(
        self,
        body: bytes,
        items: list[InboxItem],
        ctx: DeliveryContext,
        raw: RawDelivery | None = None,
        deadline: float | None = None,
    ) -> bool:
        """True once the items (and `raw`, in the same atomic step) are durable, False for
        a duplicate body; InboxUnavailable if the inbox failed (then nothing was marked, so
        Meta's retry is stored) or had not answered by `deadline` (loop time).

        Past the deadline the request is answered 503 and the append it started may still
        land: its delivery mark is written in the same atomic step as its items, so Meta's
        retry is then answered `duplicate` (stored once), else stored. 200 is only ever
        the answer of an append that finished.
        """
        append_started = time.perf_counter()
        if deadline is not None and asyncio.get_running_loop().time() >= deadline:
            # The limiter used the whole budget (the store is hung): nothing sent to it.
            log.error("inbox_append_timed_out", delivery_id=ctx.delivery_id, sent=False)
            raise InboxUnavailable(_NO_ANSWER)
        # 128 bits of the body's SHA-256: collisions are out of reach, keys stay short.
        delivery_key = dedup.delivery_key(body)
        try:
            async with asyncio.timeout_at(deadline):
                stored = await self.batcher.append(delivery_key, items, raw)
        except AdapterError as exc:
            log.error("inbox_append_failed", delivery_id=ctx.delivery_id, error=str(exc))
            raise InboxUnavailable from exc
        except TimeoutError as exc:
            log.error("inbox_append_timed_out", delivery_id=ctx.delivery_id)
            raise InboxUnavailable(_NO_ANSWER) from exc
        self.metrics.append_duration.observe(time.perf_counter() - append_started)
        return stored

    def answer(
        self,
        stored: bool,
        split: Split,
        ctx: DeliveryContext,
        client: IpAddress | None,
        started: float,
    ) -> JSONResponse:
        """The 200, counted: `accepted` with the delivery id, the item count and (when some
        were kept aside) the unowned count, or `duplicate`."""
        elapsed = time.perf_counter() - started
        if not stored:
            self.metrics.duplicates.inc()
            self.metrics.observe_request("duplicate", elapsed)
            log.debug("webhook_duplicate", source=mask_address(client))
            return JSONResponse({"status": "duplicate", "items": 0})
        self.metrics.observe_request("accepted", elapsed)
        for item in split.items:
            self.metrics.items.labels(item.kind).inc()
        reply: dict[str, Any] = {
            "status": "accepted",
            "delivery_id": ctx.delivery_id,
            "items": len(split.items),
        }
        if split.held:
            reply["unowned"] = self.report_unowned(split.held)
        log.debug("webhook_accepted", delivery_id=ctx.delivery_id, items=len(split.items))
        return JSONResponse(reply)

    def report_unowned(self, held: list[InboxItem]) -> int:
        """Count and log (ids masked) the stored changes of numbers nobody owns; their items."""
        total = 0
        for entry in held:
            items = count_items(entry.item)
            total += items
            log.warning(
                "webhook_items_unowned",
                delivery_id=entry.delivery_id,
                phone_number_id=_masked(entry.phone_number_id),
                waba_id=_masked(entry.waba_id),
                field=entry.field,
                items=items,
            )
        self.metrics.items.labels("unowned").inc(total)
        return total


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
        """As POST /webhook, checked against this tenant's secrets only (a tenant that is
        not configured is answered like a wrong signature)."""
        return await receiver.receive(request, tenant_id)
