"""Percentiles and per-second series: the numbers every report is built from."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

QUANTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100); NaN when empty.

    Nearest rank never invents a value between two samples: p99 of 1,000 samples is the
    990th smallest, so a reported p99 is a latency some request really had.
    """
    if not sorted_values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    # round() first: 99.9 / 100 * 1000 is 999.0000000000001 in floating point.
    rank = max(1, math.ceil(round(q * len(sorted_values) / 100, 9)))
    return float(sorted_values[rank - 1])


def summarize(values: Iterable[float], scale: float = 1000.0) -> dict[str, float]:
    """count, mean, p50/p90/p99/p99.9 and max, multiplied by `scale` (seconds → ms)."""
    ordered = sorted(values)
    out: dict[str, float] = {"count": float(len(ordered))}
    if not ordered:
        out.update({name: math.nan for name, _ in QUANTILES})
        out.update(mean=math.nan, max=math.nan)
        return out
    out["mean"] = round(sum(ordered) / len(ordered) * scale, 3)
    for name, q in QUANTILES:
        out[name] = round(percentile(ordered, q) * scale, 3)
    out["max"] = round(ordered[-1] * scale, 3)
    return out


@dataclass(slots=True)
class Series:
    """Samples bucketed by whole seconds since the run started."""

    buckets: dict[int, list[float]] = field(default_factory=dict)

    def add(self, t: float, value: float = 0.0) -> None:
        """Record a sample at `t` seconds after the start (negative t goes to second 0)."""
        self.buckets.setdefault(max(0, int(t)), []).append(value)

    def counts(self, seconds: int) -> list[int]:
        """Samples per second, for seconds 0..seconds-1."""
        return [len(self.buckets.get(s, ())) for s in range(seconds)]

    def quantile(self, seconds: int, q: float, scale: float = 1000.0) -> list[float | None]:
        """The q-th percentile per second (None for an empty second), times `scale`."""
        out: list[float | None] = []
        for s in range(seconds):
            values = sorted(self.buckets.get(s, ()))
            out.append(round(percentile(values, q) * scale, 3) if values else None)
        return out

    @property
    def span(self) -> int:
        """One past the last second with a sample."""
        return max(self.buckets, default=-1) + 1
