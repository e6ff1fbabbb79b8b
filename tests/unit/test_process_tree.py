"""cluster/process_tree.py on real processes this test starts: the runner's record of what a
run started (pid + kernel start time), how a later run ends exactly those, and the bench's
children and memory readings."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import process_tree
from cluster.process_tree import Proc

SLEEPER = "import time; time.sleep(60)"
# Starts a sleeping child of its own, prints the child's pid, then sleeps.
PARENT = (
    "import subprocess, sys, time;"
    f"p = subprocess.Popen([sys.executable, '-c', {SLEEPER!r}]);"
    "print(p.pid, flush=True); time.sleep(60)"
)
IGNORES_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    "print('ready', flush=True); time.sleep(60)"
)


class Spawner:
    """Starts `python -c CODE` children; ends and reaps them, and pids adopted, after."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []
        self.adopted: list[int] = []

    def __call__(self, code: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for pid in self.adopted:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.started:
            proc.kill()
            proc.wait(timeout=10)
            assert proc.stdout is not None
            proc.stdout.close()


@pytest.fixture
def spawn() -> Iterator[Spawner]:
    spawner = Spawner()
    yield spawner
    spawner.close()


def _kernel_start(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat: start time in clock ticks since boot."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    return int(raw[raw.rindex(")") + 2 :].split()[19])


def _grandchild(spawn: Spawner) -> tuple[subprocess.Popen[str], int]:
    parent = spawn(PARENT)
    assert parent.stdout is not None
    grandchild = int(parent.stdout.readline())
    spawn.adopted.append(grandchild)
    return parent, grandchild


def test_descendants_are_every_level_below_with_the_kernels_start_time(spawn: Spawner) -> None:
    """Children and grandchildren, each with /proc's start time (what pid files hold)."""
    parent, grandchild = _grandchild(spawn)
    found = dict(process_tree.descendants(os.getpid()))
    assert found[parent.pid] == _kernel_start(parent.pid)
    assert found[grandchild] == _kernel_start(grandchild)
    assert dict(process_tree.descendants(parent.pid)) == {grandchild: _kernel_start(grandchild)}
    assert os.getpid() not in found


def test_alive_means_the_same_process_not_just_the_same_pid(spawn: Spawner) -> None:
    """A recorded pid with another start time (a reused pid) is not alive; nor is one reaped."""
    proc = spawn(SLEEPER)
    start = _kernel_start(proc.pid)
    assert process_tree.alive((proc.pid, start))
    assert not process_tree.alive((proc.pid, start + 1))
    proc.kill()
    proc.wait(timeout=10)
    assert not process_tree.alive((proc.pid, start))


def test_a_zombie_is_neither_alive_nor_a_descendant(spawn: Spawner) -> None:
    """An exited child not reaped yet cannot be ended: it is not recorded or waited for."""
    proc = spawn("pass")
    deadline = time.monotonic() + 10
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not process_tree.alive((proc.pid, _kernel_start(proc.pid)))
    assert proc.pid not in dict(process_tree.descendants(os.getpid()))
    proc.wait(timeout=10)


def test_record_writes_the_root_then_its_tree_and_load_reads_it_back(
    spawn: Spawner, tmp_path: Path
) -> None:
    """The pid file starts with the root; recorded processes still alive are kept."""
    parent, grandchild = _grandchild(spawn)
    pidfile = tmp_path / "run.pid"
    gone: Proc = (parent.pid, _kernel_start(parent.pid) - 1)  # an earlier, dead process
    procs = process_tree.record(pidfile, parent.pid, [gone])
    assert procs == [(grandchild, _kernel_start(grandchild))]
    assert process_tree.load(pidfile) == [(parent.pid, _kernel_start(parent.pid)), *procs]
    survivor = spawn(SLEEPER)
    kept: Proc = (survivor.pid, _kernel_start(survivor.pid))  # recorded before, still alive
    assert kept in process_tree.record(pidfile, parent.pid, [kept])


@pytest.mark.parametrize("content", [None, "", "not json", '{"procs": [[1]]}', "[]"])
def test_load_of_a_missing_or_broken_pid_file_is_empty(tmp_path: Path, content: str | None) -> None:
    """A crash mid-write or a foreign file never makes the next run end anything."""
    pidfile = tmp_path / "run.pid"
    if content is not None:
        pidfile.write_text(content)
    assert process_tree.load(pidfile) == []


def test_impossible_pids_are_simply_not_alive() -> None:
    """A damaged pid file (negative, zero or huge pids) ends nothing and raises nothing."""
    impossible: list[Proc] = [(-1, 1), (0, 1), (2**40, 1)]
    assert not any(process_tree.alive(proc) for proc in impossible)
    assert process_tree.end(impossible, grace_s=0.1) == 0


def test_end_terminates_then_kills_and_spares_this_process(spawn: Spawner) -> None:
    """SIGTERM first; whatever ignores it is killed after the grace; never ourselves."""
    polite = spawn(SLEEPER)
    stubborn = spawn(IGNORES_TERM)
    assert stubborn.stdout is not None
    assert stubborn.stdout.readline().strip() == "ready"
    procs = [(p.pid, _kernel_start(p.pid)) for p in (polite, stubborn)]
    me: Proc = (os.getpid(), _kernel_start(os.getpid()))
    assert process_tree.end([*procs, me], grace_s=0.5) == 2
    assert polite.wait(timeout=10) == -signal.SIGTERM
    assert stubborn.wait(timeout=10) == -signal.SIGKILL
    assert process_tree.end(procs, grace_s=0.5) == 0  # nothing left to end


def test_children_are_direct_only_and_tree_rss_counts_the_whole_tree(spawn: Spawner) -> None:
    """The bench's readings: flock's direct child, and the memory of a system's tree."""
    parent, grandchild = _grandchild(spawn)
    assert process_tree.children(parent.pid) == [grandchild]
    own = process_tree.tree_rss(grandchild)
    assert own > 0
    assert process_tree.tree_rss(parent.pid) > own
    parent.kill()
    parent.wait(timeout=10)
    assert process_tree.children(parent.pid) == []
    assert process_tree.tree_rss(parent.pid) == 0
