"""The AccountStore port on both adapters (adapters/ports.py): snapshots stored whole and
read back (one and many), changes applied in order and atomically under concurrent
writers, a refresh merged without losing a webhook applied meanwhile, counters added up,
everything kept across a new instance; the SQLite store shares the inbox's file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.ports import AccountStore
from adapters.redis_accounts import RedisAccountStore
from adapters.sqlite_accounts import SqliteAccountStore
from models.account import AccountSnapshot, PhoneNumberState, TemplateState, WabaState
from models.account_change import AccountChange
from tests.conftest import REDIS_URL
from tests.support.configs import sqlite_inbox
from tests.support.events import inbox_item

Factory = Callable[[], AccountStore]
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WABA = "310000000000001"


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """A factory of store instances over one store (a second instance: another process)."""
    made: list[AccountStore] = []
    if request.param == "sqlite":

        def factory() -> AccountStore:
            made.append(SqliteAccountStore(tmp_path / "inbox.db"))
            return made[-1]
    else:
        prefix = request.getfixturevalue("redis_prefix")

        def factory() -> AccountStore:
            made.append(RedisAccountStore(REDIS_URL, prefix))
            return made[-1]

    yield factory
    for store in made:
        await store.close()


def snapshot(tenant_id: str = "acme", *, at: datetime = T0) -> AccountSnapshot:
    """A refreshed snapshot: one number, one WABA, two templates."""
    template = TemplateState(
        waba_id=WABA, template_id="1", name="hello", status="APPROVED", fetched_at=at
    )
    other = template.model_copy(update={"template_id": "2", "name": "bye"})
    return AccountSnapshot(
        tenant_id=tenant_id,
        phone_numbers={
            "106": PhoneNumberState(
                phone_number_id="106",
                display_phone_number="+1 555-010-0001",
                quality_rating="GREEN",
                fetched_at=at,
            )
        },
        wabas={WABA: WabaState(waba_id=WABA, name="Acme", fetched_at=at)},
        templates={template.key: template, other.key: other},
        fetched_at=at,
    )


def template_change(status: str, *, at: datetime, tenant_id: str = "acme") -> AccountChange:
    return AccountChange(
        tenant_id=tenant_id,
        target="template",
        at=at,
        waba_id=WABA,
        object_id="1",
        values={"status": status},
        event_id=f"e-{status}",
    )


async def test_a_snapshot_is_stored_whole_and_read_back_by_another_instance(
    make_store: Factory,
) -> None:
    """put then get (and get_many) from a new instance: equal, absent tenants left out."""
    store = make_store()
    assert await store.get("acme") is None
    await store.put(snapshot("acme"))
    await store.put(snapshot("beta"))
    again = make_store()
    assert await again.get("acme") == snapshot("acme")
    many = await again.get_many(["acme", "beta", "nobody"])
    assert set(many) == {"acme", "beta"}
    assert many["beta"] == snapshot("beta")
    assert await again.get_many([]) == {}


async def test_changes_apply_in_order_and_mark_their_source(make_store: Factory) -> None:
    """Two changes of one template in one call: the later one wins; the field is the
    webhook's; a change older than the last fetch is ignored."""
    store = make_store()
    await store.put(snapshot())
    late = T0 + timedelta(minutes=1)
    await store.apply(
        [
            template_change("REJECTED", at=late),
            template_change("PAUSED", at=late + timedelta(seconds=1)),
            template_change("DISABLED", at=T0 - timedelta(seconds=1)),  # before the fetch
        ]
    )
    found = await store.get("acme")
    assert found is not None
    template = found.templates[f"{WABA}:1"]
    assert template.status == "PAUSED"
    assert template.sources == {"status": "webhook"}
    assert template.updated_at == late + timedelta(seconds=1)
    assert found.templates[f"{WABA}:2"].status == "APPROVED"


async def test_a_change_for_a_tenant_never_seen_creates_its_snapshot(make_store: Factory) -> None:
    """A webhook before the first refresh is not lost."""
    store = make_store()
    await store.apply([template_change("REJECTED", at=T0, tenant_id="new")])
    found = await store.get("new")
    assert found is not None
    assert found.templates[f"{WABA}:1"].status == "REJECTED"


async def test_concurrent_writers_lose_nothing(make_store: Factory) -> None:
    """Twenty instances each change another template of one tenant at the same time:
    every change is in the stored snapshot (an apply is atomic, not last-writer-wins)."""
    await make_store().put(snapshot())
    stores = [make_store() for _ in range(20)]

    async def change(i: int, store: AccountStore) -> None:
        await store.apply(
            [
                AccountChange(
                    tenant_id="acme",
                    target="template",
                    at=T0 + timedelta(seconds=1),
                    waba_id=WABA,
                    object_id=f"t{i}",
                    values={"status": "PENDING"},
                )
            ]
        )

    await asyncio.gather(*(change(i, s) for i, s in enumerate(stores)))
    found = await make_store().get("acme")
    assert found is not None
    assert {f"{WABA}:t{i}" for i in range(20)} <= set(found.templates)


async def test_a_refresh_merges_and_keeps_a_newer_webhook(make_store: Factory) -> None:
    """A webhook applied after the refresh started reading wins over the read for that
    field; the read sets the rest, drops a template no longer listed, keeps the
    webhook-only flag."""
    store = make_store()
    await store.put(snapshot())
    started = T0 + timedelta(hours=1)
    await store.apply(
        [
            template_change("REJECTED", at=started + timedelta(seconds=1)),
            AccountChange(
                tenant_id="acme",
                target="phone_number",
                at=started - timedelta(seconds=5),
                display_phone_number="15550100001",
                values={"flagged": True},
            ),
        ]
    )
    read = snapshot(at=started + timedelta(seconds=2))
    only_one = {k: v for k, v in read.templates.items() if v.template_id == "1"}
    yellow = read.phone_numbers["106"].model_copy(update={"quality_rating": "YELLOW"})
    read = read.model_copy(update={"templates": only_one, "phone_numbers": {"106": yellow}})
    await store.apply(
        [AccountChange(tenant_id="acme", target="refresh", at=started, refreshed=read)]
    )
    found = await store.get("acme")
    assert found is not None
    assert found.templates[f"{WABA}:1"].status == "REJECTED"  # the webhook was newer
    assert f"{WABA}:2" not in found.templates  # no longer listed
    number = found.phone_numbers["106"]
    assert number.quality_rating == "YELLOW"
    assert number.flagged is True
    assert number.sources["quality_rating"] == "graph"
    assert found.fetched_at == started + timedelta(seconds=2)


async def test_counts_add_up_per_tenant(make_store: Factory) -> None:
    """add_counts increments; counts are per tenant; {} for one never counted."""
    store = make_store()
    assert await store.counts("acme") == {}
    await store.add_counts({"acme": {"events:message:text": 2}, "beta": {"failures:error": 1}})
    await store.add_counts({"acme": {"events:message:text": 3, "media_bytes:stored": 10}})
    await store.add_counts({})
    assert await make_store().counts("acme") == {"events:message:text": 5, "media_bytes:stored": 10}
    assert await store.counts("beta") == {"failures:error": 1}


async def test_ping_answers(make_store: Factory) -> None:
    """A reachable store answers its ping."""
    await make_store().ping()


async def test_the_sqlite_store_shares_the_inbox_file(tmp_path: Path) -> None:
    """The embedded store lives in the inbox's database file beside the inbox's tables,
    and both keep working."""
    path = tmp_path / "inbox.db"
    inbox = sqlite_inbox(path)
    store = SqliteAccountStore(path)
    try:
        await inbox.append_deliveries([("d1", [inbox_item(1)])])
        await store.put(snapshot())
        assert await inbox.backlog(inbox_item(1).partition) == 1
        assert await store.get("acme") == snapshot()
    finally:
        await store.close()
        await inbox.close()
