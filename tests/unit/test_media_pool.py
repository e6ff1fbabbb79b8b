"""The media pool's worker logic (actors/media_pool.py) without Ray: the two lanes bound
heavy and light files separately, so a burst of videos never delays an image; answers
cross the process boundary tagged and come back as the project's own errors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from actors.media_pool import LocalMediaRunner, MediaWork, answer_of, raise_answer
from adapters.errors import (
    GraphThrottled,
    MediaRejected,
    MediaUnavailable,
    TransientError,
)
from models.media import MediaFile, MediaJob


def job(media_id: str, media_type: str = "video") -> MediaJob:
    return MediaJob.model_validate(
        {
            "tenant_id": "acme",
            "event_id": f"wamid.{media_id}",
            "media_id": media_id,
            "media_type": media_type,
            "sent_at": datetime(2026, 1, 1, tzinfo=UTC),
        }
    )


class SlowPipeline:
    """Holds every file until its gate opens; records how many run at once per type."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.running: dict[str, int] = {"video": 0, "image": 0}
        self.most: dict[str, int] = {"video": 0, "image": 0}
        self.done: list[str] = []

    async def process(self, job: MediaJob) -> MediaFile:
        kind = job.media_type
        self.running[kind] += 1
        self.most[kind] = max(self.most[kind], self.running[kind])
        try:
            await self.gates.setdefault(job.media_id, asyncio.Event()).wait()
        finally:
            self.running[kind] -= 1
        self.done.append(job.media_id)
        return MediaFile(status="stored", object_key=job.media_id)

    async def close(self) -> None:
        return None


async def test_videos_wait_in_their_lane_and_an_image_passes_them() -> None:
    pipeline = SlowPipeline()
    work = MediaWork(pipeline, heavy_slots=1, light_slots=4)
    videos = [asyncio.ensure_future(work.run(job(f"v{i}"))) for i in range(3)]
    image = asyncio.ensure_future(work.run(job("i0", "image")))
    await asyncio.sleep(0.05)
    assert pipeline.running == {"video": 1, "image": 1}, "one video at a time, the image too"
    pipeline.gates.setdefault("i0", asyncio.Event()).set()
    assert (await image)[0] == "file"
    assert pipeline.done == ["i0"], "the image did not wait for the videos"
    for i in range(3):
        pipeline.gates.setdefault(f"v{i}", asyncio.Event()).set()
    await asyncio.gather(*videos)
    assert pipeline.most == {"video": 1, "image": 1}


@pytest.mark.parametrize(
    "error",
    [
        MediaRejected("executable", "PE"),
        MediaUnavailable("not_found", "gone", retryable=False),
        MediaUnavailable("store_unavailable", "s3 down", retryable=True),
        GraphThrottled(80007, 120.0, "rate limit"),
        TransientError("network"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_each_error_survives_the_tagged_answer(error: Exception) -> None:
    tagged = answer_of(error)
    assert tagged is not None
    with pytest.raises(type(error)) as raised:
        raise_answer(tagged)
    again = raised.value
    for attribute in ("reason", "detail", "retryable", "code", "retry_after_s"):
        if hasattr(error, attribute):
            assert getattr(again, attribute) == getattr(error, attribute), attribute


class Broken:
    """A pipeline with a bug: not one of the project's errors."""

    async def process(self, job: MediaJob) -> MediaFile:
        raise ZeroDivisionError("a bug")

    async def close(self) -> None:
        return None


async def test_a_bug_in_the_pipeline_is_a_failed_file_not_a_retry_loop() -> None:
    with pytest.raises(MediaUnavailable) as raised:
        await LocalMediaRunner(Broken()).run(job("x"))
    assert (raised.value.reason, raised.value.retryable) == ("internal_error", False)
    assert "ZeroDivisionError" in raised.value.detail
