"""Meta's usage headers and error bodies, parsed (adapters/graph_usage.py, graph_errors.py)."""

from __future__ import annotations

import orjson
import pytest

from adapters.errors import GraphError, MediaUnavailable, TransientError
from adapters.graph_errors import account_error, media_lookup_error, parse_error
from adapters.graph_usage import (
    parse_app_usage,
    parse_business_usage,
    usage_from_headers,
)

BUC = orjson.dumps(
    {
        "102290129340398": [
            {
                "type": "whatsapp_business_management",
                "call_count": 95,
                "total_cputime": 20,
                "total_time": 30,
                "estimated_time_to_regain_access": 7,
            }
        ],
        "5551": [{"type": "messenger", "call_count": 1, "total_cputime": 1, "total_time": 1}],
    }
).decode()


def test_business_use_case_usage_converts_minutes_to_seconds() -> None:
    """Each business id's entries, percentages as sent, the regain time in seconds."""
    waba, other = parse_business_usage(BUC)
    assert (waba.business_id, waba.type, waba.call_count, waba.peak_pct) == (
        "102290129340398",
        "whatsapp_business_management",
        95,
        95,
    )
    assert waba.regain_s == 7 * 60
    assert other.regain_s == 0


def test_app_usage_and_the_snapshot() -> None:
    """X-App-Usage's three percentages; the snapshot's peak and regain over both."""
    app = parse_app_usage('{"call_count": 28, "total_time": 61, "total_cputime": 25}')
    assert app is not None
    assert (app.call_count, app.total_cputime, app.total_time, app.peak_pct) == (28, 25, 61, 61)
    usage = usage_from_headers(
        {"x-app-usage": '{"call_count": 99}', "x-business-use-case-usage": BUC}, at=5.0
    )
    assert usage is not None
    assert (usage.peak_pct, usage.regain_s, usage.at) == (99, 420, 5.0)


@pytest.mark.parametrize("value", ["", "not json", "[1, 2]", '{"x": "y"}', '{"1": [3]}'])
def test_malformed_headers_are_ignored(value: str) -> None:
    """Usage is advice: a header that does not parse gives nothing, never an error."""
    assert parse_business_usage(value) == ()
    assert usage_from_headers({"x-business-use-case-usage": value}, at=0) is None


def test_a_newer_snapshot_keeps_what_it_does_not_report() -> None:
    """A response with only X-App-Usage keeps the business entries seen before."""
    first = usage_from_headers({"x-business-use-case-usage": BUC}, at=1.0)
    newer = usage_from_headers({"x-app-usage": '{"call_count": 3}'}, at=2.0)
    assert first is not None
    assert newer is not None
    merged = first.merged(newer)
    assert merged.at == 2.0
    assert merged.app is not None
    assert merged.app.call_count == 3
    assert len(merged.business) == 2


def _body(code: int, subcode: int | None = None, transient: bool = False) -> bytes:
    error: dict[str, object] = {"message": "m", "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if transient:
        error["is_transient"] = True
    return orjson.dumps({"error": {**error, "fbtrace_id": "Az8"}})


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (401, _body(190, 460), "unauthorized"),
        (403, _body(200), "unauthorized"),
        (400, _body(100, 33), "not_found"),
        (404, b"", "not_found"),
        (400, _body(100, 2494100), "lookup_failed"),
    ],
)
def test_media_lookup_errors(status: int, body: bytes, reason: str) -> None:
    """Meta's codes decide: 190 / permissions, 100-33 / 404, anything else final."""
    error = media_lookup_error(parse_error(status, body))
    assert isinstance(error, MediaUnavailable)
    assert (error.reason, error.retryable) == (reason, False)
    assert "fbtrace_id=Az8" in error.detail or not body


@pytest.mark.parametrize(("status", "body"), [(503, _body(2)), (500, b"<html>"), (400, _body(1))])
def test_metas_own_trouble_is_transient(status: int, body: bytes) -> None:
    """5xx, codes 1 and 2, `is_transient`: retried."""
    assert isinstance(media_lookup_error(parse_error(status, body)), TransientError)
    assert isinstance(account_error(parse_error(status, body)), TransientError)


def test_throttling_codes_are_recognized() -> None:
    """Codes 4, 17, 32, 613, 80007, 130429, 131056 and a bare 429 are throttling."""
    for code in (4, 17, 32, 613, 80007, 130429, 131056):
        assert parse_error(400, _body(code)).throttled
    assert parse_error(429, b"").throttled
    assert not parse_error(400, _body(100)).throttled


def test_account_errors_keep_metas_fields() -> None:
    """A final error on an account call is a GraphError with Meta's code and subcode."""
    error = account_error(parse_error(400, _body(100, 33)))
    assert isinstance(error, GraphError)
    assert (error.status, error.code, error.subcode, error.kind) == (400, 100, 33, "OAuthException")
