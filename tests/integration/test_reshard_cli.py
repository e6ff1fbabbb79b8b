"""`python -m cluster reshard --shards N` from the shell, on the embedded inbox: refused
while the data dir's run is alive; otherwise it moves a crashed service's backlog, and real
shards of the new partitions publish every item once, each conversation in order, the
recorded batches first in their recorded order (docs/resharding.md)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.shard import ConversationShard
from adapters.outbox import OutboxPublisher, read_outbox
from adapters.sqlite_reshard import SqliteLayoutStore
from cluster import process_tree
from cluster.backends import RedisInboxConfig, SqliteInboxConfig
from cluster.layout import check_layout
from cluster.settings import SettingsError
from models.inbox_layout import InboxLayout
from tests.contract.test_inbox_layout_contract import crash_shards, expected_order, fill
from tests.support.configs import shard_config, sqlite_inbox
from tests.support.events import is_state_event
from tests.support.shards import drain


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process, on the embedded defaults under `data_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    env["WA_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "cluster", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def live_run(tmp_path: Path) -> Iterator[Path]:
    """A data dir whose run.pid names a live process as the run's supervisor (a child
    this test starts and ends by its pid)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        process_tree.record(tmp_path / "run.pid", child.pid, [])
        yield tmp_path
    finally:
        child.kill()
        child.wait(timeout=30)


async def test_reshard_is_refused_while_the_run_in_the_data_dir_is_alive(live_run: Path) -> None:
    """A live supervisor in run.pid: exit 1 naming it, nothing moved, the record as it was."""
    inbox = sqlite_inbox(live_run / "inbox.db")
    await fill(inbox, 4, conversations=8, per=2)
    await inbox.close()
    layout = SqliteLayoutStore(live_run / "inbox.db")
    await layout.set_layout(InboxLayout(shards=4))
    before = await layout.occupied()
    done = cli(live_run, "reshard", "--shards", "2")
    assert done.returncode == 1, done.stdout
    assert "the service is running" in done.stderr
    assert await layout.occupied() == before
    assert await layout.layout() == InboxLayout(shards=4)
    await layout.close()


@pytest.mark.parametrize(("before", "after"), [(4, 2), (2, 3)])
async def test_real_shards_publish_a_resharded_backlog_once_in_order(
    tmp_path: Path, before: int, after: int
) -> None:
    """A crashed service's backlog (recorded batches, pending and unread entries) under
    `before`, resharded from the shell, drained by a real shard per new partition: every
    item's event once; per conversation the recorded entries first, in recorded order,
    then the rest in append order, with sequences 1..n."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    items = await fill(inbox, before)
    shape = await crash_shards(inbox, before)
    await inbox.close()
    done = cli(tmp_path, "reshard", "--shards", str(after))
    assert done.returncode == 0, done.stderr
    assert f"to {after} partitions" in done.stdout
    assert f"start the service with WA_SHARDS={after} (it is 4 now)" in done.stdout

    restarted = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    for partition in range(after):
        await drain(ConversationShard(shard_config(partition, block_ms=10), restarted, outbox))
    await restarted.close()
    await outbox.close()
    events = [r["event"] for r in read_outbox(tmp_path / "outbox.db", limit=10_000)]
    published = [e for e in events if not is_state_event(e)]
    assert sorted(e["event_id"] for e in published) == sorted(
        f"wamid.{n}" for n in range(len(items))
    )
    streams: dict[str, list[int]] = {}
    sequences: dict[str, list[int]] = {}
    for event in events:
        sequences.setdefault(event["conversation_id"], []).append(event["sequence"])
        if not is_state_event(event):
            streams.setdefault(event["conversation_id"], []).append(int(event["event_id"][6:]))
    assert streams == expected_order(items, shape, before)
    for numbers in sequences.values():
        assert numbers == list(range(1, len(numbers) + 1))


def _redis_config(url: str, *, enforced: bool) -> RedisInboxConfig:
    return RedisInboxConfig(
        url=url,
        prefix="watest:layout-unreachable:",
        dedup_window_s=3600,
        conversation_retention_s=None,
        message_state_ttl_s=3600,
        enforce_durability=enforced,
        waitaof_local=0,
        waitaof_replicas=0,
        waitaof_timeout_ms=1000,
    )


async def test_the_start_check_raises_a_configuration_error_naming_the_backlog(
    tmp_path: Path,
) -> None:
    """The runner's check (what makes `run` exit 2) on an inbox written under 4: WA_SHARDS=2
    raises SettingsError with the refusal; WA_SHARDS=4 passes."""
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    await fill(inbox, 4, conversations=8, per=2)
    await inbox.close()
    config = SqliteInboxConfig(
        path=tmp_path / "inbox.db",
        dedup_window_s=3600,
        conversation_retention_s=None,
        message_state_ttl_s=3600,
    )
    await asyncio.to_thread(check_layout, config, 4)
    with pytest.raises(SettingsError, match=r"WA_SHARDS=4 .* and WA_SHARDS is 2"):
        await asyncio.to_thread(check_layout, config, 2)


def test_an_unreachable_store_refuses_the_start_only_where_durability_is_enforced(
    closed_port: int,
) -> None:
    """Redis refused: enforced (production) -> SettingsError; otherwise logged, start goes on."""
    url = f"redis://127.0.0.1:{closed_port}/0"
    check_layout(_redis_config(url, enforced=False), 2)
    with pytest.raises(SettingsError, match="layout could not be checked"):
        check_layout(_redis_config(url, enforced=True), 2)
