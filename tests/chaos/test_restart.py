"""Crash and restart of the whole service on its embedded defaults (SQLite inbox + outbox)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from adapters.outbox import read_outbox
from cluster import process_tree
from cluster.settings import DEV_APP_SECRET
from tests.support.app import signed
from tests.support.bodies import envelope, messages_value, text_message
from tests.support.service import free_port, start_service

pytestmark = [pytest.mark.ray, pytest.mark.chaos]


def post(url: str, wamid: str) -> int:
    raw, headers = signed(
        envelope(("messages", messages_value([text_message(wamid, "16505550009")]))), DEV_APP_SECRET
    )
    return httpx.post(f"{url}/webhook", content=raw, headers=headers, timeout=10).status_code


def published_ids(data_dir: Path) -> list[tuple[str, int]]:
    """(event_id, sequence) of the items' events, in publish order (state events left out:
    `created_count` counts them)."""
    return [
        (r["event"]["event_id"], r["event"]["sequence"])
        for r in read_outbox(data_dir / "outbox.db")
        if r["event"]["category"] != "conversation"
    ]


def created_count(data_dir: Path) -> int:
    """How many distinct `conversation.created` events were published (a redelivery after
    a crash between publish and commit repeats one: same event_id and sequence)."""
    return len(
        {
            (r["event"]["event_id"], r["event"]["sequence"])
            for r in read_outbox(data_dir / "outbox.db")
            if (r["event"]["category"], r["event"]["type"]) == ("conversation", "created")
        }
    )


def test_a_second_run_after_kill_9_serves_and_loses_nothing(tmp_path: Path) -> None:
    """make run, accept, kill -9 the runner, make run again on the same port and data:
    it starts without manual clean-up and every acknowledged message is published once
    per conversation sequence."""
    data_dir = tmp_path / "svc"
    port = free_port()
    first = start_service(data_dir, {}, port=port)
    try:
        first.wait_ready()
        assert post(first.url, "wamid.before") == 200
        # The runner records its processes every 0.5 s; a kill within that time of an
        # HAProxy (re)start could leave that HAProxy behind (ARCHITECTURE.md, limits).
        time.sleep(1.0)
        first.kill_hard()
    finally:
        if first.process.poll() is None:
            first.cleanup()
    second = start_service(data_dir, {}, port=port)
    try:
        second.wait_ready()
        assert post(second.url, "wamid.after") == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(published_ids(data_dir)) < 2:
            time.sleep(0.2)
        ids = published_ids(data_dir)
        assert {event_id for event_id, _ in ids} == {"wamid.before", "wamid.after"}, second.tail()
        assert [seq for event_id, seq in ids if event_id == "wamid.after"] == [
            max(s for _, s in ids)
        ]
        assert created_count(data_dir) == 1  # one customer: created once across both runs
        assert second.terminate() == 0
    finally:
        second.cleanup()


def _shard_actor_pids(data_dir: Path) -> list[int]:
    """Pids of the shard actors this service started (from its recorded process tree)."""
    pids = []
    for pid, _ in process_tree.load(data_dir / "run.pid"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"ray::ShardActor"):
            pids.append(pid)
    return pids


def test_a_shard_actor_killed_mid_stream_is_restarted_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """kill -9 every shard actor while messages keep arriving: Ray restarts them, the pool's
    health check restarts their loops, and every acknowledged message is published, in
    order per conversation."""
    data_dir = tmp_path / "svc"
    service = start_service(data_dir, {})
    try:
        service.wait_ready()
        for n in range(20):
            assert post(service.url, f"wamid.pre{n}") == 200
        victims = _shard_actor_pids(data_dir)
        assert victims, service.tail()
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        for n in range(20):
            assert post(service.url, f"wamid.post{n}") == 200
        expected = {f"wamid.pre{n}" for n in range(20)} | {f"wamid.post{n}" for n in range(20)}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            ids = published_ids(data_dir)
            if expected <= {event_id for event_id, _ in ids}:
                break
            time.sleep(0.5)
        ids = published_ids(data_dir)
        assert expected <= {event_id for event_id, _ in ids}, service.tail()
        sequences = [seq for _, seq in ids]  # one conversation: the same customer throughout
        assert sequences == sorted(sequences)
        assert service.terminate() == 0
    finally:
        service.cleanup()
