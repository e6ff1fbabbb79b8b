"""wrk output parsing and the JSON/PNG/Markdown reports."""

from __future__ import annotations

from pathlib import Path

import orjson

from loadtest.bench_doc import BEGIN, END, update_doc
from loadtest.report import verdict, write_json, write_png
from loadtest.run_command import finish
from loadtest.wrk import parse

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8101/webhook
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms  800.00us  40.00ms   90.00%
    Req/Sec    15.00k     1.00k   17.00k    70.00%
  Latency Distribution
     50%    1.90ms
     75%    2.30ms
     90%  850.00us
     99%    1.20s
  150000 requests in 10.00s, 20.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  15000.50
Transfer/sec:      2.00MB
"""


def test_wrk_output_is_parsed_with_units() -> None:
    """Throughput, percentiles in ms whatever wrk's unit, errors and non-2xx."""
    result = parse(WRK_OUTPUT)
    assert result.requests_per_s == 15000.5
    assert result.latency_ms == {"p50": 1.9, "p75": 2.3, "p90": 0.85, "p99": 1200.0}
    assert (result.requests, result.non_2xx, result.socket_errors) == (150000, 7, 5)


def _report() -> dict[str, object]:
    lat = {"count": 3.0, "mean": 1.0, "p50": 1.0, "p90": 2.0, "p99": 3.0, "p99.9": 3.0, "max": 3.0}
    return {
        "config": {"url": "http://x/webhook", "rate": 10, "duration_s": 2, "batch": 1},
        "rates": {"offered_rps": 10, "sent_rps": 10, "achieved_rps": 10, "published_eps": 9},
        "requests": {"errors_by_status": {"503": 1}},
        "ack_latency_ms": lat,
        "ack_to_published_ms": {**lat, "p99": float("nan")},
        "events": {
            "keys_acked": 3,
            "keys_published": 3,
            "lost": 0,
            "published_duplicates": 1,
            "unexpected_duplicates": 0,
            "order_violations": 0,
        },
        "series": {
            "second": [0, 1],
            "offered": [10, 10],
            "acked": [9, 11],
            "published": [8, 12],
            "ack_p50_ms": [1.0, None],
            "ack_p99_ms": [2.0, 3.0],
            "pub_p50_ms": [None, 4.0],
            "pub_p99_ms": [5.0, 6.0],
        },
    }


def test_json_report_has_no_nan_and_png_is_an_image(tmp_path: Path) -> None:
    """NaN becomes null (valid JSON); the PNG file is a real PNG."""
    report = _report()
    write_json(report, tmp_path / "r.json")
    again = orjson.loads((tmp_path / "r.json").read_bytes())
    assert again["ack_to_published_ms"]["p99"] is None
    write_png(report, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = verdict(report)
    assert any("503" in line for line in lines)


def test_bench_doc_keeps_the_text_around_the_block(tmp_path: Path) -> None:
    """Only the marked block is replaced; the analysis written by people stays."""
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nintro\n\n{BEGIN}\nold numbers\n{END}\n\n## Analysis\nkept\n")
    update_doc(doc, "new numbers")
    text = doc.read_text()
    assert "new numbers" in text
    assert "old numbers" not in text
    assert text.startswith("# Benchmarks\n\nintro")
    assert text.endswith("## Analysis\nkept\n")


def test_verdict_does_not_claim_loss_when_events_were_not_consumed() -> None:
    """Against a peer that publishes nothing matchable, the events line says so."""
    report = {**_report(), "events_consumed": False}
    lines = verdict(report)
    assert lines[-1].startswith("events: not consumed")
    assert not any("lost" in line for line in lines)


def test_a_repeated_conversation_created_fails_the_run(tmp_path: Path) -> None:
    """State events are reported; a second `conversation.created` with a new id for one
    conversation is a failure (exit 1) like a lost event, while none passes (exit 0)."""
    report = _report()
    events = dict(report["events"])  # type: ignore[call-overload]
    clean = {**report, "events": {**events, "state_events": 4, "conversations_created": 3}}
    assert any("state events 4 (conversations created 3" in line for line in verdict(clean))
    assert finish(clean, tmp_path, "clean") == 0
    repeated = {**clean, "events": {**clean["events"], "repeated_created": 1}}  # type: ignore[dict-item]
    assert finish(repeated, tmp_path, "repeated") == 1
