"""The admin conversation look-ups (issue 10) through the app on the real SQLite inbox:
by id, by a tenant's customer (wa_id / user_id), behind the bearer token, with bounded
inputs and the project's JSON errors."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from adapters.ports import Inbox, StateWrite
from ingress.admin import MAX_LOOKUP_CHARS, admin_router
from ingress.app import IngressDeps, create_app
from ingress.error_handlers import install_error_handlers
from ingress.metrics import IngressMetrics
from models.conversation import ConversationCustomer, ConversationKind, ConversationRecord
from models.routing import conversation_id, conversation_key
from models.tenant import PiiRule, TenantDirectory, TenantRules
from models.tenant_pii import MASK
from tests.support.app import tenant
from tests.support.clock import FixedClock
from tests.support.configs import ingress_config, sqlite_inbox
from tests.support.unreachable import unwritable_db_path

TOKEN = "admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PHONE, OTHER_PHONE = "420000000000001", "420000000000002"
WA_ID, USER_ID = "447700900123", "GB.1234567890"
CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def directory() -> TenantDirectory:
    """`acme` (the default) and `other`, which owns OTHER_PHONE."""
    other = tenant("other", secrets=("other-secret",), phone_ids=(OTHER_PHONE,), default=False)
    return TenantDirectory([tenant("acme"), other])


def record(
    tenant_id: str,
    phone: str | None,
    customer: str | None,
    *,
    kind: ConversationKind = "customer",
    wa_id: str | None = WA_ID,
    user_id: str | None = None,
    last_inbound_at: datetime | None = None,
) -> ConversationRecord:
    """A stored conversation, keyed as the splitter keys the customer's messages."""
    cid = conversation_id(conversation_key(tenant_id, phone, customer))
    return ConversationRecord(
        conversation_id=cid,
        tenant_id=tenant_id,
        kind=kind,
        phone_number_id=phone,
        customer=ConversationCustomer(wa_id=wa_id, user_id=user_id, name="Ada")
        if kind == "customer"
        else None,
        group_id=customer.removeprefix("group:") if kind == "group" and customer else None,
        created_at=CREATED,
        first_seen_at=CREATED,
        last_inbound_at=last_inbound_at,
        message_count=1 if last_inbound_at else 0,
        window_expires_at=last_inbound_at + timedelta(hours=24) if last_inbound_at else None,
        last_sequence=3,
        updated_at=CREATED,
    )


async def put(inbox: Inbox, *records: ConversationRecord) -> None:
    """Store records the way a shard does: in a commit (here acknowledging no entry)."""
    await inbox.commit(0, [], StateWrite(conversations={r.conversation_id: r for r in records}))


@asynccontextmanager
async def admin_client(
    inbox: Inbox, app: FastAPI | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on create_app() with the admin token (or on `app`); closes `inbox`."""
    if app is None:
        config = ingress_config(partitions=1, admin_token=SecretStr(TOKEN))
        app = create_app(IngressDeps(config, directory(), inbox))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client
    finally:
        await inbox.close()


def error_of(reply: httpx.Response) -> tuple[int, str]:
    """(status, error code) of a JSON error in the project's one shape."""
    assert reply.headers["content-type"] == "application/json"
    assert set(reply.json()) == {"error"}
    assert set(reply.json()["error"]) == {"code", "message"}
    return reply.status_code, reply.json()["error"]["code"]


async def test_a_conversation_is_shown_by_its_id_with_its_window_now(tmp_path: Path) -> None:
    """The record's public view: ids, customer, counters, the window open an hour after the
    customer's last message, and the last sequence; never the raw record's own members."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    now = datetime.now(UTC)
    stored = record("acme", PHONE, WA_ID, last_inbound_at=now - timedelta(hours=1))
    await put(inbox, stored)
    async with admin_client(inbox) as client:
        reply = await client.get(f"/admin/conversations/{stored.conversation_id}", headers=AUTH)
    assert reply.status_code == 200
    shown = reply.json()["conversation"]
    assert shown == stored.public(now).model_dump(mode="json")
    assert shown["service_window"]["open"] is True
    assert shown["customer"]["wa_id"] == WA_ID
    assert (shown["message_count"], shown["last_sequence"]) == (1, 3)
    assert "window_expires_at" not in shown


async def test_the_window_is_taken_at_the_routers_clock(tmp_path: Path) -> None:
    """The service window is computed at the router's clock, not at the record's time:
    25 hours after the last message it is closed, its expiry still shown."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    stored = record("acme", PHONE, WA_ID, last_inbound_at=CREATED)
    await put(inbox, stored)
    clock = FixedClock((CREATED + timedelta(hours=25)).timestamp())
    app = FastAPI()
    install_error_handlers(app, IngressMetrics())
    app.include_router(admin_router(SecretStr(TOKEN), directory(), inbox, 1, clock=clock))
    async with admin_client(inbox, app) as client:
        path = f"/admin/conversations/{stored.conversation_id}"
        closed = (await client.get(path, headers=AUTH)).json()["conversation"]
        clock.now = (CREATED + timedelta(hours=23)).timestamp()
        still_open = (await client.get(path, headers=AUTH)).json()["conversation"]
    expires = (CREATED + timedelta(hours=24)).isoformat().replace("+00:00", "Z")
    assert closed["service_window"] == {"open": False, "expires_at": expires}
    assert still_open["service_window"] == {"open": True, "expires_at": expires}


async def test_a_group_conversation_is_shown_by_its_id(tmp_path: Path) -> None:
    """A group's record is a conversation too (kind `group`)."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    group = record("acme", PHONE, "group:G1@g.us", kind="group")
    await put(inbox, group)
    async with admin_client(inbox) as client:
        reply = await client.get(f"/admin/conversations/{group.conversation_id}", headers=AUTH)
    assert reply.status_code == 200
    assert (reply.json()["conversation"]["kind"], reply.json()["conversation"]["group_id"]) == (
        "group",
        "G1@g.us",
    )


async def test_unknown_legacy_and_tenant_records_are_not_found(tmp_path: Path) -> None:
    """404 conversation_not_found for an id never stored, for a conversation that only has
    a last sequence of an earlier version, and for a tenant's non-conversation stream."""
    path = tmp_path / "inbox.db"
    inbox = sqlite_inbox(path)
    stream = record("acme", PHONE, None, kind="tenant")
    await put(inbox, stream)
    legacy = conversation_id(conversation_key("acme", PHONE, "15550001111"))
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT INTO sequences (conversation_id, seq) VALUES (?, 7)", (legacy,))
    assert (await inbox.conversations([legacy]))[legacy].last_sequence == 7  # it is stored
    async with admin_client(inbox) as client:
        replies = [
            await client.get(f"/admin/conversations/{cid}", headers=AUTH)
            for cid in ("0" * 32, legacy, stream.conversation_id)
        ]
    assert [error_of(r) for r in replies] == [(404, "conversation_not_found")] * 3


async def test_a_customer_is_found_by_wa_id_by_user_id_or_either(tmp_path: Path) -> None:
    """One record per business number of the tenant that talked to the customer, ordered
    by id; by user_id alone a customer without a wa_id is found too."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    first = record("acme", PHONE, WA_ID)
    second = record("acme", "420000000000009", WA_ID)
    by_user = record("acme", PHONE, USER_ID, wa_id=None, user_id=USER_ID)
    await put(inbox, first, second, by_user)
    async with admin_client(inbox) as client:

        async def found(**params: str) -> list[str]:
            reply = await client.get("/admin/conversations", params=params, headers=AUTH)
            assert reply.status_code == 200, reply.text
            return [c["conversation_id"] for c in reply.json()["conversations"]]

        assert await found(tenant_id="acme", wa_id=WA_ID) == sorted(
            [first.conversation_id, second.conversation_id]
        )
        assert await found(tenant_id="acme", user_id=USER_ID) == [by_user.conversation_id]
        both = await found(tenant_id="acme", wa_id=WA_ID, user_id=USER_ID)
    assert both == sorted([first.conversation_id, second.conversation_id, by_user.conversation_id])


async def test_another_tenants_customer_is_not_returned(tmp_path: Path) -> None:
    """The same wa_id talking to two tenants: each tenant finds only its own record, and a
    tenant that never talked to the customer finds nothing (404)."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    ours, theirs = record("acme", PHONE, WA_ID), record("other", OTHER_PHONE, WA_ID)
    await put(inbox, ours, theirs)
    async with admin_client(inbox) as client:
        acme = await client.get(
            "/admin/conversations", params={"tenant_id": "acme", "wa_id": WA_ID}, headers=AUTH
        )
        other = await client.get(
            "/admin/conversations", params={"tenant_id": "other", "wa_id": WA_ID}, headers=AUTH
        )
        nobody = await client.get(
            "/admin/conversations", params={"tenant_id": "nobody", "wa_id": WA_ID}, headers=AUTH
        )
    assert [c["conversation_id"] for c in acme.json()["conversations"]] == [ours.conversation_id]
    assert [c["tenant_id"] for c in other.json()["conversations"]] == ["other"]
    assert error_of(nobody) == (404, "conversation_not_found")


async def test_a_search_that_finds_nothing_is_not_found(tmp_path: Path) -> None:
    """An unknown customer, and a group's or tenant's record, are never found by customer."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    await put(inbox, record("acme", PHONE, "group:G1", kind="group"))
    async with admin_client(inbox) as client:
        unknown = await client.get(
            "/admin/conversations", params={"tenant_id": "acme", "wa_id": "1555"}, headers=AUTH
        )
    assert error_of(unknown) == (404, "conversation_not_found")


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"wa_id": WA_ID},
        {"tenant_id": "", "wa_id": WA_ID},
        {"tenant_id": "acme"},
        {"tenant_id": "acme", "wa_id": "", "user_id": ""},
        {"tenant_id": "acme", "wa_id": "1" * (MAX_LOOKUP_CHARS + 1)},
        {"tenant_id": "acme", "wa_id": WA_ID, "user_id": "U" * 60_000},
        {"tenant_id": "a" * (MAX_LOOKUP_CHARS + 1), "wa_id": WA_ID},
    ],
    ids=[
        "nothing",
        "no-tenant",
        "empty-tenant",
        "no-customer",
        "empty-customer",
        "long-wa-id",
        "huge-user-id",
        "long-tenant",
    ],
)
async def test_a_search_without_its_parameters_or_past_the_bounds_is_refused(
    params: dict[str, str], tmp_path: Path
) -> None:
    """400 invalid_lookup, in the project's error shape, before the store is asked."""
    async with admin_client(sqlite_inbox(tmp_path / "inbox.db")) as client:
        reply = await client.get("/admin/conversations", params=params, headers=AUTH)
    assert error_of(reply) == (400, "invalid_lookup")


async def test_a_conversation_id_past_the_bound_is_refused(tmp_path: Path) -> None:
    """An id longer than MAX_LOOKUP_CHARS is a 400, not a store look-up; at the bound, 404."""
    async with admin_client(sqlite_inbox(tmp_path / "inbox.db")) as client:
        long = await client.get(f"/admin/conversations/{'a' * 10_000}", headers=AUTH)
        at_bound = await client.get(f"/admin/conversations/{'a' * MAX_LOOKUP_CHARS}", headers=AUTH)
    assert error_of(long) == (400, "invalid_lookup")
    assert error_of(at_bound) == (404, "conversation_not_found")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["none", "wrong", "not-bearer"],
)
async def test_the_look_ups_need_the_bearer_token(headers: dict[str, str], tmp_path: Path) -> None:
    """401 with WWW-Authenticate, and nothing of the record, without the token."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    stored = record("acme", PHONE, WA_ID)
    await put(inbox, stored)
    async with admin_client(inbox) as client:
        by_id = await client.get(f"/admin/conversations/{stored.conversation_id}", headers=headers)
        search = await client.get(
            "/admin/conversations", params={"tenant_id": "acme", "wa_id": WA_ID}, headers=headers
        )
    for reply in (by_id, search):
        assert error_of(reply) == (401, "unauthorized")
        assert reply.headers["www-authenticate"] == "Bearer"
        assert WA_ID not in reply.text


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (f"/admin/conversations/{'0' * 32}", {}),
        ("/admin/conversations", {"tenant_id": "acme", "wa_id": WA_ID}),
        ("/admin/inbox", {}),
    ],
    ids=["by-id", "search", "backlog"],
)
async def test_a_store_outage_is_a_503(path: str, params: dict[str, Any], tmp_path: Path) -> None:
    """The store cannot be opened: 503 store_unavailable with Retry-After, not a 500."""
    inbox = sqlite_inbox(unwritable_db_path("directory", tmp_path))
    async with admin_client(inbox) as client:
        reply = await client.get(path, params=params, headers=AUTH)
    assert error_of(reply) == (503, "store_unavailable")
    assert reply.headers["retry-after"] == "1"


async def test_a_pii_masked_tenants_conversations_are_shown_masked(tmp_path: Path) -> None:
    """A tenant whose PII rule masks names and hashes numbers: found by the clear wa_id
    (the store keeps it clear), shown with its hash and the mask, by id and by search;
    another tenant's record is shown as stored."""
    masked = tenant("acme").model_copy(
        update={"rules": TenantRules(pii=PiiRule(customer_name="mask", phone="hash"))}
    )
    other = tenant("other", secrets=("other-secret",), phone_ids=(OTHER_PHONE,), default=False)
    config = ingress_config(partitions=1, admin_token=SecretStr(TOKEN))
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    mine, theirs = record("acme", PHONE, WA_ID), record("other", OTHER_PHONE, WA_ID)
    await put(inbox, mine, theirs)
    app = create_app(IngressDeps(config, TenantDirectory([masked, other]), inbox))
    async with admin_client(inbox, app) as client:
        search = await client.get(
            "/admin/conversations", params={"tenant_id": "acme", "wa_id": WA_ID}, headers=AUTH
        )
        by_id = await client.get(f"/admin/conversations/{mine.conversation_id}", headers=AUTH)
        other_reply = await client.get(
            f"/admin/conversations/{theirs.conversation_id}", headers=AUTH
        )
    assert search.status_code == by_id.status_code == 200
    for text in (search.text, by_id.text):
        assert WA_ID not in text
        assert "Ada" not in text
    customer = by_id.json()["conversation"]["customer"]
    assert customer == {
        "wa_id": masked.hash_phone(WA_ID),
        "user_id": None,
        "username": None,
        "name": MASK,
    }
    assert other_reply.json()["conversation"]["customer"]["wa_id"] == WA_ID
