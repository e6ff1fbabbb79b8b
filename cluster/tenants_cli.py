"""`python -m cluster tenants list | show ID | add (--file F | --json JSON) | disable ID |
enable ID | delete ID`: the tenant registry from the shell (docs/tenants.md).

Works on the configured store, as the service does (WA_REDIS_URL, else the embedded
SQLite file under WA_DATA_DIR), and seeds it first the way every process does at start
(WA_TENANTS_FILE / WA_APP_SECRET tenants the registry never held), so `list` shows what
the service serves. Prints JSON on stdout, never a secret (Tenant.public()). The running
service picks every change up within WA_TENANT_RELOAD_S.

Exit status: 0 done; 1 no such tenant, the id exists, or the change would conflict;
2 the tenant given is invalid; 3 the store did not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from adapters.errors import AdapterError, TenantExists, TenantNotFound
from adapters.ports import TenantRegistry
from cluster.settings import Settings
from models.tenant import Tenant, TenantConflict


def add_commands(sub: Any) -> None:
    """Add the `tenants` command to the CLI's subparsers."""
    tenants = sub.add_parser("tenants", help="list, show, add, disable, enable, delete tenants")
    actions = tenants.add_subparsers(dest="tenants_command", required=True)
    actions.add_parser("list", help="every tenant (never a secret)")
    for name, text in (
        ("show", "one tenant"),
        ("disable", "refuse its webhooks (403) until enabled"),
        ("enable", "accept its webhooks again"),
        ("delete", "remove it (never seeded again)"),
    ):
        actions.add_parser(name, help=text).add_argument("tenant_id")
    add = actions.add_parser("add", help="register a tenant (the tenants-file shape)")
    given = add.add_mutually_exclusive_group(required=True)
    given.add_argument("--file", default=None, help="a JSON file: one tenant, or {tenants: [...]}")
    given.add_argument("--json", default=None, help="the tenant's JSON")


def _given(args: argparse.Namespace) -> list[Tenant]:
    """The tenants `add` was given (ValueError, ValidationError when invalid)."""
    raw = Path(args.file).read_bytes() if args.file is not None else args.json.encode()
    data = orjson.loads(raw)
    items = data["tenants"] if isinstance(data, dict) and "tenants" in data else [data]
    if not isinstance(items, list):
        raise ValueError("`tenants` must be a list")
    return [Tenant.model_validate(item) for item in items]


def _print(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


async def _run(
    registry: TenantRegistry,
    seed: list[Tenant],
    args: argparse.Namespace,
    admin_token: str | None = None,
) -> None:
    await registry.seed(seed)
    action = args.tenants_command
    if action == "list":
        version, tenants = await registry.load()
        _print({"tenants": [t.public() for t in tenants], "version": version})
        return
    if action == "add":
        for tenant in _given(args):
            if admin_token is not None and admin_token in tenant.secret_values():
                raise ValueError(f"a secret of {tenant.id!r} equals the admin token")
            version = await registry.put(tenant, create=True)
            _print({"tenant": (await _get(registry, tenant.id)).public(), "version": version})
        return
    if action == "delete":
        _print({"deleted": args.tenant_id, "version": await registry.delete(args.tenant_id)})
        return
    tenant = await _get(registry, args.tenant_id)
    if action in ("disable", "enable"):
        changed = tenant.model_copy(update={"disabled": action == "disable"})
        version = await registry.put(changed, create=False)
        _print({"tenant": changed.public(), "version": version})
        return
    _print({"tenant": tenant.public()})


async def _get(registry: TenantRegistry, tenant_id: str) -> Tenant:
    tenant = await registry.get(tenant_id)
    if tenant is None:
        raise TenantNotFound(f"no tenant {tenant_id!r}")
    return tenant


async def _with_registry(settings: Settings, args: argparse.Namespace) -> None:
    from cluster.tenant_wiring import build_tenant_registry
    from cluster.wiring import Wiring

    wiring = Wiring.from_settings(settings)
    registry = build_tenant_registry(wiring.inbox)
    try:
        token = wiring.ingress.admin_token
        secret = token.get_secret_value() if token is not None else None
        await _run(registry, list(wiring.tenants), args, secret)
    finally:
        await registry.close()


def tenants_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run one `tenants` action against the configured registry; the exit status."""
    try:
        asyncio.run(_with_registry(settings, args))
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        )
        print(f"invalid tenant: {where}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:  # TenantConflict is a ValueError: caught first
        if isinstance(exc, TenantConflict):
            print(f"refused: {exc}", file=sys.stderr)
            return 1
        print(f"invalid tenant: {exc}", file=sys.stderr)
        return 2
    except (TenantExists, TenantNotFound) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except AdapterError as exc:
        print(f"the tenant registry did not answer: {exc}", file=sys.stderr)
        return 3
    return 0
