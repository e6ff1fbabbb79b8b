"""Webhook-contract test helpers: the project's fixtures and split + normalize over a body."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.normalize import normalize
from models.envelope import DeliveryContext, split_delivery
from models.event import NormalizedEvent
from models.inbox import InboxItem

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = TESTS / "fixtures" / "webhooks"
GOLDEN = TESTS / "golden"
TENANT = "acme"
RECEIVED_AT = datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)


def fixture_files() -> list[Path]:
    """Every webhook fixture, sorted, so test ids are stable."""
    return sorted(FIXTURES.glob("*.json"))


def load(path: Path) -> Any:
    """A fixture's JSON body."""
    return json.loads(path.read_text(encoding="utf-8"))


def run_pipeline(body: Any, partitions: int = 8) -> tuple[list[InboxItem], list[NormalizedEvent]]:
    """Split a body into items and normalize each, numbering per conversation like a shard."""
    ctx = DeliveryContext("delivery-0001", RECEIVED_AT, partitions)
    items = split_delivery(body, ctx, lambda _pnid, _waba: TENANT)
    sequences: dict[str, int] = {}
    events = []
    for item in items:
        sequences[item.conversation_id] = sequences.get(item.conversation_id, 0) + 1
        events.append(normalize(item).stamp(sequences[item.conversation_id]))
    return items, events
