"""The security suite on the embedded default: every bad input of tests/support/security_cases
is answered with its status and leaves nothing stored and nothing published."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.security import security_stack
from tests.support.security_cases import CASES, Case, run_case


def test_the_suite_tries_at_least_thirty_distinct_bad_inputs() -> None:
    """30+ cases, ids unique, every category of attack represented."""
    assert len({c.id for c in CASES}) == len(CASES) >= 30
    kinds = {c.kind for c in CASES}
    expected = {
        "forged",
        "replayed",
        "oversized",
        "malformed",
        "spoofed",
        "flooded",
        "unauthorized",
    }
    assert kinds == expected


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_input_is_refused_and_leaves_no_trace(case: Case, tmp_path: Path) -> None:
    """Status and error code as stated; inbox and outbox unchanged by the bad request."""
    async with security_stack(tmp_path, "embedded", admin=case.admin) as stack:
        await run_case(stack, case)
