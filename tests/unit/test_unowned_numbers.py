"""Numbers nobody owns in a signed delivery (issue 9, point 10): the verified tenants' items
are accepted, the changes of numbers no tenant owns are kept aside (stored in the same
append, in the partition no shard reads), counted and logged masked, and the 200 says how
many items were kept. A number of another configured tenant is still refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import structlog

from models import routing
from tests.support.app import ingress_client, signed, stored_count, tenant
from tests.support.bodies import envelope, messages_value, status, text_message

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
