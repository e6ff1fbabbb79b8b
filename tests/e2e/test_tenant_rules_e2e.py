"""Per-tenant processing rules on the running service (issue 13's "done when"), on the
embedded defaults (`python -m cluster run`: real Ray, SQLite inbox and registry, outbox,
archive folder). Two tenants added through the admin API, no restart:

- `quiet` forwards only messages: its status is not published (nor any conversation.*
  event), its message is numbered 1, the status is archived (its delivery's body) and
  counted in `GET /admin/tenants/quiet/stats`; its routing rule (exchange, key prefix)
  is what the outbox records;
- `privy` masks names and hashes numbers: its published rows (routing key, headers, body)
  carry neither the customer's name nor number, and the admin look-up by the clear
  wa_id answers the hash.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest

from adapters.outbox import read_outbox
from models.archive import archive_key
from tests.support.app import signed
from tests.support.bodies import envelope, messages_value, status, text_message
from tests.support.service import running_service

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

TOKEN = "e2e-rules-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENV = {
    "WA_APP_SECRET": "e2e-rules-file-secret",
    "WA_TENANT_ID": "filed",
    "WA_ADMIN_TOKEN": TOKEN,
    "WA_REORDER_WINDOW_MS": "0",
}
QUIET = ("quiet", "e2e-rules-quiet-secret", "106540352249101")
PRIVY = ("privy", "e2e-rules-privy-secret", "106540352249102")
CUSTOMER, NAME = "16505557777", "Grace Hopper"
T = TypeVar("T")


def eventually(probe: Callable[[], T | None], what: str, timeout_s: float = 120) -> T:
    deadline = time.monotonic() + timeout_s
    while (found := probe()) is None:
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.25)
    return found


def rows_of(data_dir: Path, tenant_id: str) -> list[dict[str, Any]]:
    rows = read_outbox(data_dir / "outbox.db", limit=10_000)
    return [r for r in rows if r["event"]["tenant_id"] == tenant_id]


def post_until_accepted(url: str, body: dict[str, Any], secret: str) -> str:
    """POST the signed body until the reloaded tenant accepts it (within seconds of
    its creation); its delivery id."""
    raw, headers = signed(orjson.dumps(body), secret)

    def accepted() -> str | None:
        reply = httpx.post(f"{url}/webhook", content=raw, headers=headers, timeout=10)
        return str(reply.json()["delivery_id"]) if reply.status_code == 200 else None

    return eventually(accepted, "the new tenant's webhook accepted", timeout_s=30)


def test_forward_and_pii_rules_of_tenants_added_through_the_api(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with (
        running_service(data_dir, ENV) as service,
        httpx.Client(base_url=service.url, headers=AUTH, timeout=30) as admin,
    ):
        for (tenant_id, secret, phone), rules in (
            (
                QUIET,
                {
                    "forward": {"categories": ["message"]},
                    "routing": {"exchange": "quiet.events", "routing_key_prefix": "eu"},
                },
            ),
            (PRIVY, {"pii": {"customer_name": "mask", "phone": "hash"}}),
        ):
            created = admin.post(
                "/admin/tenants",
                json={
                    "id": tenant_id,
                    "app_secrets": [secret],
                    "phone_number_ids": [phone],
                    "rules": rules,
                },
            )
            assert created.status_code == 201, created.text

        quiet_body = envelope(
            (
                "messages",
                messages_value(
                    [text_message("wamid.quiet.1", "16505551111")],
                    statuses=[status("wamid.quiet.out", "16505551111")],
                    phone_number_id=QUIET[2],
                ),
            )
        )
        quiet_delivery = post_until_accepted(service.url, quiet_body, QUIET[1])
        privy_body = envelope(
            (
                "messages",
                messages_value(
                    [text_message("wamid.privy.1", CUSTOMER, f"I am {NAME}")],
                    phone_number_id=PRIVY[2],
                    contacts=[{"profile": {"name": NAME}, "wa_id": CUSTOMER}],
                ),
            )
        )
        post_until_accepted(service.url, privy_body, PRIVY[1])

        # quiet: the message published alone, numbered 1; the status kept back.
        quiet = eventually(lambda: rows_of(data_dir, "quiet") or None, "quiet's message")
        stats = eventually(
            lambda: (
                s if (s := admin.get("/admin/tenants/quiet/stats").json()).get("filtered") else None
            ),
            "quiet's kept-back events counted",
        )
        quiet = rows_of(data_dir, "quiet")
        assert [(r["routing_key"], r.get("exchange"), r["event"]["sequence"]) for r in quiet] == [
            ("eu.quiet.message.text", "quiet.events", 1)
        ]
        assert stats["filtered"] == {"status": {"delivered": 1}, "conversation": {"created": 1}}
        archived = data_dir / archive_key("quiet", quiet_delivery)
        eventually(lambda: archived.exists() or None, "quiet's delivery archived")

        # privy: nothing in clear in what consumers get.
        privy = eventually(
            lambda: rows if len(rows := rows_of(data_dir, "privy")) >= 2 else None,
            "privy's events",
        )
        published = "\n".join(
            f"{r['routing_key']} {orjson.dumps(r['headers']).decode()} "
            f"{orjson.dumps(r['event']).decode()}"
            for r in privy
        )
        assert CUSTOMER not in published
        assert NAME not in published
        message = next(r["event"] for r in privy if r["event"]["category"] == "message")
        assert message["customer"]["name"] == "[masked]"
        assert message["customer"]["wa_id"].startswith("h:")
        found = admin.get("/admin/conversations", params={"tenant_id": "privy", "wa_id": CUSTOMER})
        assert found.status_code == 200, found.text
        assert CUSTOMER not in found.text
        assert found.json()["conversations"][0]["customer"]["wa_id"] == message["customer"]["wa_id"]
