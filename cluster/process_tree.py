"""The processes a run started, recorded so a later run can end exactly those.

Ray's workers and Serve's HAProxy start their own process groups, and HAProxy outlives
a `kill -9` of the driver while holding the HTTP port. So the runner records every
descendant (pid plus kernel start time, which guards against pid reuse) and the next run
ends the ones still alive. Nothing is ever matched by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

Proc = tuple[int, int]  # (pid, start time in clock ticks since boot)


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, starttime) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> list[Proc]:
    """Every live process below `root`, with its start time."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info is not None:
                children.setdefault(info[0], []).append(int(entry))
                starts[int(entry)] = info[1]
    found: list[Proc] = []
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        found.append((pid, starts[pid]))
        stack.extend(children.get(pid, []))
    return found


def record(path: Path, root: int, previous: list[Proc]) -> list[Proc]:
    """Write root + its descendants (keeping earlier ones still alive) to `path`."""
    current = {pid: start for pid, start in previous if alive((pid, start))}
    current.update(dict(descendants(root)))
    procs = sorted(current.items())
    start = _stat(root)
    entries = [(root, start[1] if start else 0), *procs]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"procs": entries}))
    tmp.replace(path)
    return procs


def alive(proc: Proc) -> bool:
    """The process exists and is the same one (same start time)."""
    info = _stat(proc[0])
    return info is not None and info[1] == proc[1]


def end(procs: list[Proc], grace_s: float = 5.0) -> int:
    """SIGTERM the live ones, SIGKILL what is left after grace_s; returns how many ended."""
    targets = [p for p in procs if p[0] != os.getpid() and alive(p)]
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
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
