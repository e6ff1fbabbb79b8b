"""cluster/supervisor.py on real processes: a supervisor (in a subprocess of its own, so that
its signal handlers and subreaper flag stay out of pytest) running a small driver script.
The Ray cases are in tests/integration/test_shutdown.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cluster import process_tree
from cluster.supervisor import FORCED, Deadline

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def supervisor(
    tmp_path: Path, driver: str, timeout_s: float = 3.0
) -> Iterator[subprocess.Popen[str]]:
    """`supervise([python, -c, driver], ...)` in a subprocess (its stdout is the driver's and
    the supervisor's log), killed by its pid if still running at the end."""
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
    run = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        yield run
    finally:
        if run.poll() is None:
            run.kill()
        run.wait(timeout=30)
        assert run.stdout is not None
        run.stdout.close()


def driver_pid(run: subprocess.Popen[str]) -> int:
    """The pid the driver script printed (`PID n`), skipping the supervisor's log lines."""
    assert run.stdout is not None
    for line in run.stdout:
        if line.startswith("PID "):
            return int(line.split()[1])
    raise AssertionError("the driver printed no pid")


def test_a_driver_that_ignores_sigterm_is_ended_at_the_deadline(tmp_path: Path) -> None:
    """The drain never ends: the supervisor SIGKILLs the driver within the timeout, exits
    FORCED, and the pid file is gone."""
    driver = """
        import os, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("PID", os.getpid(), flush=True)
        time.sleep(600)
        """
    with supervisor(tmp_path, driver) as run:
        pid = driver_pid(run)
        started = process_tree.descendants(run.pid)
        assert [p for p, _ in started] == [pid]
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=3.0 + 3) == FORCED
        assert not process_tree.alive(started[0])
        assert not (tmp_path / "run.pid").exists()


def test_the_drivers_exit_code_is_the_runs(tmp_path: Path) -> None:
    """A driver that fails on its own (a configuration error: 2) makes the run fail with it."""
    with supervisor(tmp_path, "import sys; sys.exit(2)") as run:
        assert run.wait(timeout=30) == 2


def test_an_orphan_of_the_driver_is_adopted_and_ended(tmp_path: Path) -> None:
    """A process the driver started in its own session (as Ray's workers and HAProxy are)
    outlives the driver: the subreaper adopts it, so it is still recorded and is ended."""
    driver = """
        import subprocess
        child = subprocess.Popen(["sleep", "600"], start_new_session=True)
        print("PID", child.pid, flush=True)
        """
    with supervisor(tmp_path, driver) as run:
        orphan = driver_pid(run)
        assert run.wait(timeout=30) == 0
        assert not Path(f"/proc/{orphan}").exists()  # ended and reaped, not a zombie


def test_the_deadline_keeps_a_reserve_for_ending_the_tree() -> None:
    """The drain gets the timeout less the reserve; ending fits in the reserve."""
    assert (Deadline(30).drain_s, Deadline(30).reserve_s) == (23, 7)
    assert sum(Deadline(30).split(100)) == pytest.approx(6.5)  # half a second for the scans
    assert Deadline(6).drain_s == 4
    assert sum(Deadline(6).split(1.0)) == pytest.approx(0.5)
    assert sum(Deadline(6).split(0.0)) == pytest.approx(0.3)  # never less than a SIGKILL's landing
