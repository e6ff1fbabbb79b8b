"""End to end on the embedded defaults (`python -m cluster run`: real Ray, SQLite inbox,
outbox, archive folder): a webhook's body is archived by the pool's archiver, shown byte
for byte by `deliveries show`, and `replay` publishes its event again with the same
event_id, a later sequence and a `replayed` header."""

from __future__ import annotations

import os
import subprocess
import sys
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
from tests.support.bodies import envelope, messages_value, text_message
from tests.support.events import is_state_event
from tests.support.service import ROOT, running_service

pytestmark = pytest.mark.ray

SECRET = "e2e-replay-secret"
ENV = {"WA_APP_SECRET": SECRET, "WA_TENANT_ID": "acme"}
T = TypeVar("T")


def eventually(probe: Callable[[], T | None], what: str, timeout_s: float = 120) -> T:
    """Poll `probe` until it returns something; fail naming `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while (found := probe()) is None:
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.25)
    return found


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`python -m cluster ...` against the running service's data (same settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    env.update(ENV, WA_DATA_DIR=str(data_dir), WA_SHARDS="2")
    return subprocess.run(
        [sys.executable, "-m", "cluster", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )


def item_events(data_dir: Path) -> list[dict[str, Any]]:
    """The outbox's item events (not conversation state events), in publish order."""
    rows = read_outbox(data_dir / "outbox.db", limit=10_000)
    return [r for r in rows if not is_state_event(r["event"])]


def test_a_replayed_delivery_republishes_its_event_with_the_same_id(tmp_path: Path) -> None:
    """Archived by the running service; shown byte for byte; replayed: the same event_id
    once more, at a later sequence, marked replayed."""
    data_dir = tmp_path / "data"
    body = orjson.dumps(
        envelope(("messages", messages_value([text_message("wamid.e2e.1", "16505550001")]))),
        option=orjson.OPT_INDENT_2,
    )
    with running_service(data_dir, ENV) as service:
        raw, headers = signed(body, SECRET)
        reply = httpx.post(f"{service.url}/webhook", content=raw, headers=headers, timeout=10)
        assert reply.status_code == 200, reply.text
        delivery_id = reply.json()["delivery_id"]
        (first,) = eventually(lambda: item_events(data_dir) or None, "the event published")
        archived = data_dir / archive_key("acme", delivery_id)
        eventually(lambda: archived.exists() or None, "the body archived by the pool")
        shown = cli(data_dir, "deliveries", "show", delivery_id)
        assert (shown.returncode, shown.stdout) == (0, body), shown.stderr
        replayed = cli(data_dir, "replay", "--delivery", delivery_id)
        assert replayed.returncode == 0, replayed.stderr
        assert orjson.loads(replayed.stdout)["items"] == 1

        def two_events() -> list[dict[str, Any]] | None:
            events = item_events(data_dir)
            return events if len(events) >= 2 else None

        events = eventually(
            two_events, "the replayed event published (needs the shard's replay support)", 60
        )
    again = events[1]
    assert again["event"]["event_id"] == first["event"]["event_id"]
    assert again["event"]["sequence"] > first["event"]["sequence"]
    assert again["headers"].get("replayed") in (True, "true", 1, "1")
