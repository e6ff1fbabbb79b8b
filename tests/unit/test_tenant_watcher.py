"""The tenant watcher (cluster/tenant_wiring.py) over the embedded registry: it seeds and
loads at start, follows a version change on the next poll, keeps the last directory
through a registry outage (logged once, counted), skips a set that conflicts, and adds
the registry's secrets to the log redaction."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import orjson
import pytest
import structlog
from structlog.testing import capture_logs

from adapters.sqlite_tenants import SqliteTenantRegistry
from cluster.backends import SqliteInboxConfig
from cluster.logging import configure_logging
from cluster.tenant_wiring import TenantWatcher, watched_directory
from models.tenant import Tenant, TenantDirectory
from tests.support.failing_tenants import FailingTenantRegistry


def tenant(tenant_id: str, *numbers: str, secret: str | None = None, **extra: object) -> Tenant:
    return Tenant.model_validate(
        {
            "id": tenant_id,
            "app_secrets": [secret or f"secret-of-{tenant_id}"],
            "phone_number_ids": numbers,
        }
        | extra
    )


class Counted:
    def __init__(self) -> None:
        self.errors = 0

    def registry_error(self) -> None:
        self.errors += 1


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[SqliteTenantRegistry]:
    made = SqliteTenantRegistry(tmp_path / "inbox.db")
    yield made
    await made.close()


async def test_start_seeds_the_file_tenants_and_loads_the_registry(
    registry: SqliteTenantRegistry,
) -> None:
    await registry.put(tenant("api", "107"), create=True)
    seed = [tenant("file", "106")]
    watcher = TenantWatcher(registry, TenantDirectory(seed), seed, 1.0)
    assert await watcher.refresh()
    assert watcher.loaded
    assert sorted(watcher.directory.ids) == ["api", "file"]
    assert watcher.directory.registry_version == await registry.version()
    stored = await registry.get("file")
    assert stored is not None
    assert stored.pii_key is not None  # the directory holds the registry's copy
    assert watcher.directory.get("file") == stored


async def test_a_poll_follows_a_change_and_an_unchanged_version_is_not_reloaded(
    registry: SqliteTenantRegistry,
) -> None:
    directory = TenantDirectory([])
    watcher = TenantWatcher(registry, directory, [], 1.0)
    await watcher.refresh()
    swaps = directory.version
    assert not await watcher.poll()
    assert directory.version == swaps
    await registry.put(tenant("acme", "106"), create=True)
    assert await watcher.poll()
    resolved = directory.resolve("106", None)
    assert resolved is not None
    assert resolved.id == "acme"
    await registry.put(tenant("acme", "106", disabled=True), create=False)
    assert await watcher.poll()
    got = directory.get("acme")
    assert got is not None
    assert got.disabled


async def test_an_outage_keeps_the_last_directory_logged_once_and_counted(
    registry: SqliteTenantRegistry,
) -> None:
    failing = FailingTenantRegistry(registry, fail=False)
    metrics = Counted()
    seed = [tenant("acme", "106")]
    directory = TenantDirectory(seed)
    watcher = TenantWatcher(failing, directory, seed, 1.0, metrics=metrics)
    await watcher.refresh()
    failing.fail = True
    with capture_logs() as logs:
        for _ in range(3):
            assert not await watcher.poll()
        assert not await watcher.refresh()
    assert metrics.errors == 4
    assert [e["event"] for e in logs] == ["tenant_registry_unavailable"]
    assert directory.ids == {"acme"}
    failing.fail = False
    await registry.put(tenant("beta", "107"), create=True)
    with capture_logs() as logs:
        assert await watcher.poll()
    assert "tenant_registry_available" in [e["event"] for e in logs]
    assert directory.ids == {"acme", "beta"}


async def test_a_registry_down_at_start_serves_the_seed_and_seeds_later(
    registry: SqliteTenantRegistry,
) -> None:
    failing = FailingTenantRegistry(registry)
    seed = [tenant("acme", "106")]
    watcher = TenantWatcher(failing, TenantDirectory(seed), seed, 1.0)
    assert not await watcher.refresh()
    assert not watcher.loaded
    assert watcher.directory.ids == {"acme"}
    failing.fail = False
    assert await watcher.poll()
    assert await registry.get("acme") is not None


async def test_a_conflicting_set_in_the_store_is_skipped(
    registry: SqliteTenantRegistry, tmp_path: Path
) -> None:
    await registry.put(tenant("acme", "106"), create=True)
    directory = TenantDirectory([])
    watcher = TenantWatcher(registry, directory, [], 1.0)
    await watcher.refresh()
    # A hand edit of the store (the registry itself refuses this): a number claimed twice.
    body = orjson.loads(tenant("thief", "106").stored())
    with closing(sqlite3.connect(tmp_path / "inbox.db")) as conn, conn:
        conn.execute("INSERT INTO tenants (id, body) VALUES (?, ?)", ("thief", orjson.dumps(body)))
        conn.execute("UPDATE tenants_version SET version = version + 1")
    with capture_logs() as logs:
        assert not await watcher.poll()
    assert "tenants_conflict_skipped" in [e["event"] for e in logs]
    assert directory.ids == {"acme"}


async def test_a_stop_ends_run(registry: SqliteTenantRegistry) -> None:
    watcher = TenantWatcher(registry, TenantDirectory([]), [], 0.01)
    watcher.stop()
    await watcher.run()  # returns: the loop sees the stop after its first load
    assert watcher.loaded


async def test_secrets_loaded_from_the_registry_are_redacted_in_the_logs(
    registry: SqliteTenantRegistry,
) -> None:
    out = io.StringIO()
    configure_logging("INFO", [], file=out)
    try:
        await registry.put(tenant("acme", secret="a-secret-added-through-the-api"), create=True)
        watcher = TenantWatcher(registry, TenantDirectory([]), [], 1.0)
        await watcher.refresh()
        structlog.get_logger("t").info("oops", detail="leaked a-secret-added-through-the-api")
    finally:
        configure_logging("INFO")
    assert "a-secret-added-through-the-api" not in out.getvalue()
    assert "[redacted]" in out.getvalue()


async def test_a_thread_watched_directory_holds_the_registry_set_on_return(
    tmp_path: Path,
) -> None:
    """watched_directory (the media workers', the refresher's) returns after its first
    load: the seed tenant as registered (its pii_key) and a tenant only the registry has."""
    registry = SqliteTenantRegistry(tmp_path / "inbox.db")
    try:
        await registry.put(tenant("api", "107", access_token="token-of-api"), create=True)
    finally:
        await registry.close()
    inbox = SqliteInboxConfig(
        path=tmp_path / "inbox.db",
        dedup_window_s=60,
        conversation_retention_s=None,
        message_state_ttl_s=60,
    )
    # 5 s: the thread outlives the test (a daemon), polling rarely.
    directory = watched_directory(inbox, [tenant("file", "106")], 5.0, "test")
    assert directory.ids == {"api", "file"}
    api = directory.get("api")
    assert api is not None
    assert api.access_token is not None
    filed = directory.get("file")
    assert filed is not None
    assert filed.pii_key is not None
