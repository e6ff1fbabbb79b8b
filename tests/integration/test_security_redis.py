"""The security suite against the Redis configuration: the same bad inputs as the embedded
run (tests/support/security_cases), on the real Redis inbox, dedup marks and rate limiter."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.security import PER_IP, security_stack
from tests.support.security_cases import CASES, Case, body, post_signed, run_case

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_input_is_refused_and_leaves_no_trace(
    case: Case, tmp_path: Path, redis_prefix: str
) -> None:
    """Status and error code as stated; Redis inbox and outbox unchanged by the bad request."""
    async with security_stack(tmp_path, "redis", redis_prefix, admin=case.admin) as stack:
        await run_case(stack, case)


async def test_limits_are_shared_by_replicas(tmp_path: Path, redis_prefix: str) -> None:
    """Two ingress apps on one Redis: together they admit PER_IP requests from one address."""
    async with (
        security_stack(tmp_path / "a", "redis", redis_prefix) as one,
        security_stack(tmp_path / "b", "redis", redis_prefix) as two,
    ):
        replies = [
            await post_signed((one, two)[n % 2], body(f"wamid.R{n}")) for n in range(PER_IP + 2)
        ]
    statuses = [r.status_code for r in replies]
    assert statuses.count(200) == PER_IP
    assert statuses.count(429) == 2


async def test_concurrent_copies_of_one_delivery_store_it_once(
    tmp_path: Path, redis_prefix: str
) -> None:
    """Ten copies of one body at once (two replicas): one accepted, nine duplicates, one item."""
    async with (
        security_stack(tmp_path / "a", "redis", redis_prefix) as one,
        security_stack(tmp_path / "b", "redis", redis_prefix) as two,
    ):
        replies = await asyncio.gather(
            *(post_signed((one, two)[n % 2], body("wamid.SAME")) for n in range(4))
        )
        answers = sorted(r.json()["status"] for r in replies)
        assert answers == ["accepted", "duplicate", "duplicate", "duplicate"]
        assert await one.backlog() == 1
