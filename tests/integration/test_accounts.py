"""Business accounts and templates (issue 12, point 6) end to end: the Graph client against
the Graph simulator on a real loopback port, the account store on real Redis and SQLite,
the shard's hook applying published webhook events, the refresher's loop, and the admin
API and /readyz of the real FastAPI app answering from the store."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from actors.account_hook import AccountHook
from actors.account_refresher import AccountRefresher, RefresherConfig
from actors.accounts import AccountBook, NoAccessToken
from adapters.errors import GraphError
from adapters.graph import GraphClient
from adapters.ports import AccountSource, AccountStore
from adapters.redis_accounts import RedisAccountStore
from adapters.sqlite_accounts import SqliteAccountStore
from ingress.account_health import account_check
from ingress.app import IngressDeps, create_app
from loadtest.graph_errors import SERVICE_UNAVAILABLE
from loadtest.graph_sim import GraphSim, GraphSimConfig
from loadtest.tenants import generate_tenants, to_tenants_file
from models.account import AccountSnapshot
from models.event import Business, NormalizedEvent
from models.tenant import Tenant, TenantDirectory
from tests.conftest import REDIS_URL
from tests.support.configs import ingress_config, sqlite_inbox
from tests.support.graph_sim_server import serve_graph_sim

SIM_TENANTS = generate_tenants(2, seed=11)
ACME, OTHER = SIM_TENANTS
NUMBER_A, NUMBER_B = ACME.numbers  # in two WABAs
WABA_A, WABA_B = ACME.waba_ids
TEMPLATES_PER_WABA = 60  # the simulator's listing
NO_TOKEN = Tenant(
    id="notoken",
    app_secrets=(SecretStr("notoken-secret"),),
    phone_number_ids=frozenset({"1069999999999999"}),
)
DIRECTORY = TenantDirectory([*to_tenants_file(SIM_TENANTS).tenants, NO_TOKEN])
ADMIN = "admin-token-for-accounts-tests"
GOLDEN = Path(__file__).parents[1] / "golden"


class Recorder:
    """AccountMetrics as plain lists."""

    def __init__(self) -> None:
        self.snapshots: list[AccountSnapshot] = []
        self.failed: list[str] = []

    def refreshed(self, snapshot: AccountSnapshot) -> None:
        self.snapshots.append(snapshot)

    def refresh_failed(self, tenant_id: str) -> None:
        self.failed.append(tenant_id)


@pytest.fixture
def sim() -> GraphSim:
    return GraphSim(GraphSimConfig(list(SIM_TENANTS)))


@pytest.fixture
async def graph(sim: GraphSim) -> AsyncIterator[GraphClient]:
    tokens = {t.id: t.access_token for t in SIM_TENANTS}
    async with serve_graph_sim(sim) as port:
        client = GraphClient(
            tokens.get,
            base_url=f"http://127.0.0.1:{port}",
            allowed_hosts=("127.0.0.1",),
            max_retries=1,
            retry_base_s=0.01,
        )
        yield client
        await client.close()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AccountStore]:
    made: AccountStore
    if request.param == "sqlite":
        made = SqliteAccountStore(tmp_path / "inbox.db")
    else:
        made = RedisAccountStore(REDIS_URL, request.getfixturevalue("redis_prefix"))
    yield made
    await made.close()


@pytest.fixture
def book(store: AccountStore, graph: GraphClient) -> AccountBook:
    source: AccountSource = graph  # the client implements the port as it is
    return AccountBook(store, source, DIRECTORY, template_page_size=25)


def webhook(name: str, waba_id: str, **data: Any) -> NormalizedEvent:
    """The golden field event, as acme's (its WABA), received now, `data` fields replaced."""
    raw = json.loads((GOLDEN / f"{name}.json").read_text())[0]
    event = NormalizedEvent.model_validate(raw)
    return event.model_copy(
        update={
            "tenant_id": ACME.id,
            "event_id": f"{name}:{waba_id}:{sorted(data.items())}",
            "received_at": datetime.now(UTC),
            "business": Business(waba_id=waba_id),
            "data": event.data.model_copy(update=data),
        }
    )


async def test_a_refresh_fills_numbers_wabas_and_every_template_page(book: AccountBook) -> None:
    """Both numbers and both WABAs as the simulator describes them, each WABA's 60
    templates read 25 at a time (three pages), every value marked as the Graph API's."""
    snap = await book.refresh(ACME.id)
    assert set(snap.phone_numbers) == {NUMBER_A.phone_number_id, NUMBER_B.phone_number_id}
    number = snap.phone_numbers[NUMBER_A.phone_number_id]
    assert (number.verified_name, number.name_status, number.quality_rating) == (
        f"{ACME.id} store",
        "APPROVED",
        "GREEN",
    )
    assert (number.messaging_limit, number.throughput_level, number.status) == (
        "TIER_2K",
        "STANDARD",
        "CONNECTED",
    )
    assert number.display_phone_number == NUMBER_A.display_phone_number
    assert number.sources["quality_rating"] == "graph"
    assert number.fetched_at is not None
    waba = snap.wabas[WABA_A]
    assert (waba.name, waba.currency, waba.account_review_status) == (
        f"{ACME.id} business",
        "USD",
        "APPROVED",
    )
    assert (waba.business_verification_status, waba.timezone_id) == ("verified", "1")
    assert len(snap.templates) == 2 * TEMPLATES_PER_WABA
    names = {t.name for t in snap.templates.values() if t.waba_id == WABA_B}
    assert names == {f"order_update_{i}" for i in range(TEMPLATES_PER_WABA)}
    first = next(t for t in snap.templates.values() if t.name == "order_update_59")
    assert (first.status, first.category, first.language) == ("APPROVED", "UTILITY", "en_US")
    assert snap.refresh_error is None
    assert snap.flags().restricted == ()
    assert snap.flags().unverified == ()
    assert await book.store.get(ACME.id) == snap


async def test_webhooks_change_the_snapshot_between_refreshes(book: AccountBook) -> None:
    """Through the shard's hook: a template REJECTED, a number FLAGGED, a quality
    downgrade, a name rejected, the other WABA disabled; each lands on its record."""
    await book.refresh(ACME.id)
    template_id = str(10**15 + 3)
    hook = AccountHook(book.store)
    hook.committed(
        [
            webhook(
                "field_message_template_status_update",
                WABA_A,
                message_template_id=template_id,
                message_template_name="order_update_3",
            ),
            webhook(
                "field_phone_number_quality_update",
                WABA_A,
                display_phone_number=NUMBER_A.display_phone_number,
                event="FLAGGED",
                current_limit=None,
            ),
            webhook(
                "field_phone_number_quality_update",
                WABA_B,
                display_phone_number=NUMBER_B.display_phone_number,
            ),
            webhook(
                "field_phone_number_name_update",
                WABA_B,
                display_phone_number=NUMBER_B.display_phone_number,
            ),
            webhook("field_account_update_disabled", WABA_B),
        ]
    )
    await hook.flush()
    snap = await book.store.get(ACME.id)
    assert snap is not None
    template = snap.templates[f"{WABA_A}:{template_id}"]
    assert (template.status, template.reason, template.sources["status"]) == (
        "REJECTED",
        "INCORRECT_CATEGORY",
        "webhook",
    )
    assert snap.templates[f"{WABA_B}:{template_id}"].status == "APPROVED"  # other WABA
    a, b = (
        snap.phone_numbers[NUMBER_A.phone_number_id],
        snap.phone_numbers[NUMBER_B.phone_number_id],
    )
    assert a.flagged
    assert a.messaging_limit == "TIER_2K"
    assert (b.messaging_limit, b.name_status, b.requested_verified_name) == (
        "TIER_1K",
        "DECLINED",
        "Test Shop",
    )
    assert snap.wabas[WABA_B].ban_state == "DISABLE"
    flags = snap.flags()
    assert f"waba {WABA_B}: ban DISABLE" in flags.restricted
    assert f"phone_number {NUMBER_A.phone_number_id}: quality flagged" in flags.restricted
    assert f"phone_number {NUMBER_B.phone_number_id}: name DECLINED" in flags.unverified
    counts = await book.store.counts(ACME.id)
    assert counts["events:account:phone_number_quality_update"] == 2


async def test_a_refresh_takes_graph_s_news_and_keeps_what_only_webhooks_said(
    book: AccountBook, sim: GraphSim
) -> None:
    """After a FLAGGED webhook, Meta's quality turns RED and a name is approved: the next
    refresh sets both from the Graph API and keeps the flag (Graph does not report it)."""
    await book.refresh(ACME.id)
    hook = AccountHook(book.store)
    hook.committed(
        [
            webhook(
                "field_phone_number_quality_update",
                WABA_A,
                display_phone_number=NUMBER_A.display_phone_number,
                event="FLAGGED",
            )
        ]
    )
    await hook.flush()
    sim.set_fields(NUMBER_A.phone_number_id, quality_rating="RED", name_status="PENDING_REVIEW")
    snap = await book.refresh(ACME.id)
    number = snap.phone_numbers[NUMBER_A.phone_number_id]
    assert (number.quality_rating, number.name_status, number.flagged) == (
        "RED",
        "PENDING_REVIEW",
        True,
    )
    assert number.sources["quality_rating"] == "graph"
    assert number.sources["flagged"] == "webhook"


async def test_a_failed_listing_keeps_that_waba_s_templates(
    book: AccountBook, sim: GraphSim
) -> None:
    """The Graph API fails WABA A's listing on every try: its stored templates stay, WABA
    B's are read again, and the snapshot says what failed."""
    await book.refresh(ACME.id)
    sim.fail(f"{WABA_A}/message_templates", times=10, error=SERVICE_UNAVAILABLE)
    sim.set_fields(WABA_B, name="renamed")
    snap = await book.refresh(ACME.id)
    assert sum(t.waba_id == WABA_A for t in snap.templates.values()) == TEMPLATES_PER_WABA
    assert snap.wabas[WABA_B].name == "renamed"
    assert snap.refresh_error is not None


async def test_a_revoked_token_fails_the_refresh_and_stores_nothing(
    book: AccountBook, sim: GraphSim
) -> None:
    """Every read refused (code 190): the refresh raises the Graph error, the store is
    untouched."""
    sim.revoke(ACME.id)
    with pytest.raises(GraphError):
        await book.refresh(ACME.id)
    assert await book.store.get(ACME.id) is None


async def test_a_tenant_without_token_is_skipped_and_reported(book: AccountBook) -> None:
    """No access token: refresh refuses before any call; the refresher schedules the
    others only and names it in its status."""
    with pytest.raises(NoAccessToken):
        await book.refresh(NO_TOKEN.id)
    refresher = AccountRefresher(book, RefresherConfig(spread_s=0), Recorder())
    await refresher.schedule()
    assert set(refresher.due()) == {ACME.id, OTHER.id}
    assert refresher.status().no_token == (NO_TOKEN.id,)
    # The Graph client's lookup decides when given (WA_ACCESS_TOKEN for a default tenant).
    tokens = {ACME.id: ACME.access_token}
    by_lookup = AccountBook(book.store, book.source, DIRECTORY, token_for=tokens.get)
    refresher = AccountRefresher(by_lookup, RefresherConfig(spread_s=0), Recorder())
    await refresher.schedule()
    assert set(refresher.due()) == {ACME.id}
    assert refresher.status().no_token == (OTHER.id, NO_TOKEN.id)


async def test_the_refresher_backs_off_on_errors_then_refreshes(
    book: AccountBook, sim: GraphSim
) -> None:
    """A revoked token: the refresh fails, is rescheduled within the backoff (not the
    interval), and reported; once the token works again, the next due run succeeds."""
    now = [time.time()]
    recorder = Recorder()
    config = RefresherConfig(interval_s=3600, max_backoff_s=8, spread_s=0)
    refresher = AccountRefresher(book, config, recorder, clock=lambda: now[0])
    await refresher.schedule()
    sim.revoke(ACME.id)
    assert await refresher.run_due() == 2
    assert recorder.failed == [ACME.id]
    assert ACME.id in refresher.status().failing
    assert now[0] + 1 <= refresher.due()[ACME.id] <= now[0] + 8
    assert refresher.due()[OTHER.id] >= now[0] + 0.95 * 3600
    sim.revoked.clear()
    now[0] += 8
    assert await refresher.run_due() == 1
    assert refresher.status().failing == {}
    assert refresher.refreshed == 2
    assert {s.tenant_id for s in recorder.snapshots} == {ACME.id, OTHER.id}


async def test_a_restart_waits_for_a_fresh_snapshot_s_turn(book: AccountBook) -> None:
    """A snapshot fetched recently is due at its fetch plus the interval, not at start."""
    await book.refresh(ACME.id)
    refresher = AccountRefresher(book, RefresherConfig(interval_s=600, spread_s=0), Recorder())
    await refresher.schedule()
    assert refresher.due()[ACME.id] > time.time() + 500
    assert refresher.due()[OTHER.id] <= time.time()


async def test_the_loop_refreshes_every_tenant_and_stops(book: AccountBook) -> None:
    """run() until stop(): both tenants with tokens are refreshed, the status says so."""
    refresher = AccountRefresher(book, RefresherConfig(spread_s=0), Recorder())
    task = asyncio.create_task(refresher.run())
    for _ in range(200):
        if refresher.refreshed == 2:
            break
        await asyncio.sleep(0.05)
    assert refresher.status().running
    refresher.stop()
    await asyncio.wait_for(task, timeout=5)
    assert refresher.refreshed == 2
    assert not refresher.status().running
    stored = await book.store.get_many([ACME.id, OTHER.id])
    assert set(stored) == {ACME.id, OTHER.id}


# --- the admin API and readiness, through the real app ------------------------------------


@pytest.fixture
async def admin(book: AccountBook, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """GET on the real app (accounts from the test's store), with the admin token."""
    inbox = sqlite_inbox(tmp_path / "ingress.db")
    deps = IngressDeps(
        config=ingress_config(partitions=1, admin_token=SecretStr(ADMIN)),
        directory=DIRECTORY,
        inbox=inbox,
        accounts=book.store,
        ready_checks={"accounts": account_check(book.store, DIRECTORY, cache_s=0)},
    )
    transport = httpx.ASGITransport(app=create_app(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

        async def get(path: str, token: str | None = ADMIN, **params: str) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return await client.get(path, headers=headers, params=params)

        yield get
    await inbox.close()


async def test_the_account_endpoint_answers_from_the_store(
    book: AccountBook, admin: Callable[..., Any]
) -> None:
    """Before a refresh: account null; after it: numbers and WABAs (no templates inline),
    flags clear, the template count."""
    before = await admin(f"/admin/tenants/{ACME.id}/account")
    assert before.status_code == 200
    assert before.json()["account"] is None
    await book.refresh(ACME.id)
    body = (await admin(f"/admin/tenants/{ACME.id}/account")).json()
    account = body["account"]
    assert set(account["phone_numbers"]) == {NUMBER_A.phone_number_id, NUMBER_B.phone_number_id}
    assert account["wabas"][WABA_A]["currency"] == "USD"
    assert "templates" not in account
    assert body["templates"] == 2 * TEMPLATES_PER_WABA
    assert body["flags"] == {"restricted": False, "unverified": False, "reasons": []}


async def test_the_templates_endpoint_lists_and_filters(
    book: AccountBook, admin: Callable[..., Any]
) -> None:
    """Every template ordered by WABA and name; `status=rejected` finds the one a webhook
    rejected."""
    await book.refresh(ACME.id)
    hook = AccountHook(book.store)
    hook.committed(
        [
            webhook(
                "field_message_template_status_update",
                WABA_B,
                message_template_id=str(10**15 + 7),
            )
        ]
    )
    await hook.flush()
    listed = (await admin(f"/admin/tenants/{ACME.id}/templates")).json()["templates"]
    assert len(listed) == 2 * TEMPLATES_PER_WABA
    assert [t["waba_id"] for t in listed] == sorted(t["waba_id"] for t in listed)
    rejected = await admin(f"/admin/tenants/{ACME.id}/templates", status="rejected")
    assert [(t["waba_id"], t["template_id"]) for t in rejected.json()["templates"]] == [
        (WABA_B, str(10**15 + 7))
    ]


async def test_the_stats_endpoint_counts_committed_events(
    book: AccountBook, admin: Callable[..., Any]
) -> None:
    """Counts the hook wrote, shaped by category and type."""
    hook = AccountHook(book.store)
    hook.committed([webhook("field_account_update_disabled", WABA_A)] * 3)
    await hook.flush()
    stats = (await admin(f"/admin/tenants/{ACME.id}/stats")).json()
    assert stats["events"] == {"account": {"account_update": 3}}
    assert stats["events_total"] == 3
    assert (await admin(f"/admin/tenants/{OTHER.id}/stats")).json()["events_total"] == 0


@pytest.mark.parametrize("route", ["account", "templates", "stats"])
async def test_unknown_tenants_and_missing_tokens_are_refused(
    admin: Callable[..., Any], route: str
) -> None:
    """404 in the project's JSON error shape for an unknown tenant; 401 without the token."""
    missing = await admin(f"/admin/tenants/nobody/{route}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "tenant_not_found"
    assert (await admin(f"/admin/tenants/{ACME.id}/{route}", token=None)).status_code == 401


async def test_readiness_reports_a_restricted_account_as_degraded(
    book: AccountBook, admin: Callable[..., Any], sim: GraphSim
) -> None:
    """A ban by webhook and a RED number by refresh: /readyz stays 200 (ready), its
    accounts check degraded naming the tenant and why."""
    ready = await admin("/readyz", token=None)
    assert ready.status_code == 200
    assert ready.json()["checks"]["accounts"] == "ok"
    sim.set_fields(NUMBER_B.phone_number_id, quality_rating="RED")
    await book.refresh(ACME.id)
    hook = AccountHook(book.store)
    hook.committed([webhook("field_account_update_disabled", WABA_A)])
    await hook.flush()
    ready = await admin("/readyz", token=None)
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    detail = ready.json()["checks"]["accounts"]
    assert detail.startswith("degraded: restricted: " + ACME.id)
    assert f"waba {WABA_A}: ban DISABLE" in detail
    assert f"phone_number {NUMBER_B.phone_number_id}: quality RED" in detail
    assert OTHER.id not in detail
    account = (await admin(f"/admin/tenants/{ACME.id}/account")).json()
    assert account["flags"]["restricted"] is True


async def test_a_default_tenant_learns_its_numbers_from_its_webhooks(
    store: AccountStore, graph: GraphClient
) -> None:
    """A default tenant names no numbers: the ones its webhooks came through (counted by
    the commit hook) are refreshed, and a number new to the snapshot makes it due."""
    default = Tenant(
        id=ACME.id,
        app_secrets=(SecretStr(ACME.app_secret),),
        access_token=SecretStr(ACME.access_token),
        default=True,
    )
    book = AccountBook(store, graph, TenantDirectory([default]), template_page_size=25)
    assert not await book.unknown_ids(ACME.id), "no webhook yet: nothing to look for"
    hook = AccountHook(store)
    hook.committed(
        [
            webhook("field_account_update_disabled", NUMBER_A.waba_id).model_copy(
                update={
                    "business": Business(
                        waba_id=NUMBER_A.waba_id, phone_number_id=NUMBER_A.phone_number_id
                    )
                }
            )
        ]
    )
    await hook.flush()
    assert await book.unknown_ids(ACME.id)
    snap = await book.refresh(ACME.id)
    assert set(snap.phone_numbers) == {NUMBER_A.phone_number_id}
    assert set(snap.wabas) == {NUMBER_A.waba_id}
    assert len(snap.templates) == TEMPLATES_PER_WABA
    assert not await book.unknown_ids(ACME.id)
