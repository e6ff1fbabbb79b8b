"""Media retention (cluster/media_sweep.py): each tenant's files older than its
`media.retention_days` are deleted, the others' kept; through `sweep_tenants` on the
folder store, and `python -m cluster media sweep` in a child process on the embedded
defaults (tenants from WA_TENANTS_FILE, the registry not seeded yet)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from pydantic import SecretStr

from adapters.media_local import LocalMediaStore
from cluster.media_sweep import sweep_tenants
from models.media import media_key
from models.tenant import AppSecret, Tenant, TenantRules

SENT = datetime(2026, 1, 5, tzinfo=UTC)


def tenant(tenant_id: str, retention_days: int | None) -> Tenant:
    rules = {"media": {"retention_days": retention_days}} if retention_days else {}
    return Tenant(
        id=tenant_id,
        app_secrets=(AppSecret(secret=SecretStr(f"secret-of-{tenant_id}")),),
        rules=TenantRules.model_validate(rules),
    )


async def put(
    store: LocalMediaStore, root: Path, tenant_id: str, media_id: str, age_days: float
) -> str:
    key = media_key(tenant_id, SENT, media_id)
    source = root / f"upload-{tenant_id}-{media_id}"
    source.write_bytes(b"file of " + media_id.encode())
    await store.put(key, source, "image/png", {})
    written = time.time() - age_days * 86400
    os.utime(root / "data" / "media" / key, (written, written))
    return key


async def test_each_tenant_keeps_its_files_for_its_days(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path / "data", public_url="http://wa.test")
    old_acme = await put(store, tmp_path, "acme", "1", age_days=40)
    new_acme = await put(store, tmp_path, "acme", "2", age_days=10)
    old_beta = await put(store, tmp_path, "beta", "3", age_days=400)
    deleted = await sweep_tenants(
        store, [tenant("acme", 30), tenant("beta", None)], datetime.now(UTC)
    )
    assert deleted == {"acme": 1}
    assert await store.head(old_acme) is None
    assert await store.head(new_acme) is not None
    assert await store.head(old_beta) is not None  # no rule: kept
    assert await sweep_tenants(store, [tenant("acme", 30)], datetime.now(UTC)) == {"acme": 0}
    later = datetime.now(UTC) + timedelta(days=30)
    assert await sweep_tenants(store, [tenant("acme", 30)], later) == {"acme": 1}


def cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m cluster media sweep` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "cluster", "media", "sweep"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


async def test_the_cli_sweeps_the_configured_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "run"
    store = LocalMediaStore(data_dir, public_url="http://wa.test")
    tenants_file = tmp_path / "tenants.json"
    tenants_file.write_bytes(
        orjson.dumps(
            {
                "tenants": [
                    {
                        "id": "acme",
                        "app_secrets": ["s" * 32],
                        "default": True,
                        "rules": {"media": {"retention_days": 7}},
                    },
                ]
            }
        )
    )
    key = media_key("acme", SENT, "42")
    source = tmp_path / "upload"
    source.write_bytes(b"old")
    await store.put(key, source, "image/png", {})
    written = time.time() - 8 * 86400
    os.utime(data_dir / "media" / key, (written, written))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    env["WA_DATA_DIR"] = str(data_dir)
    env["WA_TENANTS_FILE"] = str(tenants_file)
    done = cli(env)
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout.strip().splitlines()[-1]) == {"acme": 1}
    assert await store.head(key) is None
