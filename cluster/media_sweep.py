"""Media retention: `python -m cluster media sweep` deletes each tenant's stored and
quarantined media files older than its `media.retention_days` (docs/tenants.md).

One pass over the registry's tenants (the tenants file's until the registry is seeded),
for the configured media store (the folder or S3). A tenant without the rule keeps its
files: the service itself sets no retention. Run it from cron (daily is enough: retention
is counted in days); each pass is idempotent, and one that fails half-way is finished by
the next.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import orjson
import structlog

from adapters.errors import AdapterError, TransientError
from adapters.ports import MediaStore
from cluster.settings import Settings
from models.tenant import Tenant

log = structlog.get_logger("media_sweep")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`media sweep [--tenant ID]`."""
    media = sub.add_parser("media", help="media files kept by the service")
    actions = media.add_subparsers(dest="media_command", required=True)
    sweep = actions.add_parser("sweep", help="delete files past their tenant's retention_days")
    sweep.add_argument("--tenant", default=None, help="only this tenant")


async def sweep_tenants(
    store: MediaStore, tenants: Iterable[Tenant], now: datetime
) -> dict[str, int]:
    """Sweep every tenant that has a retention rule; files deleted by tenant id. A store
    that fails for one tenant is logged and the next one is swept (TransientError for the
    whole pass only if every tenant's sweep failed)."""
    deleted: dict[str, int] = {}
    failures = 0
    for tenant in tenants:
        media = tenant.rules.media
        if media is None or media.retention_days is None:
            continue
        try:
            deleted[tenant.id] = await store.sweep(
                tenant.id, now - timedelta(days=media.retention_days)
            )
        except AdapterError as exc:
            failures += 1
            log.warning("media_sweep_failed", tenant_id=tenant.id, error=str(exc)[:300])
    if failures and not deleted:
        raise TransientError(f"media sweep: the store failed for all {failures} tenants")
    return deleted


async def _sweep(settings: Settings, only: str | None) -> dict[str, int]:
    from cluster.media_wiring import build_media_store
    from cluster.tenant_wiring import build_tenant_registry
    from cluster.wiring import Wiring

    wiring = Wiring.from_settings(settings)
    registry = build_tenant_registry(wiring.inbox)
    store = build_media_store(wiring.media)
    try:
        _, tenants = await registry.load()
        known = tenants or list(wiring.tenants)  # an unseeded registry: the file's
        chosen = [t for t in known if only is None or t.id == only]
        return await sweep_tenants(store, chosen, datetime.now(UTC))
    finally:
        await registry.close()
        await store.close()


def media_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run `media sweep`; prints `{"tenant": deleted, ...}`; the exit status."""
    try:
        deleted = asyncio.run(_sweep(settings, args.tenant))
    except AdapterError as exc:
        print(f"the media store or the registry did not answer: {exc}", file=sys.stderr)
        return 3
    sys.stdout.write(orjson.dumps(deleted).decode() + "\n")
    return 0
