"""The Meta traffic generator: signing, batching, duplicates, reordering, coverage."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from ingress.signature import matching_secrets, parse_signature
from loadtest.payloads import MESSAGE_WEIGHTS, STATUS_FLOW
from loadtest.tenants import generate_tenants, load_tenants_file, write_tenants_file
from loadtest.traffic import TrafficGenerator
from models.envelope import DeliveryContext, split_delivery

TENANTS = generate_tenants(3, seed=5)


def _gen(**kwargs: object) -> TrafficGenerator:
    return TrafficGenerator(TENANTS, 60, seed=9, clock=lambda: 1_700_000_000.0, **kwargs)  # type: ignore[arg-type]


def test_every_delivery_is_signed_with_its_tenants_secret_only() -> None:
    """The X-Hub-Signature-256 verifies with the sending tenant's secret and no other."""
    gen = _gen(batch=3)
    secrets = {t.id: t.secret_bytes for t in TENANTS}
    for _ in range(50):
        delivery = gen.next_delivery()
        digest = parse_signature(delivery.signature)
        assert matching_secrets(digest, delivery.body, secrets.values()) == {
            secrets[delivery.tenant_id]
        }


def _owner(tenant_id: str) -> Callable[[str | None, str | None], str | None]:
    return lambda _phone, _waba: tenant_id


def test_batches_span_entries_and_changes_and_split_into_every_item() -> None:
    """A batch of B items becomes B inbox items; numbers of two WABAs make several entries."""
    gen = _gen(batch=6)
    multi_entry = 0
    for _ in range(40):
        delivery = gen.next_delivery()
        body = orjson.loads(delivery.body)
        multi_entry += len(body["entry"]) > 1
        tenant = next(t for t in TENANTS if t.id == delivery.tenant_id)
        assert {e["id"] for e in body["entry"]} <= set(tenant.waba_ids)
        ctx = DeliveryContext("d", datetime.now(UTC), 4)
        items = split_delivery(body, ctx, _owner(delivery.tenant_id))
        assert len(items) == len(delivery.keys) == 6
    assert multi_entry > 0


def test_messages_carry_a_contact_for_their_sender() -> None:
    """Every message's sender has a contacts[] entry in the same change, as Meta sends."""
    gen = _gen(batch=4)
    for _ in range(30):
        for entry in orjson.loads(gen.next_delivery().body)["entry"]:
            for change in entry["changes"]:
                value = change["value"]
                senders = {m["from"] for m in value.get("messages", [])}
                assert senders <= {c["wa_id"] for c in value.get("contacts", [])}


def test_dup_rate_produces_both_kinds_of_duplicate() -> None:
    """Re-sent bodies are byte-identical with the same signature; reused items repeat a key."""
    gen = _gen(batch=2, dup_rate=0.5)
    seen_bodies: dict[bytes, str] = {}
    seen_keys: set[str] = set()
    resent = reused = 0
    for _ in range(300):
        delivery = gen.next_delivery()
        if delivery.kind == "resend":
            resent += 1
            assert seen_bodies[delivery.body] == delivery.signature
        elif delivery.kind == "reused_item":
            reused += 1
            assert set(delivery.keys) & seen_keys
        else:
            assert not set(delivery.keys) & seen_keys
        seen_bodies[delivery.body] = delivery.signature
        seen_keys.update(delivery.keys)
    assert resent == gen.stats.resent_bodies > 30
    assert reused == gen.stats.reused_items > 30


def test_no_duplicates_without_dup_rate() -> None:
    """dup_rate=0: every key is sent exactly once."""
    gen = _gen(batch=3)
    keys = [k for _ in range(200) for k in gen.next_delivery().keys]
    assert len(keys) == len(set(keys))


def _status_orders(gen: TrafficGenerator, deliveries: int) -> list[list[str]]:
    per_wamid: dict[str, list[str]] = {}
    for _ in range(deliveries):
        for entry in orjson.loads(gen.next_delivery().body)["entry"]:
            for change in entry["changes"]:
                for status in change["value"].get("statuses", []):
                    per_wamid.setdefault(status["id"], []).append(status["status"])
    return list(per_wamid.values())


def _inverted(order: list[str]) -> bool:
    rank = {s: i for i, s in enumerate((*STATUS_FLOW, "failed"))}
    rank["failed"] = 1
    return any(rank[a] > rank[b] for a, b in itertools.pairwise(order))


def test_reorder_rate_swaps_statuses_and_zero_keeps_meta_order() -> None:
    """At reorder_rate the later state of a message sometimes arrives first; at 0 never."""
    in_order = _status_orders(_gen(batch=3), 300)
    assert in_order
    assert not any(_inverted(o) for o in in_order)
    gen = _gen(batch=3, reorder_rate=0.5)
    shuffled = _status_orders(gen, 300)
    inverted = sum(_inverted(o) for o in shuffled)
    assert gen.stats.reordered_statuses > 20
    assert inverted > 10


def test_every_message_type_and_status_is_generated() -> None:
    """Over enough traffic every message type and every status appears."""
    gen = _gen(batch=5, field_rate=0.05)
    for _ in range(600):
        gen.next_delivery()
    types = gen.stats.by_type
    assert {f"message:{t}" for t in MESSAGE_WEIGHTS} <= types.keys()
    assert {"status:sent", "status:delivered", "status:read", "status:failed"} <= types.keys()
    assert any(k.startswith("field:") for k in types)


def test_tenants_file_round_trip(tmp_path: object) -> None:
    """A written tenants file loads back as the same secrets, numbers and tokens."""
    from pathlib import Path

    path = Path(str(tmp_path)) / "tenants.json"
    write_tenants_file(TENANTS, path)
    loaded = {t.id: t for t in load_tenants_file(path)}
    for tenant in TENANTS:
        again = loaded[tenant.id]
        assert again.app_secret == tenant.app_secret
        assert again.access_token == tenant.access_token
        assert {n.phone_number_id for n in again.numbers} == {
            n.phone_number_id for n in tenant.numbers
        }
    # The service reads each tenant's publish budget: the HIGH tier the harness runs at.
    from loadtest.tenants import HARNESS_PUBLISH_RATE
    from models.tenant import TenantsFile

    parsed = TenantsFile.model_validate_json(path.read_bytes())
    assert {t.rules.publish_rate_per_s for t in parsed.tenants} == {HARNESS_PUBLISH_RATE}
