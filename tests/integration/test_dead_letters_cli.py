"""`python -m cluster dead-letters list|show|purge` on the embedded inbox (issue 11): a
poison item dead-lettered by a real shard run is listed, shown whole with its raw item,
and purged, from the shell, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from actors.shard import ConversationShard
from adapters.outbox import OutboxPublisher
from tests.support.configs import shard_config, sqlite_inbox
from tests.support.events import inbox_item, store
from tests.support.shards import POISON, drain, flow_reply


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process, on the embedded defaults under `data_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    env["WA_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "cluster", "dead-letters", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def test_a_dead_letter_is_listed_shown_and_purged_from_the_shell(tmp_path: Path) -> None:
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    outbox = OutboxPublisher(tmp_path / "outbox.db")
    poisoned = flow_reply(2, POISON["too_deep_to_decode"])
    await store(inbox, [inbox_item(1), poisoned, inbox_item(3)])
    await drain(ConversationShard(shard_config(block_ms=10), inbox, outbox))
    await inbox.close()
    await outbox.close()

    listed = cli(tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()
    summary = orjson.loads(line)
    assert (summary["event_id"], summary["step"], summary["attempts"]) == (
        "wamid.2",
        "normalize",
        3,
    )
    assert "item" not in summary, "list leaves the raw item out"

    shown = cli(tmp_path, "show", summary["dead_letter_id"])
    assert shown.returncode == 0, shown.stderr
    assert orjson.loads(shown.stdout)["item"] == poisoned.model_dump(mode="json")
    missing = cli(tmp_path, "show", "p0-nope")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert "no dead letter p0-nope" in missing.stderr

    assert cli(tmp_path, "purge").returncode == 2, "neither ids nor --all: refused"
    purged = cli(tmp_path, "purge", summary["dead_letter_id"])
    assert orjson.loads(purged.stdout) == {"purged": 1}
    assert cli(tmp_path, "list").stdout == ""
