"""The TenantRegistry port on both adapters (adapters/ports.py): tenants created, read,
updated and deleted with a version bump each; a create of a known id, an update of an
unknown one and a set that conflicts refused with nothing written; a pii_key made once and
kept; seeding that adds only ids never held; two clients' concurrent puts both landing;
everything kept across a new instance (another process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from adapters.errors import TenantExists, TenantNotFound
from adapters.ports import TenantRegistry
from adapters.redis_tenants import RedisTenantRegistry
from adapters.sqlite_tenants import SqliteTenantRegistry
from models.tenant import Tenant, TenantConflict
from tests.conftest import REDIS_URL

Factory = Callable[[], TenantRegistry]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def make_registry(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """A factory of registry instances over one store (a second instance: another process)."""
    made: list[TenantRegistry] = []
    if request.param == "sqlite":
        # The file exists in WAL mode before the processes open it, as the runner's start-
        # up check makes it (a fresh file's first switch to WAL does not wait for a
        # concurrent opener: adapters/sqlite_db.py).
        first = SqliteTenantRegistry(tmp_path / "inbox.db")
        await first.version()
        await first.close()

        def factory() -> TenantRegistry:
            made.append(SqliteTenantRegistry(tmp_path / "inbox.db"))
            return made[-1]
    else:
        prefix = request.getfixturevalue("redis_prefix")

        def factory() -> TenantRegistry:
            made.append(RedisTenantRegistry(REDIS_URL, prefix))
            return made[-1]

    yield factory
    for registry in made:
        await registry.close()


def tenant(tenant_id: str, *numbers: str, **extra: object) -> Tenant:
    return Tenant.model_validate(
        {"id": tenant_id, "app_secrets": [f"secret-of-{tenant_id}"], "phone_number_ids": numbers}
        | extra
    )


async def test_an_empty_registry_is_version_zero(make_registry: Factory) -> None:
    registry = make_registry()
    assert await registry.version() == 0
    assert await registry.load() == (0, [])
    assert await registry.get("acme") is None


async def test_crud_bumps_the_version_each_time(make_registry: Factory) -> None:
    registry = make_registry()
    assert await registry.put(tenant("acme", "106"), create=True) == 1
    assert await registry.put(tenant("beta", "107"), create=True) == 2
    updated = tenant("acme", "106", "108", disabled=True)
    assert await registry.put(updated, create=False) == 3
    got = await registry.get("acme")
    assert got is not None
    assert got.disabled
    assert got.phone_number_ids == {"106", "108"}
    assert await registry.delete("beta") == 4
    version, tenants = await registry.load()
    assert version == 4
    assert [t.id for t in tenants] == ["acme"]
    assert await registry.version() == 4


async def test_create_of_a_known_id_and_update_of_an_unknown_one_are_refused(
    make_registry: Factory,
) -> None:
    registry = make_registry()
    await registry.put(tenant("acme", "106"), create=True)
    with pytest.raises(TenantExists):
        await registry.put(tenant("acme", "999"), create=True)
    with pytest.raises(TenantNotFound):
        await registry.put(tenant("nobody"), create=False)
    with pytest.raises(TenantNotFound):
        await registry.delete("nobody")
    assert await registry.version() == 1
    got = await registry.get("acme")
    assert got is not None
    assert got.phone_number_ids == {"106"}


async def test_a_number_claimed_twice_is_refused_and_nothing_written(
    make_registry: Factory,
) -> None:
    registry = make_registry()
    await registry.put(tenant("acme", "106"), create=True)
    await registry.put(tenant("beta", "107", default=True), create=True)
    with pytest.raises(TenantConflict, match="106"):
        await registry.put(tenant("gamma", "106"), create=True)
    with pytest.raises(TenantConflict, match="default"):
        await registry.put(tenant("acme", "106", default=True), create=False)
    version, tenants = await registry.load()
    assert version == 2
    assert {t.id: t.default for t in tenants} == {"acme": False, "beta": True}


async def test_a_pii_key_is_made_once_and_kept_across_updates(make_registry: Factory) -> None:
    registry = make_registry()
    await registry.put(tenant("acme", "106"), create=True)
    first = await registry.get("acme")
    assert first is not None
    assert first.pii_key is not None
    assert len(first.pii_key.get_secret_value()) >= 32
    await registry.put(tenant("acme", "106", disabled=True), create=False)
    second = await registry.get("acme")
    assert second is not None
    assert second.pii_key == first.pii_key
    assert second.hash_phone("15550001") == first.hash_phone("15550001")
    await registry.put(tenant("beta"), create=True)
    beta = await registry.get("beta")
    assert beta is not None
    assert beta.pii_key != first.pii_key


async def test_secrets_are_stored_and_read_back(make_registry: Factory) -> None:
    registry = make_registry()
    given = Tenant.model_validate(
        {
            "id": "acme",
            "app_secrets": ["s-one", {"app_id": "42", "secret": "s-two"}],
            "verify_token": "v-token",
            "access_token": "a-token",
            "rules": {"pii": {"phone": "hash"}, "publish_rate_per_s": 50},
        }
    )
    await registry.put(given, create=True)
    got = await make_registry().get("acme")
    assert got is not None
    assert [s.get_secret_value() for s in got.app_secrets] == ["s-one", "s-two"]
    assert got.app_secrets[1].app_id == "42"
    assert got.access_token is not None
    assert got.access_token.get_secret_value() == "a-token"
    assert got.rules == given.rules


async def test_seed_adds_only_ids_never_held(make_registry: Factory) -> None:
    registry = make_registry()
    await registry.put(tenant("acme", "106", disabled=True), create=True)
    await registry.put(tenant("gone", "109"), create=True)
    await registry.delete("gone")
    version = await registry.version()
    added = await registry.seed(
        [
            tenant("acme", "106"),  # registered: the registry's copy wins
            tenant("gone", "109"),  # deleted through the registry: not brought back
            tenant("thief", "106"),  # claims acme's number: skipped
            tenant("new", "110"),
            tenant("other", "111"),
        ]
    )
    assert added == ["new", "other"]
    assert await registry.version() == version + 1
    acme = await registry.get("acme")
    assert acme is not None
    assert acme.disabled
    assert await registry.get("gone") is None
    assert await registry.get("thief") is None
    new = await registry.get("new")
    assert new is not None
    assert new.pii_key is not None
    assert await registry.seed([tenant("new", "110")]) == []
    assert await registry.version() == version + 1  # nothing new: no bump


async def test_a_deleted_id_can_be_created_again_through_the_registry(
    make_registry: Factory,
) -> None:
    registry = make_registry()
    await registry.put(tenant("acme", "106"), create=True)
    await registry.delete("acme")
    await registry.put(tenant("acme", "106"), create=True)
    assert await registry.get("acme") is not None


async def test_two_clients_concurrent_puts_both_land(make_registry: Factory) -> None:
    one, two = make_registry(), make_registry()
    await one.put(tenant("seed"), create=True)
    await asyncio.gather(
        *(one.put(tenant(f"a{i}", f"10{i}"), create=True) for i in range(5)),
        *(two.put(tenant(f"b{i}", f"20{i}"), create=True) for i in range(5)),
    )
    version, tenants = await make_registry().load()
    assert version == 11
    assert {t.id for t in tenants} == {"seed"} | {f"a{i}" for i in range(5)} | {
        f"b{i}" for i in range(5)
    }


async def test_concurrent_claims_of_one_number_let_exactly_one_in(make_registry: Factory) -> None:
    one, two = make_registry(), make_registry()
    results = await asyncio.gather(
        one.put(tenant("acme", "106"), create=True),
        two.put(tenant("beta", "106"), create=True),
        return_exceptions=True,
    )
    assert sum(isinstance(r, TenantConflict) for r in results) == 1, results
    _, tenants = await one.load()
    assert len(tenants) == 1
