"""Prometheus metrics of the ingress (one registry per app instance, i.e. per replica).

Labels are bounded: an outcome code, an item kind, or a tenant id taken from the tenant
directory (`unknown` for anything else, e.g. a path naming a tenant that is not
configured), never a tenant's number or a conversation.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)


class IngressMetrics:
    """The ingress's counters and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "wa_webhook_requests",
            "Webhook POSTs by outcome (accepted or the rejection code).",
            ["outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "wa_webhook_request_duration_seconds",
            "Time from the start of a webhook POST to its answer.",
            ["outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.body_bytes = Histogram(
            "wa_webhook_body_bytes",
            "Size of webhook bodies read (up to the cap).",
            buckets=_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.items = Counter(
            "wa_webhook_items",
            "Items accepted into the inbox, by kind (message, status, error, field; unowned:"
            " items of numbers no tenant owns, kept aside for replay).",
            ["kind"],
            registry=self.registry,
        )
        self.unverified_bytes = Gauge(
            "wa_webhook_unverified_bytes",
            "Bytes of bodies being read or verified now (their signature not checked yet).",
            registry=self.registry,
        )
        self.append_duration = Histogram(
            "wa_inbox_append_duration_seconds",
            "Time a request waited for its items to be durable in the inbox.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.signature_failures = Counter(
            "wa_webhook_signature_failures",
            "POSTs whose X-Hub-Signature-256 was missing, malformed or did not match.",
            ["reason"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "wa_webhook_duplicate_deliveries",
            "Deliveries whose exact body was already stored within the dedup window.",
            registry=self.registry,
        )
        self.limiter_errors = Counter(
            "wa_rate_limiter_errors",
            "Rate-limit checks that failed (the request was let through: fail open).",
            registry=self.registry,
        )

        self.tenant_items = Counter(
            "wa_webhook_tenant_items",
            "Items accepted into the inbox, by tenant.",
            ["tenant"],
            registry=self.registry,
        )
        self.tenant_rejections = Counter(
            "wa_webhook_tenant_rejections",
            "Refused webhook POSTs by tenant (the path's, else the delivery's once verified;"
            " `unknown` before that or for a tenant not configured) and rejection code.",
            ["tenant", "reason"],
            registry=self.registry,
        )
        # Children of tenant_items by tenant id: labels() takes a lock and builds a key per
        # call, this is one dict look-up per accepted item.
        self._tenant_items: dict[str, Counter] = {}

    def count_tenant_items(self, tenant_id: str, items: int = 1) -> None:
        """Count items accepted for a tenant (its id comes from the directory)."""
        child = self._tenant_items.get(tenant_id)
        if child is None:
            child = self._tenant_items[tenant_id] = self.tenant_items.labels(tenant_id)
        child.inc(items)

    def count_tenant_rejection(self, tenants: Iterable[str], reason: str) -> None:
        """Count one refused POST under each of its tenants' labels."""
        for tenant in tenants:
            self.tenant_rejections.labels(tenant, reason).inc()

    def observe_request(self, outcome: str, seconds: float) -> None:
        """Count one answered POST."""
        self.requests.labels(outcome).inc()
        self.duration.labels(outcome).observe(seconds)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
