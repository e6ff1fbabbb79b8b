"""Numbers nobody owns in a signed delivery (issue 9, point 10): the verified tenants' items
are accepted, the changes of numbers no tenant owns are kept aside (stored in the same
append, in the partition no shard reads), counted and logged masked, and the 200 says how
many items were kept. A number of another configured tenant is still refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson
import structlog

from models import routing
from tests.support.app import ingress_client, signed, stored_count, tenant
from tests.support.bodies import envelope, messages_value, status, text_message
from tests.support.configs import local_rate_limiter

OWNED, UNOWNED, OTHERS = "111000111", "333000333", "222000222"
TENANTS = [
    tenant("a", ("secret-a",), phone_ids=(OWNED,), default=False),
    tenant("b", ("secret-b",), phone_ids=(OTHERS,), default=False, verify="vb"),
]


def change(number: str, wamids: tuple[str, ...], statuses: int = 0) -> tuple[str, Any]:
    """A `messages` change of business number `number`: messages, then statuses."""
    messages = [text_message(w, "16505550123") for w in wamids]
    sent = [status(f"wamid.S{n}-{number}", "16505550123") for n in range(statuses)]
    return "messages", messages_value(messages, sent or None, phone_number_id=number)


def mixed() -> dict[str, Any]:
    """a's number with two messages, then a number nobody owns with a message and a status."""
    return envelope(change(OWNED, ("wamid.A1", "wamid.A2")), change(UNOWNED, ("wamid.U1",), 1))


async def test_the_verified_tenants_items_are_accepted_and_the_unowned_kept_aside(
    tmp_path: Path,
) -> None:
    """200: a's two items for the shards; the unowned change (2 items) stored once, aside,
    with the delivery id, the raw change and the reason."""
    body = mixed()
    raw, headers = signed(body, "secret-a")
    async with ingress_client(tmp_path, TENANTS) as (client, inbox):
        reply = await client.post("/webhook", content=raw, headers=headers)
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert answer == {
            "status": "accepted",
            "delivery_id": answer["delivery_id"],
            "items": 2,
            "unowned": 2,
        }
        assert await stored_count(inbox) == 2
        assert await inbox.backlog(routing.UNOWNED_PARTITION) == 1
        [kept] = await inbox.read(routing.UNOWNED_PARTITION, 10, 1)
    held = kept.item
    assert held.held == "unowned_number"
    assert held.delivery_id == answer["delivery_id"]
    assert held.item == body["entry"][0]["changes"][1]
    assert (held.phone_number_id, held.position, held.tenant_id) == (UNOWNED, (0, 1, 0), "")


async def test_a_delivery_of_only_unowned_numbers_is_accepted_and_kept(tmp_path: Path) -> None:
    """Signed by a, naming only a number nobody owns: 200 with no item for the shards."""
    raw, headers = signed(envelope(change(UNOWNED, ("wamid.U9",))), "secret-a")
    async with ingress_client(tmp_path, TENANTS) as (client, inbox):
        reply = await client.post("/webhook", content=raw, headers=headers)
        assert (reply.status_code, reply.json()["items"], reply.json()["unowned"]) == (200, 0, 1)
        assert await stored_count(inbox) == 0
        assert await inbox.backlog(routing.UNOWNED_PARTITION) == 1
        again = await client.post("/webhook", content=raw, headers=headers)
        assert again.json() == {"status": "duplicate", "items": 0}
        assert await inbox.backlog(routing.UNOWNED_PARTITION) == 1


async def test_another_tenants_number_is_still_refused_beside_an_unowned_one(
    tmp_path: Path,
) -> None:
    """Unowned first, then b's number, signed by a: 403 signature_mismatch, nothing stored
    (a verified tenant may not inject items for another)."""
    body = envelope(change(UNOWNED, ("wamid.U2",)), change(OTHERS, ("wamid.B1",)))
    raw, headers = signed(body, "secret-a")
    async with ingress_client(tmp_path, TENANTS) as (client, inbox):
        reply = await client.post("/webhook", content=raw, headers=headers)
        assert reply.status_code == 403
        assert reply.json()["error"]["code"] == "signature_mismatch"
        assert await stored_count(inbox) == 0
        assert await inbox.backlog(routing.UNOWNED_PARTITION) == 0


async def test_unowned_items_are_counted_and_logged_masked(tmp_path: Path) -> None:
    """wa_webhook_items_total{kind="unowned"}; one log line per kept change, the number masked."""
    raw, headers = signed(mixed(), "secret-a")
    async with ingress_client(tmp_path, TENANTS) as (client, _):
        with structlog.testing.capture_logs() as logs:
            reply = await client.post("/webhook", content=raw, headers=headers)
        metrics = (await client.get("/metrics")).text
    assert reply.status_code == 200
    assert 'wa_webhook_items_total{kind="unowned"} 2.0' in metrics
    assert 'wa_webhook_items_total{kind="message"} 2.0' in metrics
    kept = [line for line in logs if line["event"] == "webhook_items_unowned"]
    assert len(kept) == 1
    assert kept[0]["items"] == 2
    assert kept[0]["delivery_id"] == reply.json()["delivery_id"]
    assert UNOWNED not in orjson.dumps(kept).decode()
    assert kept[0]["phone_number_id"].endswith(UNOWNED[-4:])


async def test_held_only_deliveries_count_against_the_signers_tenant_limit(
    tmp_path: Path,
) -> None:
    """Per-tenant limit 2: a's deliveries naming only a number nobody owns are counted
    against a (the signer), so the third is 429 and partition -1 holds two entries."""
    async with ingress_client(tmp_path, TENANTS, rate_limiter=local_rate_limiter()) as (
        client,
        inbox,
    ):
        receiver = client._transport.app.state.receiver  # type: ignore[attr-defined]
        receiver.config = dataclasses.replace(
            receiver.config, rate_limit_per_tenant=2, rate_limit_per_ip=1_000
        )
        codes = []
        for n in range(4):
            raw, headers = signed(envelope(change(UNOWNED, (f"wamid.L{n}",))), "secret-a")
            codes.append((await client.post("/webhook", content=raw, headers=headers)).status_code)
        assert codes == [200, 200, 429, 429]
        assert await inbox.backlog(routing.UNOWNED_PARTITION) == 2
        # a's own items share the same budget: already spent.
        raw, headers = signed(envelope(change(OWNED, ("wamid.O1",))), "secret-a")
        assert (await client.post("/webhook", content=raw, headers=headers)).status_code == 429


async def test_held_entries_record_the_tenants_that_signed_them(tmp_path: Path) -> None:
    """Signed by a: the held change carries signed_by ("a",); a's own items carry none."""
    raw, headers = signed(mixed(), "secret-a")
    async with ingress_client(tmp_path, TENANTS) as (client, inbox):
        assert (await client.post("/webhook", content=raw, headers=headers)).status_code == 200
        [kept] = await inbox.read(routing.UNOWNED_PARTITION, 10, 1)
        owned = [s.item for p in range(4) for s in await inbox.read(p, 10, 1)]
    assert kept.item.signed_by == ("a",)
    assert kept.item.tenant_id == ""
    assert [i.signed_by for i in owned] == [(), ()]


async def test_held_entries_list_every_tenant_sharing_the_secret(tmp_path: Path) -> None:
    """Two tenants holding the same secret both verified the body: sorted ids."""
    tenants = [
        tenant("z", ("shared",), phone_ids=("444000444",), default=False),
        tenant("c", ("shared",), phone_ids=("555000555",), default=False, verify="vc"),
    ]
    raw, headers = signed(envelope(change(UNOWNED, ("wamid.S1",))), "shared")
    async with ingress_client(tmp_path, tenants) as (client, inbox):
        assert (await client.post("/webhook", content=raw, headers=headers)).status_code == 200
        [kept] = await inbox.read(routing.UNOWNED_PARTITION, 10, 1)
    assert kept.item.signed_by == ("c", "z")


WITH_DEFAULT = [
    tenant("d", ("secret-d",), default=True),
    tenant("b", ("secret-b",), phone_ids=(OTHERS,), default=False, verify="vb"),
]


async def test_a_default_fallback_the_default_did_not_sign_is_held_not_refused(
    tmp_path: Path,
) -> None:
    """A default tenant is configured; b's secret signs b's number and a number nobody
    claims: b's item is accepted, the other change held with signed_by ("b",) (it used to
    fall back to the default, which did not sign, and refuse the whole delivery)."""
    body = envelope(change(OTHERS, ("wamid.B1",)), change(UNOWNED, ("wamid.NEW",)))
    raw, headers = signed(body, "secret-b")
    async with ingress_client(tmp_path, WITH_DEFAULT) as (client, inbox):
        reply = await client.post("/webhook", content=raw, headers=headers)
        assert reply.status_code == 200, reply.text
        assert (reply.json()["items"], reply.json()["unowned"]) == (1, 1)
        assert await stored_count(inbox) == 1
        [kept] = await inbox.read(routing.UNOWNED_PARTITION, 10, 1)
    assert (kept.item.phone_number_id, kept.item.signed_by) == (UNOWNED, ("b",))


async def test_the_default_still_owns_unclaimed_numbers_it_signed(tmp_path: Path) -> None:
    """The default tenant's secret and a number nobody claims: the default's item."""
    raw, headers = signed(envelope(change(UNOWNED, ("wamid.D1",))), "secret-d")
    async with ingress_client(tmp_path, WITH_DEFAULT) as (client, inbox):
        reply = await client.post("/webhook", content=raw, headers=headers)
        assert (reply.status_code, reply.json()["items"]) == (200, 1)
        assert "unowned" not in reply.json()
        assert await inbox.backlog(routing.UNOWNED_PARTITION) == 0
        [item] = [s.item for p in range(4) for s in await inbox.read(p, 10, 1)]
    assert item.tenant_id == "d"


async def test_an_explicit_claim_of_another_tenant_is_refused_with_a_default(
    tmp_path: Path,
) -> None:
    """With a default configured, b's number signed by the default's secret: still 403."""
    raw, headers = signed(envelope(change(OTHERS, ("wamid.B2",))), "secret-d")
    async with ingress_client(tmp_path, WITH_DEFAULT) as (client, inbox):
        reply = await client.post("/webhook", content=raw, headers=headers)
        assert reply.status_code == 403
        assert reply.json()["error"]["code"] == "signature_mismatch"
        assert await stored_count(inbox) == 0
        assert await inbox.backlog(routing.UNOWNED_PARTITION) == 0
