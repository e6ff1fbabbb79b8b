"""Posting deliveries the way Meta does: signed POST, and retries with backoff on non-200.

Meta treats anything but a 200 (and a slow answer) as a failed delivery and retries it
with decreasing frequency for up to seven days. A load test cannot wait days, so the
schedule is compressed into `RetryPolicy` (exponential, capped, with jitter), keeping
the property that matters: the same bytes arrive again, later, possibly more than once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from loadtest.clients import Poster, PostFailed
from loadtest.traffic import Delivery

USER_AGENT = "facebookexternalua"  # what Meta's webhook POSTs identify as


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts, and how long to wait before each retry."""

    max_attempts: int = 4
    base_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.2

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number `retry` (1-based), jittered by ±jitter."""
        raw = min(self.max_s, self.base_s * self.factor ** (retry - 1))
        return max(0.0, raw * (1 + rng.uniform(-self.jitter, self.jitter)))


@dataclass(slots=True)
class Attempt:
    """One HTTP attempt: when it started, how it ended, how long it took."""

    started: float
    outcome: str  # "200", "503", ..., or "timeout" / "connect_error" / "error"
    seconds: float


@dataclass(slots=True)
class SendResult:
    """Every attempt of one delivery; acked when the last one answered 200."""

    delivery: Delivery
    scheduled: float
    attempts: list[Attempt] = field(default_factory=list)
    acked_at: float | None = None

    @property
    def acked(self) -> bool:
        """Meta would consider the delivery done."""
        return self.acked_at is not None


AttemptHook = Callable[[SendResult, Attempt], None]


class MetaSender:
    """Sends deliveries to one URL through one poster (one connection pool)."""

    def __init__(
        self,
        post: Poster,
        url: str,
        policy: RetryPolicy | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.perf_counter,
        connections: int = 256,
    ) -> None:
        self._post = post
        self._url = url
        # Why a semaphore in front of the client: pools get slow with thousands of waiting
        # requests (httpcore scans its queue on every hand-off); waiting here is O(1) and
        # still counts as latency, since latency is measured from `scheduled`.
        self._slots = asyncio.Semaphore(max(1, connections))
        self._policy = policy or RetryPolicy()
        self._rng = random.Random(seed)
        self._clock = clock

    async def send(
        self,
        delivery: Delivery,
        scheduled: float,
        on_attempt: AttemptHook | None = None,
        on_start: Callable[[Delivery], None] | None = None,
    ) -> SendResult:
        """POST until a 200 or the attempts run out; `scheduled` is the intended start.

        on_start runs just before each attempt goes out, on_attempt once it is answered.
        """
        result = SendResult(delivery, scheduled)
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": delivery.signature,
            "User-Agent": USER_AGENT,
        }
        for attempt_no in range(1, self._policy.max_attempts + 1):
            async with self._slots:
                if on_start is not None:
                    on_start(delivery)
                started = self._clock()
                try:
                    outcome = str(await self._post(self._url, delivery.body, headers))
                except PostFailed as exc:
                    outcome = exc.outcome
                ended = self._clock()
            attempt = Attempt(started, outcome, ended - started)
            result.attempts.append(attempt)
            if on_attempt is not None:
                on_attempt(result, attempt)
            if outcome == "200":
                result.acked_at = ended
                return result
            if attempt_no < self._policy.max_attempts:
                # Why retry: Meta redelivers every non-200 (and every timeout) with backoff;
                # a 4xx is retried too, because Meta does not tell client from server errors.
                await asyncio.sleep(self._policy.delay(attempt_no, self._rng))
        return result
