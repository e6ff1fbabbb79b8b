"""CPU seconds of process trees over time, to turn a throughput into work per core.

The machine is shared, so the whole machine's CPU says little; what the service used is
the sum over its process tree (the runner, Ray's GCS and raylet, the Serve replicas, the
shards and the media workers), read once a second. A window's CPU is the difference of
the samples around it; a process that ended inside it loses the time since its last
sample (Ray restarts none in a healthy run). The tree is walked with the runner's
reader (cluster.process_tree); each process's own times come from psutil.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from cluster.process_tree import descendants


def _label(process: psutil.Process) -> str:
    """A process's group in the report: Ray's title without the method (`ray::MediaWorker`),
    else the program's name."""
    try:
        cmdline = process.cmdline()
        name = process.name()
    except psutil.Error:
        return "gone"
    first = cmdline[0] if cmdline else name
    if first.startswith("ray::"):
        return first.split()[0].split(".")[0]
    return name


@dataclass(slots=True)
class CpuSample:
    """CPU seconds (user + system) by process group at one moment."""

    at: float  # time.perf_counter()
    by_label: dict[str, float]

    @property
    def total(self) -> float:
        """All groups together."""
        return sum(self.by_label.values())


def sample(roots: list[int]) -> CpuSample:
    """One reading of every live process under (and including) the roots."""
    by_label: dict[str, float] = {}
    pids = {pid for root in roots for pid in [root, *(p for p, _ in descendants(root))]}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            times = process.cpu_times()
            label = _label(process)
            by_label[label] = by_label.get(label, 0.0) + times.user + times.system
    return CpuSample(time.perf_counter(), by_label)


@dataclass(slots=True)
class CpuSampler:
    """Samples the roots' trees every `interval_s` while running."""

    roots: list[int]
    interval_s: float = 1.0
    samples: list[CpuSample] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Take the first sample now, then one per interval in the background."""
        if not self.roots:
            return
        self.samples.append(await asyncio.to_thread(sample, self.roots))
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.samples.append(await asyncio.to_thread(sample, self.roots))

    async def stop(self) -> None:
        """Stop sampling after one last sample."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self.samples.append(await asyncio.to_thread(sample, self.roots))

    def window(self, start: float, end: float, top: int = 8) -> dict[str, Any] | None:
        """CPU used between the sample at or before `start` and the first at or after
        `end` (perf_counter times): seconds, busy cores, and the busiest groups."""
        return cpu_window(self.samples, start, end, top)


def cpu_window(
    samples: list[CpuSample], start: float, end: float, top: int = 8
) -> dict[str, Any] | None:
    """See CpuSampler.window; None when the samples do not cover the window."""
    times = [s.at for s in samples]
    i = bisect.bisect_right(times, start) - 1
    j = bisect.bisect_left(times, end)
    if i < 0 or j >= len(samples) or j <= i:
        return None
    first, last = samples[i], samples[j]
    wall = last.at - first.at
    used = {
        label: last.by_label.get(label, 0.0) - first.by_label.get(label, 0.0)
        for label in last.by_label
    }
    busiest = sorted(used.items(), key=lambda kv: -kv[1])[:top]
    total = max(0.0, last.total - first.total)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(total, 2),
        "busy_cores": round(total / wall, 3) if wall else None,
        "by_process_cpu_s": {label: round(seconds, 2) for label, seconds in busiest},
    }
