"""A clock that stands still: rate-limit windows a test controls instead of the wall clock."""

from __future__ import annotations

# 0.25 s into a window of any whole length: the Retry-After of a 1 s window is 0.75 s.
START = 1_700_000_000.25


class FixedClock:
    """Answers `now` until a test moves it; pass it as a rate limiter's `clock`."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward (e.g. into the next window)."""
        self.now += seconds
