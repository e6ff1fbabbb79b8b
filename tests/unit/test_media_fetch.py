"""The shard's media fetch (actors/media_fetch.py): what it retries, for how long, and what
it answers when it gives up; it never raises."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from actors.media_fetch import MediaFetcher, MediaPolicy, WorkerLost
from adapters.errors import GraphThrottled, MediaUnavailable
from models.media import MediaFile, MediaJob

JOB = MediaJob.model_validate(
    {
        "tenant_id": "acme",
        "event_id": "wamid.1",
        "media_id": "m1",
        "media_type": "image",
        "sent_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
)


class Scripted:
    """A MediaRunner answering try n with `script(n)`: a file, or an error raised."""

    def __init__(self, script: Callable[[int], MediaFile | Exception]) -> None:
        self.script = script
        self.tries = 0

    async def run(self, job: MediaJob) -> MediaFile:
        self.tries += 1
        outcome = self.script(self.tries)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


STORED = MediaFile(status="stored", object_key="acme/2026/01/m1")


def fetcher(runner: Scripted, **policy: float) -> MediaFetcher:
    settings = {"wait_s": 2.0, "retry_base_s": 0.01, "retry_max_delay_s": 0.02, **policy}
    return MediaFetcher(runner, MediaPolicy(**settings))  # type: ignore[arg-type]


async def test_an_outage_then_success_counts_the_tries() -> None:
    runner = Scripted(lambda n: MediaUnavailable("store_unavailable") if n < 3 else STORED)
    file = await fetcher(runner).fetch(JOB)
    assert (file.status, file.attempts, runner.tries) == ("stored", 3, 3)


async def test_throttling_waits_as_long_as_meta_says() -> None:
    runner = Scripted(lambda n: GraphThrottled(4, 0.3, "app limit") if n == 1 else STORED)
    started = time.monotonic()
    file = await fetcher(runner).fetch(JOB)
    assert file.status == "stored"
    assert time.monotonic() - started >= 0.3


async def test_a_file_that_kills_its_worker_twice_fails_as_worker_lost() -> None:
    runner = Scripted(lambda n: WorkerLost("wa-media-0: ActorDiedError"))
    file = await fetcher(runner).fetch(JOB)
    assert (file.status, file.reason, runner.tries) == ("failed", "worker_lost", 2)


async def test_out_of_budget_the_last_reason_is_published() -> None:
    runner = Scripted(lambda n: MediaUnavailable("scanner_unavailable", "clamd refused"))
    file = await fetcher(runner, wait_s=0.2).fetch(JOB)
    assert (file.status, file.reason) == ("failed", "scanner_unavailable")
    assert "gave up after 0.2s" in (file.detail or "")


async def test_a_tenant_without_a_token_fails_at_once_without_a_try() -> None:
    runner = Scripted(lambda n: STORED)
    fetch = MediaFetcher(runner, MediaPolicy(), has_token=lambda tenant: False)
    file = await fetch.fetch(JOB)
    assert (file.status, file.reason, runner.tries) == ("failed", "no_token", 0)


async def test_a_bug_in_the_runner_fails_the_file_not_the_shard() -> None:
    runner = Scripted(lambda n: ZeroDivisionError("a bug"))
    file = await fetcher(runner).fetch(JOB)
    assert (file.status, file.reason, runner.tries) == ("failed", "internal_error", 1)
