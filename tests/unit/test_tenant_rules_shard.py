"""Per-tenant processing rules through a real shard on the embedded inbox and outbox
(docs/tenants.md "Processing rules"): the forward rule (not published, unnumbered,
counted, the state still applied, the service's quarantines always published), the PII
rule (no clear name or number in the published JSON, clear in the store), the
per-tenant reorder window, and the media policy."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from actors.account_hook import AccountHook
from actors.media_fetch import MediaFetcher, MediaPolicy
from actors.shard import ConversationShard
from actors.shard_metrics import ShardStats
from adapters.outbox import OutboxPublisher, read_outbox
from adapters.sqlite_accounts import SqliteAccountStore
from adapters.sqlite_inbox import SqliteInbox
from models.inbox import InboxItem, ItemKind
from models.media import MediaFile, MediaJob
from models.routing import conversation_id, conversation_key
from models.tenant import AppSecret, Tenant, TenantDirectory, TenantRules
from models.tenant_pii import MASK
from models.tenant_stats import TenantStats
from tests.support.configs import shard_config, sqlite_inbox
from tests.support.shards import drain

T0 = 1_780_000_000.0
NUMBER = "106540352242922"
CUSTOMER = "16505550001"
NAME = "Ada Lovelace"


class Wall:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def tenant(tenant_id: str, **rules: Any) -> Tenant:
    return Tenant(
        id=tenant_id,
        app_secrets=(AppSecret(secret=SecretStr(f"secret-{tenant_id}")),),
        pii_key=SecretStr(f"pii-key-{tenant_id}"),
        rules=TenantRules.model_validate(rules),
    )


def item(
    n: int,
    tenant_id: str = "acme",
    customer: str = CUSTOMER,
    kind: ItemKind = "message",
    meta_ts: int = int(T0),
    arrived: float = T0,
) -> InboxItem:
    key = conversation_key(tenant_id, NUMBER, customer)
    raw: dict[str, Any]
    if kind == "message":
        raw = {
            "from": customer,
            "id": f"wamid.{tenant_id}.{n}",
            "timestamp": str(meta_ts),
            "type": "text",
            "text": {"body": f"message {n} from {customer}"},
        }
    else:
        raw = {
            "id": f"wamid.out{n}",
            "status": "delivered",
            "timestamp": str(meta_ts),
            "recipient_id": customer,
        }
    return InboxItem(
        tenant_id=tenant_id,
        delivery_id=f"d{tenant_id}{n}",
        received_at=datetime.fromtimestamp(arrived, UTC),
        kind=kind,
        field="messages",
        position=(0, 0, n),
        phone_number_id=NUMBER,
        display_phone_number="15550100001",
        conversation_key=key,
        conversation_id=conversation_id(key),
        partition=0,
        contact={"wa_id": customer, "profile": {"name": NAME}},
        item=raw,
    )


async def append(inbox: SqliteInbox, *items: InboxItem) -> None:
    for it in items:
        assert await inbox.append_deliveries([(f"d:{it.delivery_id}", [it])]) == [True]


def published(tmp_path: Path) -> list[dict[str, Any]]:
    return [row["event"] for row in read_outbox(tmp_path / "outbox.db", limit=10_000)]


def raw_outbox(tmp_path: Path) -> str:
    """The outbox's rows as stored (routing keys, headers and bodies): what consumers get."""
    return "\n".join(
        f"{r['routing_key']} {r['headers']} {r['event']}"
        for r in read_outbox(tmp_path / "outbox.db", limit=10_000)
    )


async def test_a_tenant_forwarding_only_messages_publishes_no_status_or_state_events(
    tmp_path: Path,
) -> None:
    """acme forwards only `message`: its statuses and its conversation.* events are not
    published, its messages are numbered 1, 2 (contiguous), the kept-back events are
    counted per tenant (the shard's metric, the tenant's stats), the conversation record
    still applied them; beta (no rule) publishes everything."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    accounts = SqliteAccountStore(tmp_path / "accounts.db")
    hook = AccountHook(accounts)
    stats = ShardStats()
    directory = TenantDirectory(
        [tenant("acme", forward={"categories": ["message"]}), tenant("beta")]
    )
    shard = ConversationShard(
        shard_config(block_ms=1, linger_ms=0, max_item_age_s=None),
        inbox,
        outbox,
        stats,
        on_commit=hook.committed,
        tenants=directory,
    )
    try:
        await append(
            inbox,
            item(1),
            item(2, kind="status"),
            item(3),
            item(4, kind="status"),
            item(1, tenant_id="beta"),
            item(2, tenant_id="beta", kind="status"),
        )
        await drain(shard)
        events = published(tmp_path)
        acme = [
            (e["category"], e["type"], e["sequence"]) for e in events if e["tenant_id"] == "acme"
        ]
        assert acme == [("message", "text", 1), ("message", "text", 2)]
        beta = [
            (e["category"], e["type"], e["sequence"]) for e in events if e["tenant_id"] == "beta"
        ]
        assert beta == [
            ("conversation", "created", 1),
            ("message", "text", 2),
            ("status", "delivered", 3),
        ]
        assert stats.filtered == {"acme": 3}  # two statuses and conversation.created
        assert await inbox.backlog(0) == 0  # every entry committed: nothing waits
        # The record applied every item, statuses included; its sequence is the last
        # published one (the next event of the conversation is 3).
        cid = item(1).conversation_id
        record = (await inbox.conversations([cid]))[cid]
        assert record is not None
        assert (record.message_count, record.last_sequence) == (2, 2)
        await hook.flush()
        counts = TenantStats.from_counters("acme", await accounts.counts("acme"))
        assert counts.filtered == {"status": {"delivered": 2}, "conversation": {"created": 1}}
        assert counts.filtered_total == 3
        assert counts.events == {"message": {"text": 2}}
    finally:
        await inbox.close()
        await outbox.close()
        await accounts.close()


async def test_an_entry_split_against_a_newer_registry_reloads_the_directory_first(
    tmp_path: Path,
) -> None:
    """The ingress knew acme's forward rule (registry version 8) before the shard's poll
    did (version 7, acme without rules): the shard reloads before it applies any rule, so
    acme's first status is kept back, not published. Entries of versions it already has
    reload nothing."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    directory = TenantDirectory(())
    directory.replace([tenant("acme")], 7)
    reloads: list[int | None] = []

    async def reload() -> None:
        reloads.append(directory.registry_version)
        directory.replace([tenant("acme", forward={"categories": ["message"]})], 8)

    shard = ConversationShard(
        shard_config(block_ms=1, linger_ms=0, max_item_age_s=None),
        inbox,
        outbox,
        tenants=directory,
        reload_tenants=reload,
    )
    try:
        stamped = [
            it.model_copy(update={"registry_version": 8})
            for it in (item(1), item(2, kind="status"))
        ]
        await append(inbox, *stamped)
        await drain(shard)
        await append(inbox, item(3).model_copy(update={"registry_version": 8}), item(4))
        await drain(shard)
        events = [(e["category"], e["type"], e["sequence"]) for e in published(tmp_path)]
        assert events == [("message", "text", n) for n in (1, 2, 3)]
        assert reloads == [7]  # once, for version 8; not for 8 again nor for unstamped
    finally:
        await inbox.close()
        await outbox.close()


class UnhashableTenant(Tenant):
    """A tenant whose number hashing fails on one customer's number (the PII rule raising
    on an event: masking is written to be total, nothing must rely on it)."""

    def hash_phone(self, phone: str) -> str:
        if phone == POISON:
            raise ValueError("cannot hash this number")
        return super().hash_phone(phone)


POISON = "16505550666"


async def test_an_event_the_pii_rule_cannot_mask_is_dead_lettered_not_stuck(
    tmp_path: Path,
) -> None:
    """The PII rule raises on one message's event: its item is tried, then dead-lettered
    as step `pii` with its placeholder published in its place (masked; its customer left
    out, since even that cannot be hashed), and the next message of the partition goes
    out; nothing is published in clear."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    rules = TenantRules.model_validate({"pii": {"customer_name": "mask", "phone": "hash"}})
    acme = UnhashableTenant(
        id="acme",
        app_secrets=(AppSecret(secret=SecretStr("secret-acme")),),
        pii_key=SecretStr("pii-key-acme"),
        rules=rules,
    )
    shard = ConversationShard(
        shard_config(block_ms=1, linger_ms=0, max_item_age_s=None, reorder_window_ms=0),
        inbox,
        outbox,
        tenants=TenantDirectory([acme]),
    )
    try:
        await append(inbox, item(1, customer=POISON), item(2))
        await drain(shard)
        events = published(tmp_path)
        assert [(e["category"], e["sequence"], e["customer"] is None) for e in events] == [
            ("unsupported", 1, True),  # its conversation.created, a bare stand-in
            ("unsupported", 2, True),  # its placeholder, bare too
            ("conversation", 1, False),  # the next message's conversation, masked
            ("message", 2, False),
        ]
        assert events[1]["data"]["dead_letter_id"]
        assert events[0]["data"]["dead_letter_id"] is None
        assert events[3]["customer"]["wa_id"].startswith("h:")
        (letter,) = await inbox.dead_letters(10)
        assert letter.step == "pii"
        stored = raw_outbox(tmp_path)
        for clear in (POISON, CUSTOMER, NAME):
            assert clear not in stored
        assert await inbox.backlog(0) == 0
    finally:
        await inbox.close()
        await outbox.close()


async def test_listing_conversation_publishes_the_state_events_and_types_narrow_it(
    tmp_path: Path,
) -> None:
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    directory = TenantDirectory(
        [
            tenant(
                "acme",
                forward={
                    "categories": ["message", "conversation", "status"],
                    "types": ["text", "created"],
                },
            )
        ]
    )
    shard = ConversationShard(
        shard_config(block_ms=1, linger_ms=0, max_item_age_s=None), inbox, outbox, tenants=directory
    )
    try:
        await append(inbox, item(1), item(2, kind="status"))
        await drain(shard)
        kinds = [(e["category"], e["type"], e["sequence"]) for e in published(tmp_path)]
        assert kinds == [("conversation", "created", 1), ("message", "text", 2)]
    finally:
        await inbox.close()
        await outbox.close()


async def test_the_services_replay_quarantine_is_never_filtered(tmp_path: Path) -> None:
    """An item older than the maximum age is published as `replay` even when its tenant
    forwards nothing of its category: the quarantine is the service's."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    directory = TenantDirectory([tenant("acme", forward={"categories": ["message"]})])
    shard = ConversationShard(
        shard_config(block_ms=1, linger_ms=0, max_item_age_s=60), inbox, outbox, tenants=directory
    )
    try:
        await append(inbox, item(1, kind="status", meta_ts=int(T0) - 3600))
        await drain(shard)
        kinds = [(e["category"], e["type"]) for e in published(tmp_path)]
        assert kinds == [("replay", "delivered")]
    finally:
        await inbox.close()
        await outbox.close()


async def test_a_pii_masked_tenant_publishes_no_clear_name_or_number(tmp_path: Path) -> None:
    """The published JSON (bodies, routing keys, headers) carries neither the customer's
    number nor its name; the store keeps them in clear: the conversation is still found
    by the clear wa_id. A tenant that keeps PII publishes them as Meta sent them."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    masked = tenant("acme", pii={"customer_name": "mask", "phone": "hash"})
    directory = TenantDirectory([masked, tenant("beta")])
    shard = ConversationShard(
        shard_config(block_ms=1, linger_ms=0, max_item_age_s=None), inbox, outbox, tenants=directory
    )
    try:
        await append(inbox, item(1), item(2, kind="status"), item(3, tenant_id="beta"))
        await drain(shard)
        acme_rows = [
            f"{r['routing_key']} {r['headers']} {r['event']}"
            for r in read_outbox(tmp_path / "outbox.db")
            if r["event"]["tenant_id"] == "acme"
        ]
        assert len(acme_rows) == 3  # conversation.created, the message, the status
        text = "\n".join(acme_rows)
        assert CUSTOMER not in text
        assert NAME not in text
        assert masked.hash_phone(CUSTOMER) in text
        assert MASK in text
        beta = [e for e in published(tmp_path) if e["tenant_id"] == "beta"]
        assert beta[1]["customer"]["wa_id"] == CUSTOMER  # beta keeps them
        assert beta[1]["customer"]["name"] == NAME
        found = await inbox.find_conversations("acme", wa_id=CUSTOMER)
        assert [r.customer.wa_id for r in found if r.customer is not None] == [CUSTOMER]
    finally:
        await inbox.close()
        await outbox.close()


async def test_a_tenant_window_holds_its_messages_while_others_pass(tmp_path: Path) -> None:
    """The service's window is 0; acme's rule holds its messages 1 s and publishes them in
    Meta-timestamp order; beta (no rule) and gamma (window 0) pass at once."""
    wall = Wall()
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    directory = TenantDirectory(
        [
            tenant("acme", reorder_window_ms=1000),
            tenant("beta"),
            tenant("gamma", reorder_window_ms=0),
        ]
    )
    stats = ShardStats()
    shard = ConversationShard(
        shard_config(block_ms=1, linger_ms=0, max_item_age_s=None, reorder_window_ms=0.0),
        inbox,
        outbox,
        stats,
        wall_clock=wall,
        tenants=directory,
    )
    try:
        await append(
            inbox,
            item(2, meta_ts=int(T0) + 1),  # sent second, arrives first
            item(1, tenant_id="beta"),
            item(1, tenant_id="gamma"),
        )
        for _ in range(3):
            await shard.run_once()
        wall.now = T0 + 0.3
        await append(inbox, item(1, meta_ts=int(T0), arrived=T0 + 0.3))
        for _ in range(3):
            await shard.run_once()
        assert Counter(e["tenant_id"] for e in published(tmp_path)) == {"beta": 2, "gamma": 2}
        assert stats.held == 2
        wall.now = T0 + 1.0
        for _ in range(3):
            await shard.run_once()
        acme = [e["event_id"] for e in published(tmp_path) if e["tenant_id"] == "acme"]
        assert acme[1:] == ["wamid.acme.1", "wamid.acme.2"]  # after conversation.created
        assert await inbox.backlog(0) == 0
    finally:
        await inbox.close()
        await outbox.close()


async def test_a_tenant_window_of_zero_passes_when_the_services_holds(tmp_path: Path) -> None:
    wall = Wall()
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    directory = TenantDirectory([tenant("acme"), tenant("gamma", reorder_window_ms=0)])
    shard = ConversationShard(
        shard_config(block_ms=1, linger_ms=0, max_item_age_s=None, reorder_window_ms=1000.0),
        inbox,
        outbox,
        wall_clock=wall,
        tenants=directory,
    )
    try:
        await append(inbox, item(1), item(1, tenant_id="gamma"))
        for _ in range(3):
            await shard.run_once()
        assert {e["tenant_id"] for e in published(tmp_path)} == {"gamma"}
        wall.now = T0 + 1.0
        for _ in range(3):
            await shard.run_once()
        assert {e["tenant_id"] for e in published(tmp_path)} == {"acme", "gamma"}
    finally:
        await inbox.close()
        await outbox.close()


class RecordingRunner:
    """A MediaRunner (the port) that stores every file at once and keeps the jobs."""

    def __init__(self) -> None:
        self.jobs: list[MediaJob] = []

    async def run(self, job: MediaJob) -> MediaFile:
        self.jobs.append(job)
        return MediaFile(status="stored", object_key=f"{job.tenant_id}/2026/01/{job.media_id}")


def image(n: int, tenant_id: str) -> InboxItem:
    base = item(n, tenant_id=tenant_id)
    raw = {
        "from": CUSTOMER,
        "id": f"wamid.{tenant_id}.{n}",
        "timestamp": str(int(T0)),
        "type": "image",
        "image": {"id": f"m{tenant_id}{n}", "mime_type": "image/jpeg", "sha256": "c2hhMjU2"},
    }
    return base.model_copy(update={"item": raw})


async def test_each_tenants_media_policy(tmp_path: Path) -> None:
    """acme downloads nothing (`skipped/disabled`), beta only audio (its image is
    `skipped/type_disabled`), gamma's job carries its image cap and URL lifetime, delta
    (no rule) the service's; nothing of a skipped file reaches the runner."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    runner = RecordingRunner()
    directory = TenantDirectory(
        [
            tenant("acme", media={"download": False}),
            tenant("beta", media={"types": ["audio"]}),
            tenant("gamma", media={"max_bytes": {"image": 1000}, "url_ttl_s": 900}),
            tenant("delta"),
        ]
    )
    shard = ConversationShard(
        shard_config(block_ms=1, linger_ms=0, max_item_age_s=None),
        inbox,
        outbox,
        media=MediaFetcher(runner, MediaPolicy(wait_s=5.0)),
        tenants=directory,
    )
    try:
        await append(inbox, *(image(1, t) for t in ("acme", "beta", "gamma", "delta")))
        for _ in range(50):
            await shard.run_once()
            if await inbox.backlog(0) == 0:
                break
            await asyncio.sleep(0.005)
        files = {
            e["tenant_id"]: e["data"]["file"]
            for e in published(tmp_path)
            if e["category"] == "message"
        }
        assert (files["acme"]["status"], files["acme"]["reason"]) == ("skipped", "disabled")
        assert (files["beta"]["status"], files["beta"]["reason"]) == ("skipped", "type_disabled")
        assert files["gamma"]["status"] == files["delta"]["status"] == "stored"
        jobs = {j.tenant_id: (j.max_bytes, j.url_ttl_s) for j in runner.jobs}
        assert jobs == {"gamma": (1000, 900), "delta": (None, None)}
    finally:
        await inbox.close()
        await outbox.close()
