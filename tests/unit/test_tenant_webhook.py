"""The webhook endpoint per tenant (issue 13): the live directory's tenants, disabled
tenants, each tenant's source policy, body cap, rate limits and verify token, and the
per-tenant metrics, through the in-process app (docs/tenants.md "Webhook endpoint per
tenant").

Every request comes through a trusted proxy (the TCP peer is 127.0.0.1) whose
X-Forwarded-For names the client, so a test chooses the source address per request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from adapters.local_rate_limit import LocalRateLimiter
from adapters.ports import Inbox
from ingress.app import IngressDeps, create_app
from ingress.client_ip import SourcePolicy, parse_networks
from ingress.metrics import IngressMetrics
from models.tenant import RateLimitRule, Tenant, TenantDirectory, TenantRules, WebhookRule
from tests.support.app import signed
from tests.support.bodies import envelope, messages_value, text_message
from tests.support.clock import FixedClock
from tests.support.configs import ingress_config, sqlite_inbox

META = "203.0.113.7"  # inside the service's allowlist
STRANGER = "198.51.100.7"  # outside it
ELSEWHERE = "192.0.2.9"  # outside it and every tenant's extra networks
ALLOWLIST = ("203.0.113.0/24",)
PARTITIONS = 2
PER_IP = 50
PER_TENANT = 50
_wamids = count()


def make(
    tenant_id: str,
    phone: str,
    *,
    secret: str | None = None,
    default: bool = False,
    disabled: bool = False,
    webhook: WebhookRule | None = None,
    rate_limits: RateLimitRule | None = None,
    token: str | None = None,
) -> Tenant:
    """A tenant owning `phone`, signing with `<id>-secret` unless told."""
    return Tenant(
        id=tenant_id,
        app_secrets=(SecretStr(secret or f"{tenant_id}-secret"),),
        verify_token=SecretStr(token or f"{tenant_id}-token"),
        phone_number_ids=frozenset({phone}),
        default=default,
        disabled=disabled,
        rules=TenantRules(webhook=webhook, rate_limits=rate_limits),
    )


ACME = make("acme", "100100100", default=True)


def delivery(*phones: str, text: str = "hi") -> dict[str, Any]:
    """A fresh delivery: one message per number, each in its own change."""
    changes = [
        (
            "messages",
            messages_value(
                [text_message(f"wamid.T{next(_wamids)}", "1650555", text)], phone_number_id=p
            ),
        )
        for p in phones
    ]
    return envelope(*changes)


@dataclass
class Service:
    """The app on a live directory, and what it stored and counted."""

    directory: TenantDirectory
    app: Any
    inbox: Inbox
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    @property
    def metrics(self) -> IngressMetrics:
        metrics: IngressMetrics = self.app.state.metrics
        return metrics

    def client(self) -> httpx.AsyncClient:
        if "proxy" not in self.clients:
            transport = httpx.ASGITransport(app=self.app, client=("127.0.0.1", 40000))
            self.clients["proxy"] = httpx.AsyncClient(transport=transport, base_url="http://t")
        return self.clients["proxy"]

    async def post(
        self,
        body: Any,
        secret: str,
        path: str = "/webhook",
        source: str = META,
    ) -> httpx.Response:
        """POST `body` signed with `secret`, from `source` through the trusted proxy."""
        raw, headers = signed(body, secret)
        headers["X-Forwarded-For"] = source
        return await self.client().post(path, content=raw, headers=headers)

    async def handshake(self, path: str, token: str, source: str = META) -> httpx.Response:
        params = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "4242"}
        headers = {"X-Forwarded-For": source}
        return await self.client().get(path, params=params, headers=headers)

    async def stored(self) -> int:
        return sum([await self.inbox.backlog(p) for p in range(PARTITIONS)])

    def count(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def rejections(self, tenant: str, reason: str) -> float:
        return self.count("wa_webhook_tenant_rejections_total", tenant=tenant, reason=reason)

    def accepted_items(self, tenant: str) -> float:
        return self.count("wa_webhook_tenant_items_total", tenant=tenant)


@asynccontextmanager
async def service(
    tmp_path: Path,
    tenants: Iterable[Tenant],
    allowlist: tuple[str, ...] | None = ALLOWLIST,
    max_body_bytes: int = 64 * 1024,
) -> AsyncIterator[Service]:
    """The app with the service's allowlist `allowlist` (None: off), loopback trusted."""
    policy = SourcePolicy(
        trusted_proxies=parse_networks(["127.0.0.0/8"]),
        allowed=None if allowlist is None else parse_networks(allowlist),
    )
    config = ingress_config(
        partitions=PARTITIONS,
        max_body_bytes=max_body_bytes,
        rate_limit_per_ip=PER_IP,
        rate_limit_per_tenant=PER_TENANT,
        source_policy=policy,
    )
    directory = TenantDirectory(tenants)
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    limiter = LocalRateLimiter(60, clock=FixedClock())  # one window for the whole test
    app = create_app(IngressDeps(config, directory, inbox, rate_limiter=limiter))
    running = Service(directory, app, inbox)
    try:
        yield running
    finally:
        for client in running.clients.values():
            await client.aclose()
        await inbox.close()
        await limiter.close()


def code(reply: httpx.Response) -> str:
    """The error code of a refusal, or the status of an acceptance."""
    data = reply.json()
    return str(data["error"]["code"] if "error" in data else data["status"])


# --- the live directory ----------------------------------------------------------------------


async def test_a_tenant_added_to_the_directory_is_accepted_without_rebuilding_the_app(
    tmp_path: Path,
) -> None:
    """Before the swap newco's signature matches nothing (403); after directory.replace()
    the same app accepts it on /webhook and on /webhook/newco, and its handshake answers."""
    newco = make("newco", "200200200")
    async with service(tmp_path, [ACME]) as svc:
        before = await svc.post(delivery("200200200"), "newco-secret")
        assert (before.status_code, code(before)) == (403, "signature_mismatch")
        on_path = await svc.post(delivery("200200200"), "newco-secret", "/webhook/newco")
        assert code(on_path) == "signature_mismatch"
        assert (await svc.handshake("/webhook/newco", "newco-token")).status_code == 403

        svc.directory.replace([ACME, newco])

        shared = await svc.post(delivery("200200200"), "newco-secret")
        assert (shared.status_code, code(shared), shared.json()["items"]) == (200, "accepted", 1)
        own = await svc.post(delivery("200200200"), "newco-secret", "/webhook/newco")
        assert (own.status_code, code(own)) == (200, "accepted")
        assert (await svc.handshake("/webhook/newco", "newco-token")).text == "4242"
        assert await svc.stored() == 2
        assert svc.accepted_items("newco") == 2


async def test_the_candidate_secrets_follow_the_directory_and_stay_uniform(
    tmp_path: Path,
) -> None:
    """A tenant with three secrets swapped in widens every tenant path, an unknown one
    included, to three candidates; removing it narrows them back; a removed tenant's
    secret stops verifying."""
    rotating = Tenant(
        id="rotating",
        app_secrets=tuple(SecretStr(f"r{i}") for i in range(3)),
        phone_number_ids=frozenset({"300300300"}),
    )
    async with service(tmp_path, [ACME]) as svc:
        candidates = svc.app.state.receiver.candidates
        assert {len(candidates.for_path(t)) for t in ("acme", "zzz")} == {1}
        svc.directory.replace([ACME, rotating])
        widths = {len(candidates.for_path(t)) for t in ("acme", "rotating", "zzz")}
        assert widths == {3} == {candidates.width}
        accepted = await svc.post(delivery("300300300"), "r2", "/webhook/rotating")
        assert accepted.status_code == 200
        svc.directory.replace([ACME])
        assert {len(candidates.for_path(t)) for t in ("acme", "rotating")} == {1}
        gone = await svc.post(delivery("300300300"), "r2", "/webhook/rotating")
        assert code(gone) == "signature_mismatch"


# --- disabled tenants --------------------------------------------------------------------------


async def test_a_disabled_tenant_is_refused_403_and_counted_then_accepted_once_enabled(
    tmp_path: Path,
) -> None:
    """Disabled: 403 tenant_disabled on both paths, nothing stored, counted under the
    tenant; re-enabled, the same body (Meta's retry) is stored."""
    beta = make("beta", "200200200")
    async with service(tmp_path, [ACME, beta.model_copy(update={"disabled": True})]) as svc:
        body = delivery("200200200")
        for path in ("/webhook", "/webhook/beta"):
            reply = await svc.post(body, "beta-secret", path)
            assert (reply.status_code, code(reply)) == (403, "tenant_disabled")
        assert await svc.stored() == 0
        assert svc.rejections("beta", "tenant_disabled") == 2
        assert svc.count("wa_webhook_requests_total", outcome="tenant_disabled") == 2
        # acme is not held up by beta being disabled.
        assert (await svc.post(delivery("100100100"), "acme-secret")).status_code == 200

        svc.directory.replace([ACME, beta])

        retried = await svc.post(body, "beta-secret", "/webhook/beta")
        assert (retried.status_code, code(retried)) == (200, "accepted")
        assert await svc.stored() == 2
        assert svc.rejections("beta", "tenant_disabled") == 2


async def test_a_disabled_tenant_path_with_a_wrong_signature_fails_like_any_other(
    tmp_path: Path,
) -> None:
    """Before its signature verified, a disabled tenant's path says nothing about it:
    403 signature_mismatch, as an unknown tenant's path answers."""
    beta = make("beta", "200200200", disabled=True)
    async with service(tmp_path, [ACME, beta]) as svc:
        wrong = await svc.post(delivery("200200200"), "not-the-secret", "/webhook/beta")
        unknown = await svc.post(delivery("200200200"), "not-the-secret", "/webhook/nobody")
        assert (wrong.status_code, wrong.content) == (unknown.status_code, unknown.content)
        assert code(wrong) == "signature_mismatch"
        assert svc.rejections("beta", "tenant_disabled") == 0
        assert svc.rejections("beta", "signature_mismatch") == 1
        assert svc.rejections("unknown", "signature_mismatch") == 1


async def test_a_delivery_mixing_a_disabled_tenants_items_with_an_enabled_ones_is_refused_whole(
    tmp_path: Path,
) -> None:
    """Two tenants of one Meta app (one secret): a delivery with items of both, one of them
    disabled, stores nothing (Meta retries all of it); only the disabled one is counted."""
    shared = "one-app-secret"
    acme = make("acme", "100100100", secret=shared, default=True)
    beta = make("beta", "200200200", secret=shared, disabled=True)
    async with service(tmp_path, [acme, beta]) as svc:
        reply = await svc.post(delivery("100100100", "200200200"), shared)
        assert (reply.status_code, code(reply)) == (403, "tenant_disabled")
        assert await svc.stored() == 0
        assert svc.rejections("beta", "tenant_disabled") == 1
        assert svc.rejections("acme", "tenant_disabled") == 0
        alone = await svc.post(delivery("100100100"), shared)
        assert (alone.status_code, await svc.stored()) == (200, 1)


# --- source policy -----------------------------------------------------------------------------


async def test_a_tenant_with_its_allowlist_off_is_open_on_its_own_path_only(
    tmp_path: Path,
) -> None:
    """Service allowlist on, `open` turns it off: a stranger is accepted on /webhook/open,
    refused on /webhook (the service's policy, before reading) and on another tenant's path."""
    opened = make("open", "200200200", webhook=WebhookRule(allowlist=False))
    async with service(tmp_path, [ACME, opened]) as svc:
        own = await svc.post(delivery("200200200"), "open-secret", "/webhook/open", STRANGER)
        assert (own.status_code, code(own)) == (200, "accepted")
        shared = await svc.post(delivery("200200200"), "open-secret", "/webhook", STRANGER)
        assert (shared.status_code, code(shared)) == (403, "source_not_allowed")
        other = await svc.post(delivery("100100100"), "acme-secret", "/webhook/acme", STRANGER)
        assert code(other) == "source_not_allowed"
        assert await svc.stored() == 1


async def test_a_tenants_extra_networks_join_the_service_allowlist_on_its_path(
    tmp_path: Path,
) -> None:
    """`extra` adds 198.51.100.0/24: accepted from there on its path, still refused on
    /webhook; an address in neither list is refused on its path; Meta still passes."""
    extra = make("extra", "200200200", webhook=WebhookRule(extra_cidrs=("198.51.100.0/24",)))
    async with service(tmp_path, [ACME, extra]) as svc:
        body = delivery("200200200")
        assert (await svc.post(body, "extra-secret", "/webhook/extra", STRANGER)).status_code == 200
        shared = await svc.post(delivery("200200200"), "extra-secret", "/webhook", STRANGER)
        assert code(shared) == "source_not_allowed"
        far = await svc.post(delivery("200200200"), "extra-secret", "/webhook/extra", ELSEWHERE)
        assert code(far) == "source_not_allowed"
        assert (await svc.post(delivery("200200200"), "extra-secret", "/webhook/extra")).is_success
        assert svc.rejections("extra", "source_not_allowed") == 1  # its path's only
        assert svc.rejections("unknown", "source_not_allowed") == 1  # /webhook, not verified


async def test_a_tenant_with_its_allowlist_on_is_checked_on_both_paths_when_the_service_is_open(
    tmp_path: Path,
) -> None:
    """Service allowlist off, `strict` turns its own on (203.0.113.0/24): a stranger is
    refused on its path before reading and on /webhook once the signature names it
    (nothing stored); from its network it is accepted; acme stays open."""
    rule = WebhookRule(allowlist=True, extra_cidrs=ALLOWLIST)
    strict = make("strict", "200200200", webhook=rule)
    async with service(tmp_path, [ACME, strict], allowlist=None) as svc:
        own = await svc.post(delivery("200200200"), "strict-secret", "/webhook/strict", STRANGER)
        assert (own.status_code, code(own)) == (403, "source_not_allowed")
        shared = await svc.post(delivery("200200200"), "strict-secret", "/webhook", STRANGER)
        assert (shared.status_code, code(shared)) == (403, "source_not_allowed")
        assert await svc.stored() == 0
        assert svc.rejections("strict", "source_not_allowed") == 2
        for path in ("/webhook", "/webhook/strict"):
            assert (await svc.post(delivery("200200200"), "strict-secret", path)).is_success
        assert (await svc.post(delivery("100100100"), "acme-secret", source=STRANGER)).is_success
        assert await svc.stored() == 3


async def test_the_handshake_follows_the_tenants_source_policy(tmp_path: Path) -> None:
    """GET /webhook/open from a stranger answers; GET /webhook/acme from one is refused."""
    opened = make("open", "200200200", webhook=WebhookRule(allowlist=False))
    async with service(tmp_path, [ACME, opened]) as svc:
        assert (await svc.handshake("/webhook/open", "open-token", STRANGER)).text == "4242"
        refused = await svc.handshake("/webhook/acme", "acme-token", STRANGER)
        assert (refused.status_code, code(refused)) == (403, "source_not_allowed")


# --- body cap ----------------------------------------------------------------------------------


async def test_a_tenants_body_cap_is_413_on_both_paths(tmp_path: Path) -> None:
    """`small` caps bodies at 1,024 bytes: a 2 KB delivery is 413 on its path (declared or
    streamed, before verification) and on /webhook (after it); acme takes the same size."""
    small = make("small", "200200200", webhook=WebhookRule(max_body_bytes=1024))
    async with service(tmp_path, [ACME, small]) as svc:
        big = delivery("200200200", text="x" * 2000)
        own = await svc.post(big, "small-secret", "/webhook/small")
        assert (own.status_code, code(own)) == (413, "body_too_large")
        assert own.json()["error"]["message"] == "body exceeds 1024 bytes"
        raw, headers = signed(delivery("200200200", text="x" * 2000), "small-secret")
        headers["X-Forwarded-For"] = META

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(raw), 512):
                yield raw[start : start + 512]

        streamed = await svc.client().post("/webhook/small", content=chunks(), headers=headers)
        assert (streamed.status_code, code(streamed)) == (413, "body_too_large")
        shared = await svc.post(delivery("200200200", text="x" * 2000), "small-secret")
        assert (shared.status_code, code(shared)) == (413, "body_too_large")
        fits = await svc.post(delivery("200200200", text="x" * 100), "small-secret")
        assert fits.status_code == 200
        assert (await svc.post(delivery("100100100", text="x" * 2000), "acme-secret")).is_success
        assert await svc.stored() == 2
        assert svc.rejections("small", "body_too_large") == 3


# --- rate limits -------------------------------------------------------------------------------


async def test_a_tenants_own_limit_replaces_the_services(tmp_path: Path) -> None:
    """`tight` may send 2 per window (the service allows 50): its third is 429; acme,
    from the same address, is not limited by it."""
    tight = make("tight", "200200200", rate_limits=RateLimitRule(per_tenant=2))
    async with service(tmp_path, [ACME, tight]) as svc:
        replies = [await svc.post(delivery("200200200"), "tight-secret") for _ in range(3)]
        assert [r.status_code for r in replies] == [200, 200, 429]
        assert code(replies[2]) == "rate_limited"
        assert int(replies[2].headers["Retry-After"]) >= 1
        assert svc.rejections("tight", "rate_limited") == 1
        assert (await svc.post(delivery("100100100"), "acme-secret")).status_code == 200


async def test_a_tenants_per_ip_limit_counts_its_requests_apart(tmp_path: Path) -> None:
    """`chatty` allows 60 per address (the service 50): its 55 requests from Meta's
    address pass, and do not use up the address's shared count, so acme's next one passes;
    `shy` allows 1 per address: its second from one address is 429, from another it passes."""
    chatty = make("chatty", "200200200", rate_limits=RateLimitRule(per_ip=60, per_tenant=100))
    shy = make("shy", "300300300", rate_limits=RateLimitRule(per_ip=1))
    async with service(tmp_path, [ACME, chatty, shy]) as svc:
        for _ in range(PER_IP + 5):
            assert (await svc.post(delivery("200200200"), "chatty-secret")).status_code == 200
        assert (await svc.post(delivery("100100100"), "acme-secret")).status_code == 200
        assert (await svc.post(delivery("300300300"), "shy-secret")).status_code == 200
        again = await svc.post(delivery("300300300"), "shy-secret")
        assert (again.status_code, code(again)) == (429, "rate_limited")
        other = await svc.post(delivery("300300300"), "shy-secret", source="203.0.113.8")
        assert other.status_code == 200


# --- handshake ---------------------------------------------------------------------------------


async def test_the_handshake_takes_each_tenants_token_from_the_live_directory(
    tmp_path: Path,
) -> None:
    """/webhook/beta answers beta's token, not acme's; after a rotation in the registry
    (the directory swapped) the new token answers and the old one is refused."""
    beta = make("beta", "200200200")
    async with service(tmp_path, [ACME, beta]) as svc:
        assert (await svc.handshake("/webhook/beta", "beta-token")).text == "4242"
        wrong = await svc.handshake("/webhook/beta", "acme-token")
        assert (wrong.status_code, code(wrong)) == (403, "verification_failed")
        svc.directory.replace([ACME, beta.model_copy(update={"verify_token": SecretStr("b2")})])
        old = await svc.handshake("/webhook/beta", "beta-token")
        assert (old.status_code, code(old)) == (403, "verification_failed")
        assert (await svc.handshake("/webhook/beta", "b2")).text == "4242"
        assert (await svc.handshake("/webhook", "b2")).text == "4242"


@pytest.mark.parametrize("path", ["/webhook/beta", "/webhook"])
async def test_a_disabled_tenants_handshake_is_403(tmp_path: Path, path: str) -> None:
    """beta disabled: its right token is answered 403 tenant_disabled, a wrong one 403
    verification_failed (as for any tenant); acme's token still answers on /webhook."""
    beta = make("beta", "200200200", disabled=True)
    async with service(tmp_path, [ACME, beta]) as svc:
        right = await svc.handshake(path, "beta-token")
        assert (right.status_code, code(right)) == (403, "tenant_disabled")
        wrong = await svc.handshake(path, "not-a-token")
        assert (wrong.status_code, code(wrong)) == (403, "verification_failed")
        assert (await svc.handshake("/webhook", "acme-token")).text == "4242"


# --- metrics -----------------------------------------------------------------------------------


async def test_per_tenant_metrics_use_directory_ids_only(tmp_path: Path) -> None:
    """Items are counted under their tenant; a refusal on a path naming no configured
    tenant, or on /webhook before verification, is counted under `unknown`."""
    beta = make("beta", "200200200")
    async with service(tmp_path, [ACME, beta]) as svc:
        assert (await svc.post(delivery("100100100", "100100100"), "acme-secret")).is_success
        assert (await svc.post(delivery("200200200"), "beta-secret", "/webhook/beta")).is_success
        await svc.post(delivery("200200200"), "beta-secret", "/webhook/made-up-tenant")
        await svc.post(delivery("200200200"), "no-such-secret")
        assert (svc.accepted_items("acme"), svc.accepted_items("beta")) == (2, 1)
        assert svc.rejections("unknown", "signature_mismatch") == 2
        assert svc.rejections("made-up-tenant", "signature_mismatch") == 0
        text = svc.metrics.render().decode()
        assert "made-up-tenant" not in text
