"""The process `python -m cluster run` is: it runs the driver, and ends what the run started.

Why a process of its own: Ray starts its GCS and raylet as plain children of the driver,
in the driver's process group (ray/_private/services.py `start_ray_process`: Popen with
PR_SET_PDEATHSIG, no new session, no option for one). A signal to the group (`kill --
-PGID`, GNU make forwarding SIGTERM) therefore killed them first, and `serve.delete` then
waited 60 s for a GCS that was gone. So the supervisor starts the driver (cluster/runner.py)
in a session of its own: a signal to the supervisor's group or session reaches the
supervisor alone, which asks the driver to drain with Ray intact.

It also makes the run safe as a container's PID 1 or a systemd unit's main process:
- it handles SIGTERM, SIGINT and SIGHUP itself (PID 1 has no default signal action);
- it is a child subreaper (PR_SET_CHILD_SUBREAPER), so Ray's workers and Serve's HAProxy,
  orphaned when the raylet or a worker exits, stay its descendants: recorded in the pid
  file, reaped by it (as PID 1 it adopts every orphan anyway), and ended by it;
- it bounds the shutdown: the drain gets the timeout less a reserve, then every recorded
  process gets SIGTERM and, after a grace, SIGKILL (a stopped process only yields to that).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import structlog

from cluster import process_tree
from cluster.logging import configure_logging

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
RECORD_NOW = signal.SIGUSR1  # the driver's "Serve just started HAProxy: record the tree"
FORCED = 1  # exit code when the deadline ended the tree: the drain did not complete

log = structlog.get_logger("supervisor")


def _prctl(option: int, value: int) -> bool:
    """Linux prctl(2); False where it is not available or refused."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def die_with_parent(parent: int) -> None:
    """In the driver: be SIGKILLed when the supervisor dies (a kill -9 of the run).

    Ray's head processes die with the driver the same way, so a kill -9 of the supervisor
    leaves what it always left (workers, HAProxy), which the next run's stale-run clean-up
    ends from the pid file. A supervisor already gone before the prctl: exit now.
    """
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


@dataclass(frozen=True)
class Deadline:
    """How a shutdown of `timeout_s` is spent: the drain first, then ending what is left.

    The reserve (7 s, or a third of a short timeout) is 5/7 SIGTERM grace and 2/7 for
    SIGKILL to land (less half a second for the scans), so the whole stop fits in the
    timeout.
    """

    timeout_s: float

    @property
    def reserve_s(self) -> float:
        return min(7.0, self.timeout_s / 3)

    @property
    def drain_s(self) -> float:
        return self.timeout_s - self.reserve_s

    def split(self, seconds: float) -> tuple[float, float]:
        """(SIGTERM grace, SIGKILL wait) for ending the tree in `seconds`.

        Half a second is kept back for the scans between the steps (~0.1 s each, measured
        at 10.1 s for a 10 s timeout before it was).
        """
        seconds = max(0.3, min(seconds, self.reserve_s) - 0.5)
        return seconds * 5 / 7, seconds * 2 / 7


class _Recorder(threading.Thread):
    """Keeps the pid file current: Ray starts workers and reloads HAProxy while it runs.

    Every 0.5 s (a psutil scan of ~90 processes costs ~7.5 ms of CPU), and at once when
    asked (the driver's SIGUSR1 right after the deployment is up, when HAProxy has just
    been started): a kill -9 can only miss a process started in the last half second.
    """

    def __init__(self, pidfile: Path) -> None:
        super().__init__(name="pidfile", daemon=True)
        self.pidfile = pidfile
        self.now = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        procs: list[process_tree.Proc] = []
        while True:
            last = self.done.is_set()  # read first: the last scan must start after finish()
            procs = process_tree.record(self.pidfile, os.getpid(), procs)
            if last:
                return
            if self.now.wait(0.5):
                self.now.clear()

    def finish(self) -> None:
        """One last record (what the driver left alive), then stop."""
        self.done.set()
        self.now.set()
        self.join()


def _reap(driver: int) -> int | None:
    """Wait for every exited child (adopted orphans too); the driver's exit code if it exited.

    Only this process reaps: it runs no subprocess of its own besides the driver, so no
    Popen loses its child's status to this waitpid(-1).
    """
    code = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return code
        if pid == 0:
            return code
        if pid == driver:
            code = os.waitstatus_to_exitcode(status)


def supervise(command: Sequence[str], pidfile: Path, timeout_s: float) -> int:
    """Run `command` (the driver) in a new session until it exits; stop it on a signal.

    Returns 0 when the driver exited 0 (drained, or nothing left to drain), the driver's
    code (1 for a signal) when it failed, and FORCED when the deadline ended the tree.
    """
    deadline = Deadline(timeout_s)
    subreaper = os.getpid() == 1 or _prctl(PR_SET_CHILD_SUBREAPER, 1)
    requested: list[int] = []
    recorder = _Recorder(pidfile)

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        requested.append(signum)

    def on_record(_signum: int, _frame: FrameType | None) -> None:
        recorder.now.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_stop)
    signal.signal(RECORD_NOW, on_record)
    driver = os.posix_spawn(
        command[0],
        list(command),
        dict(os.environ),
        setsid=True,  # out of our process group and session: see the module docstring
        setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, *STOP_SIGNALS, RECORD_NOW),
    )
    log.info("supervising", driver=driver, pid1=os.getpid() == 1, subreaper=subreaper)
    recorder.start()
    code, stop_at, forwarded = None, None, False
    while code is None:
        code = _reap(driver)
        if requested and not forwarded and code is None:  # a reaped pid may be reused
            log.info("shutdown_requested", signal=signal.Signals(requested[0]).name)
            os.kill(driver, signal.SIGTERM)  # the driver drains on it (cluster/runner.py)
            stop_at, forwarded = time.monotonic() + deadline.timeout_s, True
        if stop_at is not None and time.monotonic() >= stop_at - deadline.reserve_s:
            break
        if code is None:
            time.sleep(0.1)
    forced = code is None
    recorder.finish()
    left = time.monotonic() + deadline.reserve_s if stop_at is None else stop_at
    grace, kill_wait = deadline.split(left - time.monotonic())
    procs = process_tree.load(pidfile)
    if forced:
        log.warning("shutdown_forced", after_s=deadline.drain_s, processes=len(procs))
    ended = process_tree.end(procs, grace_s=grace, kill_wait_s=kill_wait)
    _reap(driver)
    pidfile.unlink(missing_ok=True)
    log.info("stopped", ended=ended, code=FORCED if forced else code)
    if forced or code is None:
        return FORCED  # the driver was ended by the deadline, whatever it would have said
    return code if code >= 0 else 1


def main() -> int:
    """`python -m cluster.supervisor --pidfile F --timeout S --log-level L -- DRIVER...`.

    What `python -m cluster run` execs into once its checks pass (cluster/runner.py).
    """
    parser = argparse.ArgumentParser(prog="python -m cluster.supervisor", description=main.__doc__)
    parser.add_argument("--pidfile", type=Path, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("driver", nargs="+", help="the driver's command line")
    args = parser.parse_args()
    configure_logging(args.log_level)
    return supervise(args.driver, args.pidfile, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
