"""The webhook POST: every check in order, cheapest first, then the durable append.

source allowlist (403) -> content type (415) -> body cap, read deadline and the replica's
budget of unverified bytes (400/413/408/503) -> signature (401/403) -> JSON and shape
bounds (400) -> envelope, tenant ownership and delivery size (400/403/413) -> rate limits
(429) -> durable append with delivery dedup (503, also when the limiter and the append
together take longer than the ack timeout) -> 200. Nothing is stored until every check has
passed.

Per tenant (ingress/tenant_gates.py, docs/tenants.md "Webhook endpoint per tenant"): on
`/webhook/{tenant_id}` the allowlist and the body cap are the tenant's own, and a disabled
tenant is refused 403 `tenant_disabled` right after its signature verified. On `/webhook`
the service's allowlist and cap apply before reading; once the delivery is split, its
tenants (those owning its items, else the signers) are checked: any disabled refuses the
whole delivery (Meta retries all of it), and each one's allowlist, where stricter than the
service's, and body cap must admit it. The rate limits are each tenant's own when it sets
them.

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
from collections.abc import Collection
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
    BodyTooLarge,
    DeliveryTooLarge,
    InboxUnavailable,
    InvalidJson,
    NotAWebhook,
    RateLimited,
    SignatureInvalid,
    SignatureMissing,
    SourceNotAllowed,
    TenantDisabled,
    TooManyItems,
    UnsupportedMediaType,
)
from ingress.signature import matching_secrets, parse_signature
from ingress.tenant_gates import UNKNOWN, GateSet, TenantGate, TenantGates
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
        self.gates = TenantGates(directory, config.source_policy, config.max_body_bytes)
        self.budget = UnverifiedBudget(config.max_unverified_bytes)
        metrics.unverified_bytes.set_function(lambda: self.budget.in_use)
        caps = (config.max_items_per_delivery, config.max_item_bytes, config.max_stored_ratio)
        self.limits = DeliveryLimits(*caps, dumps=orjson.dumps)

    async def receive(self, request: Request, tenant_id: str | None) -> JSONResponse:
        """Run every check, store the items durably, then 200; else raise a rejection."""
        received_at = datetime.now(UTC)
        state = request.state
        started = state.started = time.perf_counter()
        gates = self.gates.current()
        gate = gates.gates.get(tenant_id) if gates.gates and tenant_id is not None else None
        if tenant_id is not None:  # the rejections' tenant label (ingress/error_handlers.py)
            state.tenants = gates.labels.get(tenant_id, UNKNOWN)
        client = self.admit_source(request, tenant_id)
        headers = request.headers
        self.check_media_type(headers.get("content-type", ""))
        with self.budget.hold() as hold:  # released once verified, or on any way out
            body = await self.read_body(request, hold, gate.max_body_bytes if gate else None)
            verified = self.verify(body, headers.get("x-hub-signature-256"), tenant_id)
        if gate is not None and gate.disabled:  # only now: its signature verified
            raise TenantDisabled
        if tenant_id is None:
            state.tenants = verified
        payload = self.parse(body)
        ctx = DeliveryContext(
            new_delivery_id(received_at),
            received_at,
            self.config.partitions,
            self.directory.registry_version,
        )
        split = self.split(payload, ctx, verified, len(body))
        owners = {item.tenant_id for item in split.items}
        if tenant_id is None:  # on a tenant's path, every item is that tenant's (verify)
            if owners and owners != verified:
                state.tenants = owners
            if gates.gates:
                self.check_tenants(gates, owners or verified, client, len(body), state)
        # One deadline for both of the store's round trips (docs/reliability.md).
        deadline = asyncio.get_running_loop().time() + self.config.ack_timeout_s
        # Changes of numbers nobody owns count against the signers too, so a signer cannot
        # fill the unowned partition beyond its own tenant limit.
        charged = owners | verified if split.held else owners
        await self.enforce_limits(client, charged, deadline, gates)
        raw = self.raw_delivery(body, headers.get("x-hub-signature-256"), split, ctx, verified)
        stored = await self.store(body, split.entries, ctx, raw, deadline)
        return self.answer(stored, split, ctx, client, started)

    def admit_source(self, request: Request, tenant_id: str | None = None) -> IpAddress | None:
        """The client address (kept in request.state for the logs); SourceNotAllowed when
        the allowlist does not hold it: the service's, or on a tenant's path the tenant's."""
        peer = request.client.host if request.client else None
        client = self.policy.client(peer, request.headers.getlist("x-forwarded-for"))
        request.state.client = client
        policy = self.policy
        if tenant_id is not None:
            gates = self.gates.current().gates
            gate = gates.get(tenant_id) if gates else None
            if gate is not None:
                policy = gate.policy
        if not policy.allows(client):
            raise SourceNotAllowed
        return client

    def check_tenants(
        self,
        gates: GateSet,
        tenants: Collection[str],
        client: IpAddress | None,
        size: int,
        state: Any = None,
    ) -> None:
        """The checks of the tenants a delivery on `/webhook` belongs to, once verified:
        TenantDisabled if any is disabled (the whole delivery: Meta retries it whole;
        counted under the disabled ones, named in `state`), SourceNotAllowed if the
        allowlist of one whose policy is stricter than the service's refuses the client,
        BodyTooLarge past one's body cap."""
        found = {t: gate for t in tenants if (gate := gates.gates.get(t)) is not None}
        if not found:
            return
        disabled = sorted(t for t, gate in found.items() if gate.disabled)
        if disabled:
            if state is not None:
                state.tenants = disabled
            raise TenantDisabled
        for gate in found.values():
            if gate.strict and not gate.policy.allows(client):
                raise SourceNotAllowed
        cap = min(gate.max_body_bytes for gate in found.values())
        if size > cap:
            raise BodyTooLarge(cap)

    def check_media_type(self, content_type: str) -> None:
        """UnsupportedMediaType unless the Content-Type is JSON (parameters ignored)."""
        if content_type.split(";", 1)[0].strip().lower() not in _JSON_TYPES:
            raise UnsupportedMediaType

    async def read_body(
        self, request: Request, hold: BodyHold | None = None, cap: int | None = None
    ) -> bytes:
        """The raw body, read within the deadline (BodyTimeout), the cap (BodyTooLarge,
        declared or streamed: a body is never read past the cap; the service's unless
        given) and the replica's budget of unverified bytes, charged to `hold` (Overloaded;
        without a hold, one released on return); BadContentLength if the declared length
        is not a number."""
        if hold is None:
            with self.budget.hold() as own:
                return await self.read_body(request, own, cap)
        config = self.config
        cap = config.max_body_bytes if cap is None else cap
        body = await read_body(request, cap, config.body_timeout_s, hold)
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

    async def enforce_limits(
        self,
        client: IpAddress | None,
        tenants: set[str],
        deadline: float | None = None,
        gates: GateSet | None = None,
    ) -> None:
        """Count the request against its address and each tenant; RateLimited when over.
        A limiter that fails, or has not answered by `deadline` (loop time), lets it pass;
        `gates`: the request's (default: the directory's current ones).

        A tenant's rules.rate_limits replace the service's limits for it: its own
        per-tenant limit, and with `per_ip`, a per-address counter of its own (`ipt:`) in
        place of the one every other tenant's requests share."""
        limiter = self.limiter
        if limiter is None:
            return
        config = self.config
        by_tenant = (gates or self.gates.current()).gates
        if not by_tenant:
            limits = [(f"ip:{client}", config.rate_limit_per_ip)]
            limits += [(f"tenant:{t}", config.rate_limit_per_tenant) for t in sorted(tenants)]
        else:
            limits = self.tenant_limits(by_tenant, client, tenants)
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

    def tenant_limits(
        self, gates: dict[str, TenantGate], client: IpAddress | None, tenants: Collection[str]
    ) -> list[tuple[str, int]]:
        """The (key, limit) pairs of a request when some tenant has gates: see enforce_limits."""
        config = self.config
        shared_ip = not tenants
        own: list[tuple[str, int]] = []
        for t in sorted(tenants):
            gate = gates.get(t)
            if gate is not None and gate.per_ip is not None:
                own.append((f"ipt:{t}:{client}", gate.per_ip))
            else:
                shared_ip = True
            per_tenant = gate.per_tenant if gate is not None else None
            own.append((f"tenant:{t}", per_tenant or config.rate_limit_per_tenant))
        return [(f"ip:{client}", config.rate_limit_per_ip), *own] if shared_ip else own

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
        metrics = self.metrics
        metrics.observe_request("accepted", elapsed)
        for item in split.items:
            metrics.items.labels(item.kind).inc()
            metrics.count_tenant_items(item.tenant_id)
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
