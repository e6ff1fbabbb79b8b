"""Account and per-tenant metrics through ray.util.metrics (Ray's Prometheus endpoint,
`ray_` prefix). Labels are bounded: tenant ids and phone number ids come from the tenant
directory, ratings and template states from Meta's small sets; never a phone number."""

from __future__ import annotations

from collections import Counter

from ray.util import metrics

from models.account import QUALITY_RATINGS, AccountSnapshot


class RayAccountMetrics:
    """AccountMetrics (actors/accounts.py), exported by the replica hosting the refresher."""

    def __init__(self) -> None:
        self._restricted = metrics.Gauge(
            "wa_account_restricted",
            description="1 while the tenant's account or a number is restricted (ban, "
            "restriction, violation, flagged or RED quality), else 0.",
            tag_keys=("tenant",),
        )
        self._unverified = metrics.Gauge(
            "wa_account_unverified",
            description="1 while a name, number or business of the tenant is not verified.",
            tag_keys=("tenant",),
        )
        self._quality = metrics.Gauge(
            "wa_phone_quality",
            description="1 for the number's current quality rating, 0 for the others.",
            tag_keys=("tenant", "phone_number_id", "rating"),
        )
        self._templates = metrics.Gauge(
            "wa_account_templates",
            description="The tenant's message templates by status.",
            tag_keys=("tenant", "status"),
        )
        self._failed = metrics.Counter(
            "wa_account_refresh_failures",
            description="Account refreshes from the Graph API that failed (retried with backoff).",
            tag_keys=("tenant",),
        )
        self._statuses: dict[str, set[str]] = {}

    def refreshed(self, snapshot: AccountSnapshot) -> None:
        """Set the tenant's gauges from its snapshot."""
        tenant = snapshot.tenant_id
        flags = snapshot.flags()
        self._restricted.set(1 if flags.restricted else 0, tags={"tenant": tenant})
        self._unverified.set(1 if flags.unverified else 0, tags={"tenant": tenant})
        for number in snapshot.phone_numbers.values():
            current = number.quality_rating or "UNKNOWN"
            for rating in {*QUALITY_RATINGS, current}:
                tags = {
                    "tenant": tenant,
                    "phone_number_id": number.phone_number_id,
                    "rating": rating,
                }
                self._quality.set(1 if rating == current else 0, tags=tags)
        by_status = Counter(t.status or "UNKNOWN" for t in snapshot.templates.values())
        known = self._statuses.setdefault(tenant, set()) | set(by_status)
        self._statuses[tenant] = known
        for status in known:
            self._templates.set(by_status.get(status, 0), tags={"tenant": tenant, "status": status})

    def refresh_failed(self, tenant_id: str) -> None:
        """Count a failed refresh."""
        self._failed.inc(1, tags={"tenant": tenant_id})


class RayTenantMetrics:
    """TenantMetrics (actors/account_hook.py), exported by each shard actor."""

    def __init__(self) -> None:
        # Counters get `_total` appended by the exporter.
        self._events = metrics.Counter(
            "wa_tenant_events",
            description="Committed events per tenant, category and type.",
            tag_keys=("tenant", "category", "type"),
        )
        self._failures = metrics.Counter(
            "wa_tenant_failures",
            description="Committed events that are failures (unsupported, dead-lettered, "
            "failed statuses, media failed or rejected, errors) per tenant and kind.",
            tag_keys=("tenant", "kind"),
        )

    def counted(self, tenant_id: str, counters: Counter[str]) -> None:
        """Add a committed batch's counters of one tenant (media counts are exported by
        actors/media_metrics.py already)."""
        for name, amount in counters.items():
            group, _, rest = name.partition(":")
            if group == "events":
                category, _, kind = rest.partition(":")
                tags = {"tenant": tenant_id, "category": category, "type": kind}
                self._events.inc(amount, tags=tags)
            elif group == "failures":
                self._failures.inc(amount, tags={"tenant": tenant_id, "kind": rest})
