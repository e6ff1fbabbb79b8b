"""The Inbox port's conversation state on both adapters: conversation records and message
records written by the commit with the entries they came from, read back exactly, expired
after the retention and the message-state TTL, and the customer look-up."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.errors import TransientError
from adapters.ports import Inbox, StateWrite
from adapters.redis_inbox import RedisInbox
from models.conversation import (
    ConversationCustomer,
    ConversationKind,
    ConversationRecord,
    MessageRecord,
    PricingConversation,
    message_key,
)
from tests.conftest import REDIS_URL
from tests.support.clock import FixedClock
from tests.support.configs import redis_inbox, sqlite_inbox
from tests.support.events import inbox_item as item
from tests.support.events import store

WINDOW_S = 3600
AT = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def record(
    cid: str,
    *,
    tenant_id: str = "acme",
    kind: ConversationKind = "customer",
    wa_id: str | None = None,
    user_id: str | None = None,
    last_sequence: int = 1,
) -> ConversationRecord:
    """A created record; a customer one when it has a wa_id or a user_id."""
    customer = (
        ConversationCustomer(wa_id=wa_id, user_id=user_id)
        if wa_id is not None or user_id is not None
        else None
    )
    return ConversationRecord(
        conversation_id=cid,
        tenant_id=tenant_id,
        kind=kind,
        customer=customer,
        created_at=AT,
        last_sequence=last_sequence,
    )


def full_record() -> ConversationRecord:
    """A record with every field set away from its default, datetimes in two zones."""
    east = timezone(timedelta(hours=5, minutes=30))
    return ConversationRecord(
        conversation_id="c-full",
        tenant_id="acme",
        kind="customer",
        phone_number_id="106540352242922",
        display_phone_number="15550001111",
        customer=ConversationCustomer(
            wa_id="16505550001", user_id="US.13491208655302741918", username="@jane", name="Jané"
        ),
        group_id="g-1",
        created_at=AT,
        first_seen_at=AT - timedelta(seconds=3),
        last_inbound_at=AT.astimezone(east),
        message_count=3,
        window_expires_at=AT + timedelta(hours=24),
        pricing=PricingConversation(id="pc-1", origin_type="service", expires_at=AT),
        marketing_opt_out=False,
        participants=("16505550001", "16505550002"),
        last_sequence=9,
        updated_at=AT + timedelta(microseconds=1),
    )


@dataclass
class Store:
    """Inbox instances over one store, and a way to let time pass for their expiries:
    SQLite's injected clock is stepped, Redis (which expires keys by its own clock) is
    waited for."""

    make: Callable[..., Inbox]
    advance: Callable[[float], Awaitable[None]]
    sqlite_path: Path | None = None  # the SQLite store's file
    redis_prefix: str | None = None  # the Redis store's key prefix
    made: list[Inbox] = field(default_factory=list)

    def inbox(self, **options: Any) -> Inbox:
        """A new instance (retention and message TTL from Settings unless given)."""
        self.made.append(self.make(**options))
        return self.made[-1]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Both adapters, each over a store of its own."""
    if request.param == "sqlite":
        clock = FixedClock()

        async def step(seconds: float) -> None:
            clock.advance(seconds)

        path = tmp_path / "inbox.db"
        made = Store(
            lambda **o: sqlite_inbox(path, WINDOW_S, clock=clock, **o), step, sqlite_path=path
        )
    else:
        prefix = request.getfixturevalue("redis_prefix")
        made = Store(
            lambda **o: redis_inbox(prefix, window_s=WINDOW_S, **o),
            asyncio.sleep,
            redis_prefix=prefix,
        )
    yield made
    for inbox in made.made:
        await inbox.close()


async def test_commit_stores_records_and_messages_with_the_entries(backend: Store) -> None:
    """One commit acknowledges the entries and stores the records and message records of
    their events, and marks the items: all of it readable after the commit."""
    inbox = backend.inbox()
    await store(inbox, [item(1), item(2)])
    batch = await inbox.read(0, 10, 50)
    key = message_key("c1", "wamid.1")
    state = StateWrite(
        conversations={"c1": record("c1", wa_id="16505550001", last_sequence=2)},
        messages={key: MessageRecord(event_id="e1")},
    )
    assert await inbox.conversations(["c1"]) == {}
    await inbox.commit(0, [s.entry_id for s in batch], state, seen=["i:1", "i:2"])
    assert await inbox.backlog(0) == 0
    assert await inbox.conversations(["c1"]) == {"c1": state.conversations["c1"]}
    assert await inbox.messages([key]) == {key: MessageRecord(event_id="e1")}
    assert await inbox.seen(["i:1", "i:2"]) == {"i:1", "i:2"}


async def test_a_failed_commit_stores_nothing_of_its_batch(backend: Store) -> None:
    """A commit the store refuses part-way (Redis: a key of another type where the
    customer index goes; SQLite: a trigger refusing the message rows) is a TransientError
    and leaves everything as before: the entries uncommitted, no record, no message, no
    mark. A retry after the store is fixed commits the whole batch."""
    inbox = backend.inbox()
    await store(inbox, [item(1)])
    batch = await inbox.read(0, 10, 50)
    key = message_key("c1", "wamid.1")
    state = StateWrite(
        conversations={"c1": record("c1", wa_id="16505550001")},
        messages={key: MessageRecord(state="sent")},
    )
    unblock = await _refuse_the_commit(backend, inbox)
    with pytest.raises(TransientError):
        await inbox.commit(0, [s.entry_id for s in batch], state, seen=["i:1"])
    assert await inbox.backlog(0) == 1
    assert await inbox.conversations(["c1"]) == {}
    assert await inbox.messages([key]) == {}
    assert await inbox.seen(["i:1"]) == set()
    restarted = backend.inbox()
    assert [s.entry_id for s in await restarted.read(0, 10, 50)] == [batch[0].entry_id]
    await unblock()
    await inbox.commit(0, [s.entry_id for s in batch], state, seen=["i:1"])
    assert await inbox.backlog(0) == 0
    assert set(await inbox.conversations(["c1"])) == {"c1"}
    assert set(await inbox.messages([key])) == {key}


async def _refuse_the_commit(backend: Store, inbox: Inbox) -> Callable[[], Awaitable[None]]:
    """Make the store refuse the next commit of conversation c1 part-way; returns the undo."""
    if isinstance(inbox, RedisInbox):
        (index,) = inbox.customer_keys("acme", wa_id="16505550001")
        async with raw_redis() as raw:
            await raw.set(index, "not a set")

        async def undo_redis() -> None:
            async with raw_redis() as raw:
                await raw.delete(index)

        return undo_redis
    assert backend.sqlite_path is not None
    await inbox.ping()  # the adapter creates its schema
    with closing(sqlite3.connect(backend.sqlite_path)) as conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON messages "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )

    async def undo_sqlite() -> None:
        assert backend.sqlite_path is not None
        with closing(sqlite3.connect(backend.sqlite_path)) as conn:
            conn.execute("DROP TRIGGER refuse")

    return undo_sqlite


async def test_records_round_trip_exactly(backend: Store) -> None:
    """Every field comes back as written: nested models, datetimes (their zone and
    microseconds), a tuple of participants, a False that is not the default None; an
    all-default message record too."""
    inbox = backend.inbox()
    full = full_record()
    messages = {
        message_key("c-full", "wamid.1"): MessageRecord(
            state="read", root="wamid.0", event_id="e-1"
        ),
        message_key("c-full", "wamid.2"): MessageRecord(),
    }
    legacy = ConversationRecord.legacy("c-old", 4)
    await inbox.commit(
        0, [], StateWrite(conversations={"c-full": full, "c-old": legacy}, messages=messages)
    )
    got = await backend.inbox().conversations(["c-full", "c-old"])
    assert got == {"c-full": full, "c-old": legacy}
    assert got["c-full"].last_inbound_at is not None
    assert got["c-full"].last_inbound_at.utcoffset() == timedelta(hours=5, minutes=30)
    assert got["c-full"].participants == ("16505550001", "16505550002")
    assert await inbox.messages(messages) == messages


async def test_unknown_conversations_and_messages_are_absent(backend: Store) -> None:
    """Never written: absent from the answer, not an empty record; no ids: nothing."""
    inbox = backend.inbox()
    await inbox.commit(0, [], StateWrite(conversations={"c1": record("c1")}))
    assert set(await inbox.conversations(["c1", "c2"])) == {"c1"}
    assert await inbox.conversations([]) == {}
    assert await inbox.messages([message_key("c1", "wamid.x")]) == {}
    assert await inbox.messages([]) == {}


async def test_message_records_expire_after_their_ttl(backend: Store) -> None:
    """A message record lives for the message-state TTL from its last write, then is gone;
    a rewrite renews it."""
    inbox = backend.inbox(message_ttl_s=1)
    kept, dropped = message_key("c1", "wamid.1"), message_key("c1", "wamid.2")
    both = {kept: MessageRecord(state="sent"), dropped: MessageRecord(state="sent")}
    await inbox.commit(0, [], StateWrite(messages=both))
    if isinstance(inbox, RedisInbox):
        async with raw_redis() as raw:
            assert 0 < await raw.pttl(inbox.message_key(kept)) <= 1000
    await backend.advance(0.6)
    await inbox.commit(0, [], StateWrite(messages={kept: MessageRecord(state="read")}))
    await backend.advance(0.6)
    assert await inbox.messages(both) == {kept: MessageRecord(state="read")}
    await backend.advance(0.6)
    assert await inbox.messages(both) == {}


async def test_records_never_expire_without_a_retention(backend: Store) -> None:
    """retention None (WA_CONVERSATION_RETENTION_S=0, the default): a record and its
    customer index stay however long the conversation is silent (Redis: no TTL at all)."""
    inbox = backend.inbox(retention_s=None)
    await inbox.commit(0, [], StateWrite(conversations={"c1": record("c1", wa_id="1")}))
    if isinstance(inbox, RedisInbox):
        async with raw_redis() as raw:
            assert await raw.ttl(inbox.conversation_key("c1")) == -1
            (index,) = inbox.customer_keys("acme", wa_id="1")
            assert await raw.ttl(index) == -1
    else:
        await backend.advance(10 * 365 * 86400)
    assert set(await inbox.conversations(["c1"])) == {"c1"}
    assert [r.conversation_id for r in await inbox.find_conversations("acme", wa_id="1")] == ["c1"]


async def test_records_expire_after_the_retention_of_silence(backend: Store) -> None:
    """With a retention, each write renews the record's life; a conversation silent for
    longer is gone (it will start over: a new record, sequence from 1), and so is it from
    the customer look-up."""
    inbox = backend.inbox(retention_s=1)
    both = {"c1": record("c1", wa_id="1"), "c2": record("c2", wa_id="1")}
    await inbox.commit(0, [], StateWrite(conversations=both))
    if isinstance(inbox, RedisInbox):
        async with raw_redis() as raw:
            assert 0 < await raw.pttl(inbox.conversation_key("c1")) <= 1000
            (index,) = inbox.customer_keys("acme", wa_id="1")
            assert 0 < await raw.pttl(index) <= 1000
    await backend.advance(0.6)
    renewed = record("c1", wa_id="1", last_sequence=2)
    await inbox.commit(0, [], StateWrite(conversations={"c1": renewed}))
    await backend.advance(0.6)
    assert await inbox.conversations(["c1", "c2"]) == {"c1": renewed}
    assert await inbox.find_conversations("acme", wa_id="1") == [renewed]
    await backend.advance(0.6)
    assert await inbox.conversations(["c1", "c2"]) == {}
    assert await inbox.find_conversations("acme", wa_id="1") == []


async def test_find_conversations_by_wa_id_user_id_or_both(backend: Store) -> None:
    """A tenant's customer conversations (one per business number) by wa_id, by user_id,
    or by either, ordered by conversation id; another tenant's and a group's record with
    the same ids are not found, nor is a record whose customer no longer has the id."""
    inbox = backend.inbox()
    records = {
        "c3": record("c3", wa_id="W", user_id="U"),
        "c1": record("c1", wa_id="W"),  # the same customer on another business number
        "c2": record("c2", user_id="U"),  # known by user_id only
        "c4": record("c4", tenant_id="other", wa_id="W", user_id="U"),
        "c5": record("c5", kind="group", wa_id="W", user_id="U"),
        "c6": record("c6", wa_id="W2"),
    }
    await inbox.commit(0, [], StateWrite(conversations=records))

    async def found(tenant: str, **ids: str) -> list[str]:
        return [r.conversation_id for r in await inbox.find_conversations(tenant, **ids)]

    assert await found("acme", wa_id="W") == ["c1", "c3"]
    assert await found("acme", user_id="U") == ["c2", "c3"]
    assert await found("acme", wa_id="W", user_id="U") == ["c1", "c2", "c3"]
    assert await found("other", wa_id="W") == ["c4"]
    assert await found("acme", wa_id="U") == []
    assert await found("acme") == []
    assert (await inbox.find_conversations("acme", wa_id="W"))[0] == records["c1"]
    moved = record("c1", wa_id="W2", last_sequence=2)  # the customer's wa_id changed
    await inbox.commit(0, [], StateWrite(conversations={"c1": moved}))
    assert await found("acme", wa_id="W") == ["c3"]
    assert await found("acme", wa_id="W2") == ["c1", "c6"]


async def test_sequences_of_earlier_versions_are_read_until_a_record_replaces_them(
    backend: Store,
) -> None:
    """An upgrade keeps the numbering: a conversation with only a last sequence stored by
    an earlier version (Redis: the issue-9 key `seq:<id>`, or the older hash `seq`;
    SQLite: the `sequences` table) reads as a legacy record; the commit that writes its
    record removes the old value, so when that record expires (retention) the
    conversation starts over instead of resuming the old numbering."""
    inbox = backend.inbox(retention_s=1)
    await _store_legacy(backend, inbox, {"c1": 41, "c2": 7, "c3": 3})
    assert await inbox.conversations(["c1", "c2", "c3", "c4"]) == {
        "c1": ConversationRecord.legacy("c1", 41),
        "c2": ConversationRecord.legacy("c2", 7),
        "c3": ConversationRecord.legacy("c3", 3),
    }
    current = record("c1", last_sequence=42)
    await inbox.commit(0, [], StateWrite(conversations={"c1": current}))
    got = await inbox.conversations(["c1", "c2"])
    assert got == {"c1": current, "c2": ConversationRecord.legacy("c2", 7)}
    await backend.advance(1.2)
    assert "c1" not in await inbox.conversations(["c1"])


async def _store_legacy(backend: Store, inbox: Inbox, sequences: dict[str, int]) -> None:
    """Last sequences as earlier versions stored them (Redis: the first conversation in an
    issue-9 key, the others in the pre-issue-9 hash)."""
    if isinstance(inbox, RedisInbox):
        first, *rest = sequences
        async with raw_redis() as raw:
            await raw.set(inbox.sequence_key(first), sequences[first], ex=3600)
            await raw.hset(f"{backend.redis_prefix}seq", mapping={c: sequences[c] for c in rest})
        return
    assert backend.sqlite_path is not None
    await inbox.ping()  # the adapter creates its schema, the old table included
    with closing(sqlite3.connect(backend.sqlite_path)) as conn, conn:
        conn.executemany(
            "INSERT INTO sequences (conversation_id, seq) VALUES (?, ?)", sequences.items()
        )


@contextlib.asynccontextmanager
async def raw_redis() -> AsyncIterator[aioredis.Redis]:
    """A raw client on the test Redis, to look behind the adapter."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()
