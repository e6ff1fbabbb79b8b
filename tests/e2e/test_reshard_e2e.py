"""End to end (issue 15, resharding): a backlog accepted under one WA_SHARDS while the
broker is unreachable, the start under another count refused with the way out, `python -m
cluster reshard`, then the service under the new count publishes every item once, in each
conversation's order (real Ray; Redis or the SQLite inbox; the embedded outbox)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from adapters.outbox import read_outbox
from tests.conftest import REDIS_URL
from tests.support.app import signed
from tests.support.bodies import envelope, messages_value, text_message
from tests.support.events import is_state_event
from tests.support.service import ROOT, Service, start_service

pytestmark = pytest.mark.ray

SECRET = "e2e-reshard-secret"
CUSTOMERS = 40
ROUNDS = 5  # messages per customer: CUSTOMERS * ROUNDS = 200 items
PER_POST = 5  # customers per POST


def sender(customer: int) -> str:
    return f"1650555{customer:04d}"


def wamid(customer: int, round_: int) -> str:
    return f"wamid.reshard.c{customer}.r{round_}"


def post_backlog(url: str) -> None:
    """Every customer's messages, round by round, PER_POST customers a POST; each answered
    200 (the broker being unreachable changes nothing for the ingress)."""
    base = int(time.time()) - 60
    with httpx.Client(base_url=url, timeout=10) as client:
        for round_ in range(ROUNDS):
            for first in range(0, CUSTOMERS, PER_POST):
                messages = [
                    text_message(wamid(c, round_), sender(c), f"r{round_}", ts=base + round_)
                    for c in range(first, first + PER_POST)
                ]
                raw, headers = signed(envelope(("messages", messages_value(messages))), SECRET)
                response = client.post("/webhook", content=raw, headers=headers)
                assert response.status_code == 200, response.text


def item_events(data_dir: Path) -> list[dict[str, Any]]:
    """The outbox's item events (state events left out), in publish order."""
    rows = read_outbox(data_dir / "outbox.db", limit=100_000)
    return [r["event"] for r in rows if not is_state_event(r["event"])]


def cli_env(env: dict[str, str], data_dir: Path) -> dict[str, str]:
    """The environment `start_service` gives the service, for a CLI command beside it."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("WA_")},
        "WA_DATA_DIR": str(data_dir),
        **env,
    }


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis), "sqlite"])
def store_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The inbox's env: Redis under a fresh prefix (deleted afterwards), or the SQLite
    inbox in the data dir (the embedded default)."""
    if request.param == "sqlite":
        yield {}
        return
    prefix = f"watest:{uuid.uuid4().hex[:12]}:"
    yield {"WA_REDIS_URL": REDIS_URL, "WA_REDIS_PREFIX": prefix}
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def stopped(service: Service) -> int:
    """SIGTERM and wait (a drain with the broker unreachable may end by the deadline)."""
    try:
        return service.terminate()
    finally:
        service.cleanup()


@pytest.mark.parametrize(("before", "after"), [(2, 4), (4, 2)])
def test_a_backlog_under_one_count_is_resharded_and_published_once_in_order(
    tmp_path: Path, store_env: dict[str, str], closed_port: int, before: int, after: int
) -> None:
    """200 items of 40 conversations accepted under WA_SHARDS=before with RabbitMQ
    unreachable; the start under `after` exits 2 naming the stored count and the reshard
    command; `reshard --shards after` moves them; under `after` with the outbox every item
    is published exactly once, each conversation's in the order sent, with increasing
    sequences."""
    data_dir = tmp_path / "svc"
    env = {"WA_APP_SECRET": SECRET, "WA_TENANT_ID": "acme", **store_env}
    broker_down = {
        **env,
        "WA_SHARDS": str(before),
        "WA_RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{closed_port}/",
        # The drain cannot publish the batches in hand: end it soon (they stay pending).
        "WA_SHUTDOWN_TIMEOUT_S": "10",
    }
    first = start_service(data_dir, broker_down)
    try:
        first.wait_ready()
        post_backlog(first.url)
    finally:
        stopped(first)
    assert item_events(data_dir) == []

    refused = start_service(data_dir, {**env, "WA_SHARDS": str(after)})
    try:
        assert refused.process.wait(timeout=120) == 2, refused.tail()
    finally:
        refused.cleanup()
    said = refused.log.read_text(errors="replace")[refused.log_offset :]
    assert f"WA_SHARDS={before} (the inbox's stored layout)" in said, said
    assert f"python -m cluster reshard --shards {after}" in said, said

    done = subprocess.run(
        [sys.executable, "-m", "cluster", "reshard", "--shards", str(after)],
        cwd=ROOT,
        env=cli_env({**env, "WA_SHARDS": str(after)}, data_dir),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert f"to {after} partitions" in done.stdout.decode(), done.stdout.decode()

    second = start_service(data_dir, {**env, "WA_SHARDS": str(after)})
    try:
        second.wait_ready()
        deadline = time.monotonic() + 180
        while len(item_events(data_dir)) < CUSTOMERS * ROUNDS and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        stopped(second)
    events = item_events(data_dir)
    ids = [e["event_id"] for e in events]
    assert sorted(ids) == sorted(wamid(c, r) for c in range(CUSTOMERS) for r in range(ROUNDS))
    by_conversation: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_conversation.setdefault(event["conversation_id"], []).append(event)
    assert len(by_conversation) == CUSTOMERS
    for stream in by_conversation.values():
        rounds = [int(e["event_id"].rsplit(".r", 1)[1]) for e in stream]
        assert rounds == list(range(ROUNDS)), [e["event_id"] for e in stream]
        sequences = [e["sequence"] for e in stream]
        assert sequences == sorted(set(sequences)), sequences
