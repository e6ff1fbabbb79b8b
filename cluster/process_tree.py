"""The processes a run started, recorded so a later run can end exactly those.

Ray's workers and Serve's HAProxy start their own process groups, and HAProxy outlives
a `kill -9` of the driver while holding the HTTP port. So the runner records every
descendant (pid plus kernel start time, which guards against pid reuse) and the next run
ends the ones still alive. Nothing is ever matched by name.

Process facts come from psutil, read here and nowhere else (the bench's memory sampling
uses `children` and `tree_rss` below).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import psutil

Proc = tuple[int, int]  # (pid, start time in clock ticks since boot)

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _info(pid: int) -> tuple[int, int] | None:
    """(ppid, start ticks) of a live process, or None (gone, unreadable or a zombie)."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            ppid, started = process.ppid(), process.create_time()
        # psutil gives the start as boot time + ticks since boot; the boot time moves when
        # the wall clock is stepped (NTP), the kernel's tick count never does, and it is
        # what earlier pid files hold. Boot time is read again right away, so a step can
        # only slip in between two reads microseconds apart.
        ticks = round((started - psutil.boot_time()) * _TICKS_PER_S)
    except (psutil.Error, ValueError):  # ValueError: a negative pid from a damaged pid file
        return None
    return ppid, ticks


def _children_by_parent() -> dict[int, list[int]]:
    """Live pids by parent pid, from one pass over every process."""
    # process_iter skips a process gone since listed and gives None for one we may not read
    # (another user's, with hidepid), so neither fails the scan; psutil's children() reads
    # every process in one call and gives up at the first it may not read. Its cache of
    # Process objects is dropped first: a cached one whose pid was reused is skipped for a
    # scan, and a process started in the last 0.5 s must not be missed for that.
    psutil.process_iter.cache_clear()
    kids: dict[int, list[int]] = {}
    for process in psutil.process_iter(["ppid"]):
        ppid = process.info["ppid"]
        if ppid is not None:
            kids.setdefault(ppid, []).append(process.pid)
    return kids


def descendants(root: int) -> list[Proc]:
    """Every live process below `root`, with its start time."""
    kids = _children_by_parent()
    found: list[Proc] = []
    stack = list(kids.get(root, []))
    while stack:
        pid = stack.pop()
        info = _info(pid)  # read fresh: the start time is the identity that gets recorded
        if info is not None:
            found.append((pid, info[1]))
        stack.extend(kids.get(pid, []))
    return found


def record(path: Path, root: int, previous: list[Proc]) -> list[Proc]:
    """Write root + its descendants (keeping earlier ones still alive) to `path`."""
    current = {pid: start for pid, start in previous if alive((pid, start))}
    current.update(dict(descendants(root)))
    procs = sorted(current.items())
    start = _info(root)
    entries = [(root, start[1] if start else 0), *procs]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"procs": entries}))
    tmp.replace(path)
    return procs


def start_ticks(pid: int) -> int | None:
    """The kernel start time of a live process (its identity beside the pid), or None."""
    info = _info(pid)
    return info[1] if info is not None else None


def alive(proc: Proc) -> bool:
    """The process exists and is the same one (same start time)."""
    info = _info(proc[0])
    return info is not None and info[1] == proc[1]


def end(procs: list[Proc], grace_s: float = 5.0, kill_wait_s: float = 2.0) -> int:
    """SIGTERM the live ones, SIGKILL what is left after grace_s; returns how many ended.

    Returns within grace_s + kill_wait_s. A zombie counts as ended (it holds no port and
    no memory; its parent, or the supervisor that adopted it, reaps it).
    """
    targets = [p for p in procs if p[0] != os.getpid() and alive(p)]
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, kill_wait_s)):
        for pid, _ in (p for p in targets if alive(p)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(alive(p) for p in targets):
            time.sleep(0.1)
    return len(targets)


def load(path: Path) -> list[Proc]:
    """The processes recorded in `path` (empty if none or unreadable)."""
    try:
        data = json.loads(path.read_text())
        return [(int(pid), int(start)) for pid, start in data["procs"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def children(pid: int) -> list[int]:
    """Direct live children of pid, lowest pid first (empty if it has none or is gone)."""
    return sorted(_children_by_parent().get(pid, []))


def tree_rss(pid: int) -> int:
    """Resident memory in bytes of pid and every descendant (0 for what is gone)."""
    total = 0
    for member in [pid, *(p for p, _ in descendants(pid))]:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(member).memory_info().rss
    return total
