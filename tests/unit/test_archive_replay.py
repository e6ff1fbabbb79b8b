"""The raw-delivery archive from the ingress to the archive folder, and replay from it:
the ingress app in-process on the embedded inbox, the archiver's logic without Ray, the
replayer, POST /admin/replay and the CLI (`deliveries show` in a subprocess)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from actors.archiver import Archiver, ArchiverConfig
from adapters.archive_local import LocalArchive
from adapters.ports import Inbox
from ingress.app import IngressDeps, create_app
from ingress.archive_health import archive_backlog_check
from ingress.replay import Replayer
from models.archive import RawDelivery, new_delivery_id
from models.dead_letter import Attempt, DeadLetter, dead_letter_id
from models.replay import ReplayRequest
from models.routing import partition_of
from models.tenant import TenantDirectory
from tests.support.app import signed, tenant
from tests.support.bodies import PHONE_ID, envelope, messages_value, text_message
from tests.support.configs import ingress_config, sqlite_inbox
from tests.support.events import inbox_item
from tests.support.failing import FailingArchive

TOKEN = "an-admin-token-of-test"
PARTITIONS = 4
ROOT = Path(__file__).resolve().parents[2]


def body_of(*wamids: str, phone_number_id: str = PHONE_ID) -> bytes:
    """Webhook bytes a re-encoding would change (indented, a leading space, a newline)."""
    messages = [text_message(w, "16505550001") for w in wamids]
    value = messages_value(messages, phone_number_id=phone_number_id)
    return b" " + orjson.dumps(envelope(("messages", value)), option=orjson.OPT_INDENT_2) + b"\n"


class Recorder:
    """ArchiverMetrics that remember what they were told."""

    def __init__(self) -> None:
        self.confirmed = self.failed_steps = self.swept_objects = 0
        self.backlogs: list[int] = []

    def archived(self, count: int) -> None:
        self.confirmed += count

    def failed(self) -> None:
        self.failed_steps += 1

    def backlog(self, deliveries: int) -> None:
        self.backlogs.append(deliveries)

    def swept(self, count: int) -> None:
        self.swept_objects += count


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll a condition (the test's timeout bounds the wait)."""
    while not await condition():  # noqa: ASYNC110 -- a store has no event to wait on
        await asyncio.sleep(0.01)


def archiver_config(**overrides: Any) -> ArchiverConfig:
    """A fast-polling archiver config."""
    fields: dict[str, Any] = {
        "batch": 64,
        "poll_s": 0.01,
        "max_backoff_s": 0.05,
        "retention_s": 7 * 24 * 3600,
        "sweep_every_s": 3600.0,
        "stall_after_s": 60.0,
    }
    return ArchiverConfig(**{**fields, **overrides})


@dataclass
class Service:
    """The ingress app with the admin API, its inbox and archive folder."""

    client: httpx.AsyncClient
    inbox: Inbox
    archive: LocalArchive
    data_dir: Path

    async def post(self, body: bytes, path: str = "/webhook") -> httpx.Response:
        raw, headers = signed(body)
        return await self.client.post(path, content=raw, headers=headers)

    async def replay(self, request: Any, token: str = TOKEN) -> httpx.Response:
        content = request if isinstance(request, bytes) else orjson.dumps(request)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return await self.client.post("/admin/replay", content=content, headers=headers)

    async def archive_all(self) -> int:
        return await Archiver(archiver_config(), self.inbox, self.archive, Recorder()).step()


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    """The app over a SQLite inbox and a folder archive in tmp_path (the CLI's layout)."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    archive = LocalArchive(tmp_path)
    owner = tenant(phone_ids=(PHONE_ID,), default=False)
    config = ingress_config(partitions=PARTITIONS, admin_token=SecretStr(TOKEN))
    app = create_app(IngressDeps(config, TenantDirectory([owner]), inbox, archive=archive))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield Service(client, inbox, archive, tmp_path)
    await inbox.close()


async def all_entries(inbox: Inbox) -> list[Any]:
    """Every inbox item of the shard partitions, by partition."""
    return [s.item for p in range(PARTITIONS) for s in await inbox.read(p, 100, 10)]


async def test_an_accepted_body_waits_in_the_inbox_byte_for_byte(service: Service) -> None:
    """The 200 means the body is durable with its items: the same bytes, the signature
    header as sent, the tenant, the delivery id the reply gave."""
    body = body_of("wamid.a")
    reply = await service.post(body)
    assert reply.json()["status"] == "accepted"
    (pending,) = await service.inbox.archive_pending(10)
    delivery = pending.delivery
    assert delivery.body == body
    assert delivery.delivery_id == reply.json()["delivery_id"]
    assert delivery.signature == signed(body)[1]["X-Hub-Signature-256"]
    assert (delivery.tenants, delivery.signed_by) == (("acme",), ("acme",))
    assert delivery.owners == ((PHONE_ID, "102290129340398", "acme"),)


async def test_a_duplicate_is_not_archived_twice(service: Service) -> None:
    """Meta's retry of the same body is answered duplicate and adds no second body."""
    body = body_of("wamid.a")
    await service.post(body)
    assert (await service.post(body)).json()["status"] == "duplicate"
    assert (await service.inbox.archive_backlog()).deliveries == 1


async def test_a_body_of_a_number_nobody_owns_is_archived_under_its_signers(
    service: Service,
) -> None:
    """Held changes are archived too, filed under the tenants whose secret signed them."""
    reply = await service.post(body_of("wamid.x", phone_number_id="999000"))
    assert reply.json()["unowned"] == 1
    (pending,) = await service.inbox.archive_pending(10)
    assert (pending.delivery.tenants, pending.delivery.owners) == (("acme",), ())


async def test_the_archiver_deletes_a_body_only_once_the_store_confirmed_it(
    service: Service,
) -> None:
    """With the store down the step fails and the body stays; once up it is moved."""
    await service.post(body_of("wamid.a"))
    down = FailingArchive(service.archive)
    archiver = Archiver(archiver_config(), service.inbox, down, Recorder())
    with pytest.raises(Exception, match="test outage"):
        await archiver.step()
    (pending,) = await service.inbox.archive_pending(10)
    down.down = False
    assert await archiver.step() == 1
    assert await service.inbox.archive_pending(10) == []
    assert await service.archive.get(pending.delivery.delivery_id) == pending.delivery


async def test_the_archiver_loop_backs_off_while_the_store_is_down_then_drains(
    service: Service,
) -> None:
    """`run` keeps retrying (counted as failures) and empties the backlog once the store
    answers again; the webhook path never waited for it."""
    for n in range(3):
        assert (await service.post(body_of(f"wamid.{n}"))).status_code == 200
    down = FailingArchive(service.archive)
    metrics = Recorder()
    archiver = Archiver(archiver_config(), service.inbox, down, metrics)
    loop = asyncio.create_task(archiver.run())

    async def failed_thrice() -> bool:
        return metrics.failed_steps >= 3

    async def drained() -> bool:
        return (await service.inbox.archive_backlog()).deliveries == 0

    await until(failed_thrice)
    assert (await service.inbox.archive_backlog()).deliveries == 3
    down.down = False
    await until(drained)
    archiver.stop()
    await loop
    assert metrics.confirmed == 3
    assert archiver.status(running=False).failures >= 3


async def test_the_sweep_deletes_what_is_older_than_the_retention(tmp_path: Path) -> None:
    """At start-up and then once per interval; a clock well past the retention drops all."""
    archive = LocalArchive(tmp_path)
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    at = datetime(2026, 3, 1, tzinfo=UTC)
    old = RawDelivery(new_delivery_id(at), at, ("acme",), ("acme",), (), None, b"{}")
    await archive.put(old)
    now = [at.timestamp() + 3600]
    metrics = Recorder()
    config = archiver_config(retention_s=7200, sweep_every_s=600)
    archiver = Archiver(config, inbox, archive, metrics, clock=lambda: now[0])
    assert await archiver.sweep_if_due() == 0  # an hour old: kept
    now[0] += 2 * 3600
    assert await archiver.sweep_if_due() == 1
    assert await archive.get(old.delivery_id) is None
    assert metrics.swept_objects == 1
    await inbox.close()


async def test_readiness_is_degraded_once_a_body_waits_past_the_bound(service: Service) -> None:
    """No detail while fresh; a detail (still ready) once the oldest waited too long."""
    await service.post(body_of("wamid.a"))
    received = (await service.inbox.archive_backlog()).oldest_received_at
    assert received is not None
    fresh = archive_backlog_check(service.inbox, 60, clock=lambda: received.timestamp() + 1)
    late = archive_backlog_check(service.inbox, 60, clock=lambda: received.timestamp() + 61)
    assert await fresh() is None
    assert await late() == "1 raw deliveries waiting for the archive store, the oldest for 61 s"


async def test_replay_of_a_delivery_appends_its_items_again_as_replayed(service: Service) -> None:
    """Same items as the ingress stored (conversation, position, delivery id), replayed=True,
    from the archive or from the inbox before it was archived."""
    reply = await service.post(body_of("wamid.a", "wamid.b"))
    delivery_id = reply.json()["delivery_id"]
    first = await all_entries(service.inbox)
    answer = await service.replay({"delivery_id": delivery_id})  # still waiting in the inbox
    assert answer.status_code == 200, answer.text
    assert answer.json() | {"next_since": None} == {
        "deliveries": 1,
        "items": 2,
        "unowned": 0,
        "dead_letters": 0,
        "purged": 0,
        "delivery_ids": [delivery_id],
        "next_since": None,
    }
    assert await all_entries(service.inbox) == [
        i.model_copy(update={"replayed": True}) for i in first
    ]
    await service.archive_all()
    assert (await service.replay({"delivery_id": delivery_id})).json()["items"] == 2
    assert [i.replayed for i in await all_entries(service.inbox)] == [True, True]


async def test_replay_of_a_time_range_takes_the_tenants_deliveries_in_pages(
    service: Service,
) -> None:
    """[since, until) in received order; past the limit the answer says where to go on."""
    ids = []
    for n in range(3):
        ids.append((await service.post(body_of(f"wamid.{n}"))).json()["delivery_id"])
    await service.archive_all()
    since = datetime.now(UTC) - timedelta(minutes=5)
    until = datetime.now(UTC) + timedelta(minutes=5)
    request = {"tenant_id": "acme", "since": since.isoformat(), "until": until.isoformat()}
    page = (await service.replay({**request, "limit": 2})).json()
    assert page["delivery_ids"] == ids[:2]
    assert page["next_since"] is not None
    rest = (await service.replay({**request, "since": page["next_since"]})).json()
    assert (rest["delivery_ids"], rest["next_since"]) == (ids[2:], None)
    other = {**request, "tenant_id": "globex"}
    assert (await service.replay(other)).json()["deliveries"] == 0


@pytest.mark.parametrize(
    ("request_body", "status", "code"),
    [
        (b"not json", 400, "invalid_replay"),
        (b"[1]", 400, "invalid_replay"),
        ({}, 400, "invalid_replay"),
        ({"delivery_id": "x", "dead_letter_id": "y"}, 400, "invalid_replay"),
        ({"tenant_id": "acme"}, 400, "invalid_replay"),
        (
            {"tenant_id": "acme", "since": "2026-01-01T00:00:00", "until": "2026-01-02T00:00:00"},
            400,
            "invalid_replay",
        ),
        ({"delivery_id": "x", "limit": 0}, 400, "invalid_replay"),
        ({"delivery_id": "x", "purge": True}, 400, "invalid_replay"),
        ({"delivery_id": "x", "unknown": 1}, 400, "invalid_replay"),
        ({"delivery_id": "0" * 32}, 404, "replay_not_found"),
        ({"dead_letter_id": "p0-1-0"}, 404, "replay_not_found"),
        (b"{" + b" " * 17000 + b"}", 413, "body_too_large"),
    ],
)
async def test_bad_replay_requests_get_a_json_error(
    service: Service, request_body: Any, status: int, code: str
) -> None:
    """Every bad input is answered in the error shape with a message; nothing appended."""
    reply = await service.replay(request_body)
    assert (reply.status_code, reply.json()["error"]["code"]) == (status, code)
    assert reply.json()["error"]["message"]
    assert await all_entries(service.inbox) == []


async def test_replay_needs_the_admin_token(service: Service) -> None:
    """No token or a wrong one: 401, nothing appended."""
    reply = await service.post(body_of("wamid.a"))
    request = {"delivery_id": reply.json()["delivery_id"]}
    assert (await service.replay(request, token="wrong-token-of-length")).status_code == 401
    entries = await all_entries(service.inbox)
    assert [i.replayed for i in entries] == [False]


async def test_replayer_keeps_an_unowned_change_to_a_signer_that_owns_the_number_now(
    service: Service,
) -> None:
    """A number nobody owned when it arrived goes to a signer that owns it now; a tenant
    that did not sign never gets it."""
    await service.post(body_of("wamid.u", phone_number_id="999000"))
    (pending,) = await service.inbox.archive_pending(10)
    request = ReplayRequest(delivery_id=pending.delivery.delivery_id)
    signer = tenant(phone_ids=(PHONE_ID, "999000"), default=False)
    stranger = tenant("globex", secrets=("other",), phone_ids=("999000",), default=False)
    for directory, owner in (([signer], "acme"), ([tenant(default=False), stranger], None)):
        replayer = Replayer(service.archive, service.inbox, TenantDirectory(directory), 4)
        result = await replayer.replay(request)
        assert (result.items, result.unowned) == ((1, 0) if owner else (0, 1))
    (item,) = await all_entries(service.inbox)
    assert (item.tenant_id, item.replayed) == ("acme", True)


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`python -m cluster ...` on the embedded defaults under `data_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    env["WA_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "cluster", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )


async def test_deliveries_show_prints_the_body_exactly_as_received(service: Service) -> None:
    """Byte for byte on stdout, before and after the archiver moved it; exit 1 unknown."""
    body = body_of("wamid.a")
    delivery_id = (await service.post(body)).json()["delivery_id"]
    waiting = cli(service.data_dir, "deliveries", "show", delivery_id)
    assert (waiting.returncode, waiting.stdout) == (0, body), waiting.stderr
    await service.archive_all()
    assert await service.inbox.archive_pending(10) == []
    archived = cli(service.data_dir, "deliveries", "show", delivery_id)
    assert (archived.returncode, archived.stdout) == (0, body), archived.stderr
    unknown = cli(service.data_dir, "deliveries", "show", "0" * 32)
    assert (unknown.returncode, unknown.stdout) == (1, b"")


async def test_cli_replay_appends_the_delivery_again(service: Service) -> None:
    """`replay --delivery ID` prints what it appended; a request naming two things is 2."""
    delivery_id = (await service.post(body_of("wamid.a"))).json()["delivery_id"]
    done = cli(service.data_dir, "replay", "--delivery", delivery_id)
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["items"] == 1
    assert [i.replayed for i in await all_entries(service.inbox)] == [False, True]
    bad = cli(service.data_dir, "replay", "--tenant", "acme", "--since", "2026-01-01T00:00:00")
    assert bad.returncode == 2


def dead_letter(n: int) -> DeadLetter:
    """A dead letter of inbox item n, as the failed store keeps it."""
    stored = inbox_item(n)
    return DeadLetter(
        dead_letter_id=dead_letter_id(0, str(n)),
        partition=0,
        entry_id=str(n),
        tenant_id=stored.tenant_id,
        conversation_id=stored.conversation_id,
        event_id=f"wamid.{n}",
        category="message",
        type="text",
        step="broker",
        reason="message too large",
        attempts=(Attempt(at=datetime(2026, 1, 1, tzinfo=UTC), step="broker", error="x"),),
        dead_at=datetime(2026, 1, 1, 0, 0, n, tzinfo=UTC),
        item=stored,
    )


async def test_dead_letters_are_replayed_one_or_all_and_purged_on_request(
    service: Service,
) -> None:
    """One by id (kept), then all with purge: each dead letter's item is appended again
    with replayed=True; purged only once appended."""
    letters = [dead_letter(n) for n in (1, 2, 3)]
    await service.inbox.store_dead_letters(letters)
    one = await service.replay({"dead_letter_id": letters[0].dead_letter_id})
    assert one.json() | {"next_since": None} == {
        "deliveries": 0,
        "items": 1,
        "unowned": 0,
        "dead_letters": 1,
        "purged": 0,
        "delivery_ids": [],
        "next_since": None,
    }
    every = (await service.replay({"all_dead_letters": True, "purge": True})).json()
    assert (every["dead_letters"], every["purged"]) == (3, 3)
    assert await service.inbox.dead_letters(10) == []
    # Each into its partition under today's count, whatever the letter says (it was
    # stored under the count of its day: a reshard may have changed it since).
    placed = partition_of(letters[0].item.conversation_key, PARTITIONS)
    assert placed != letters[0].item.partition  # the letters name another partition
    appended = [s.item for s in await service.inbox.read(placed, 10, 10)]
    expected = [
        letters[n].item.model_copy(update={"replayed": True, "partition": placed})
        for n in (0, 0, 1, 2)
    ]
    assert appended == expected


async def test_while_the_archive_store_is_down_waiting_bodies_still_replay(
    service: Service,
) -> None:
    """A body still in the inbox is found without the store; one only in the store is a
    503 store_unavailable (retry), not a 404."""
    archived = (await service.post(body_of("wamid.a"))).json()["delivery_id"]
    await service.archive_all()
    waiting = (await service.post(body_of("wamid.b"))).json()["delivery_id"]
    down = Replayer(FailingArchive(service.archive), service.inbox, TenantDirectory([]), 4)
    # The tenant comes from the archived record (verified when accepted), not the directory.
    assert (await down.replay(ReplayRequest(delivery_id=waiting))).items == 1
    found = await down.find(waiting)
    assert found is not None
    assert found.delivery_id == waiting
    with pytest.raises(Exception, match="test outage"):
        await down.find(archived)
