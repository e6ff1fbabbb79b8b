"""`python -m cluster deliveries show ID` and `python -m cluster replay ...`.

`deliveries show` writes the body exactly as received to stdout, byte for byte (nothing
else: the facts it was accepted with go to stderr with --meta), so `... > body.json`
reproduces it. `replay` appends the named deliveries' (or dead letters') items again with
replayed=True through the configured inbox (ingress/replay.py), the same code as
POST /admin/replay; a time range is replayed in pages of --limit deliveries until done.
Exit codes: 0 done, 1 not found, 2 bad input or configuration, 3 a store did not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from typing import TYPE_CHECKING

import orjson
from pydantic import ValidationError

from adapters.errors import AdapterError
from cluster.settings import Settings
from models.replay import ReplayRequest, ReplayResult

if TYPE_CHECKING:  # imported when a command runs: the CLI's other commands stay light
    from ingress.replay import Replayer


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `deliveries show` and `replay` on the CLI's subcommands."""
    deliveries = sub.add_parser("deliveries", help="archived webhook deliveries")
    deliveries_sub = deliveries.add_subparsers(dest="deliveries_command", required=True)
    show = deliveries_sub.add_parser("show", help="print a delivery's raw body as received")
    show.add_argument("delivery_id")
    show.add_argument("--meta", action="store_true", help="also print its facts to stderr")
    replay = sub.add_parser("replay", help="re-process deliveries or dead letters")
    what = replay.add_mutually_exclusive_group(required=True)
    what.add_argument("--delivery", metavar="ID", help="one delivery by its id")
    what.add_argument("--tenant", metavar="TENANT", help="a tenant's deliveries (--since/--until)")
    what.add_argument("--dead-letter", metavar="ID", help="one dead letter by its id")
    what.add_argument("--all-dead-letters", action="store_true", help="every dead letter")
    replay.add_argument("--since", type=datetime.fromisoformat, help="ISO 8601, with a zone")
    replay.add_argument("--until", type=datetime.fromisoformat, help="ISO 8601, exclusive")
    replay.add_argument("--purge", action="store_true", help="delete the dead letters replayed")
    replay.add_argument("--limit", type=int, default=1000, help="per page (time range)")


def _request(args: argparse.Namespace) -> ReplayRequest:
    return ReplayRequest(
        delivery_id=args.delivery,
        tenant_id=args.tenant,
        since=args.since,
        until=args.until,
        dead_letter_id=args.dead_letter,
        all_dead_letters=args.all_dead_letters,
        purge=args.purge,
        limit=args.limit,
    )


async def _with_replayer(settings: Settings, args: argparse.Namespace) -> int:
    from cluster.backends import build_archive, build_inbox
    from cluster.tenant_wiring import TenantWatcher, build_tenant_registry
    from cluster.wiring import Wiring
    from ingress.replay import Replayer
    from models.tenant import TenantDirectory

    wiring = Wiring.from_settings(settings)
    inbox, archive = build_inbox(wiring.inbox), build_archive(wiring.archive)
    # The registry's tenants, as the service resolves them (the file's if it is down).
    registry = build_tenant_registry(wiring.inbox)
    watcher = TenantWatcher(registry, TenantDirectory(wiring.tenants), wiring.tenants, 1.0)
    await watcher.refresh()
    await registry.close()
    replayer = Replayer(archive, inbox, watcher.directory, wiring.partitions)
    try:
        if args.command == "deliveries":
            return await _show(replayer, args.delivery_id, args.meta)
        return await _replay(replayer, _request(args))
    finally:
        await asyncio.gather(inbox.close(), archive.close(), return_exceptions=True)


async def _show(replayer: Replayer, delivery_id: str, meta: bool) -> int:
    delivery = await replayer.find(delivery_id)
    if delivery is None:
        print(f"no delivery {delivery_id}", file=sys.stderr)
        return 1
    if meta:
        facts = {
            "delivery_id": delivery.delivery_id,
            "received_at": delivery.received_at.isoformat(),
            "tenants": delivery.tenants,
            "signed_by": delivery.signed_by,
            "signature": delivery.signature,
            "bytes": len(delivery.body),
        }
        print(orjson.dumps(facts).decode(), file=sys.stderr)
    sys.stdout.buffer.write(delivery.body)
    sys.stdout.buffer.flush()
    return 0


async def _replay(replayer: Replayer, request: ReplayRequest) -> int:
    total = ReplayResult()
    while True:
        result = await replayer.replay(request)
        total = ReplayResult(
            deliveries=total.deliveries + result.deliveries,
            items=total.items + result.items,
            unowned=total.unowned + result.unowned,
            dead_letters=total.dead_letters + result.dead_letters,
            purged=total.purged + result.purged,
            delivery_ids=[*total.delivery_ids, *result.delivery_ids],
        )
        if result.next_since is None:
            break
        request = request.model_copy(update={"since": result.next_since})
    sys.stdout.write(total.model_dump_json() + "\n")
    return 0


def replay_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run `deliveries show` or `replay`; the exit code (module docstring)."""
    from ingress.replay import ReplayNotFound

    try:
        return asyncio.run(_with_replayer(settings, args))
    except ValidationError as exc:
        print(f"bad replay request: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    except ReplayNotFound as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except AdapterError as exc:
        print(f"a store did not answer: {exc}", file=sys.stderr)
        return 3
