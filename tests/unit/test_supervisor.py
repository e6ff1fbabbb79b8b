"""cluster/supervisor.py on real processes: a supervisor (in a subprocess of its own, so that
its signal handlers and subreaper flag stay out of pytest) running a small driver script.
The Ray cases are in tests/integration/test_shutdown.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from cluster import process_tree
from cluster.supervisor import FORCED, Deadline

ROOT = Path(__file__).resolve().parents[2]


def supervisor(tmp_path: Path, driver: str, timeout_s: float = 3.0) -> subprocess.Popen[str]:
    """`supervise([python, -c, driver], ...)` in a subprocess; its stdout is the driver's."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from cluster.supervisor import supervise
        driver = {textwrap.dedent(driver)!r}
        sys.exit(supervise([sys.executable, "-c", driver], Path({str(tmp_path / "run.pid")!r}),
                           {timeout_s}))
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )


def test_a_driver_that_ignores_sigterm_is_ended_at_the_deadline(tmp_path: Path) -> None:
    """The drain never ends: the supervisor SIGKILLs the driver within the timeout, exits
    FORCED, and the pid file is gone."""
    run = supervisor(
        tmp_path,
        """
        import os, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(os.getpid(), flush=True)
        time.sleep(600)
        """,
    )
    assert run.stdout is not None
    driver = int(run.stdout.readline())
    started = process_tree.descendants(run.pid)
    assert [pid for pid, _ in started] == [driver]
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=3.0 + 3) == FORCED
    assert not process_tree.alive(started[0])
    assert not (tmp_path / "run.pid").exists()


def test_the_drivers_exit_code_is_the_runs(tmp_path: Path) -> None:
    """A driver that fails on its own (a configuration error: 2) makes the run fail with it."""
    run = supervisor(tmp_path, "import sys; sys.exit(2)")
    assert run.wait(timeout=30) == 2


def test_an_orphan_of_the_driver_is_adopted_and_ended(tmp_path: Path) -> None:
    """A process the driver started in its own session (as Ray's workers and HAProxy are)
    outlives the driver: the subreaper adopts it, so it is still recorded and is ended."""
    run = supervisor(
        tmp_path,
        """
        import subprocess
        child = subprocess.Popen(["sleep", "600"], start_new_session=True)
        print(child.pid, flush=True)
        """,
    )
    assert run.stdout is not None
    orphan = int(run.stdout.readline())
    assert run.wait(timeout=30) == 0
    assert process_tree.load(tmp_path / "run.pid") == []
    assert not Path(f"/proc/{orphan}").exists()  # ended and reaped, not a zombie


def test_the_deadline_keeps_a_reserve_for_ending_the_tree() -> None:
    """The drain gets the timeout less the reserve; ending fits in the reserve."""
    assert (Deadline(30).drain_s, Deadline(30).reserve_s) == (23, 7)
    assert Deadline(30).split(100) == (5, 2)
    assert Deadline(6).drain_s == 4
    assert sum(Deadline(6).split(1.0)) == 1.0
