"""The run's report: one JSON document and one PNG with latency and throughput over time."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson


def _clean(value: Any) -> Any:
    """NaN is not JSON: empty percentiles are written as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(report: dict[str, Any], path: Path) -> None:
    """Write the report as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(_clean(report), option=orjson.OPT_INDENT_2))


def write_png(report: dict[str, Any], path: Path) -> None:
    """Latency over time (ack p50/p99, ack→published p50/p99) above throughput over time."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to a file
    import matplotlib.pyplot as plt

    series = report["series"]
    seconds = series["second"]

    def points(name: str) -> list[float]:
        return [math.nan if v is None else v for v in series[name]]

    fig, (lat, thr) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    lat.plot(seconds, points("ack_p50_ms"), label="ack p50")
    lat.plot(seconds, points("ack_p99_ms"), label="ack p99")
    lat.plot(seconds, points("pub_p50_ms"), label="ack→published p50", linestyle="--")
    lat.plot(seconds, points("pub_p99_ms"), label="ack→published p99", linestyle="--")
    lat.set_ylabel("latency (ms)")
    lat.set_yscale("symlog", linthresh=1.0)
    lat.legend(loc="upper left")
    lat.grid(True, alpha=0.3)
    thr.plot(seconds, series["offered"], label="offered req/s")
    thr.plot(seconds, series["acked"], label="acked req/s")
    thr.plot(seconds, series["published"], label="published events/s")
    thr.set_ylabel("per second")
    thr.set_xlabel("seconds since start")
    thr.legend(loc="upper left")
    thr.grid(True, alpha=0.3)
    cfg = report.get("config", {})
    fig.suptitle(
        f"{cfg.get('url', '')} — {cfg.get('rate', '?')} req/s for {cfg.get('duration_s', '?')} s,"
        f" batch {cfg.get('batch', '?')}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def verdict(report: dict[str, Any]) -> list[str]:
    """Human-readable summary lines for the terminal."""
    return [*_summary_lines(report), *_stream_lines(report)]


def _fmt(d: dict[str, Any]) -> str:
    return " ".join(f"{k}={d[k]}" for k in ("p50", "p90", "p99", "p99.9", "max"))


def _stream_lines(report: dict[str, Any]) -> list[str]:
    """Per stream (when the run had a media stream): latencies, loss, files, CPU."""
    streams = report.get("streams", {})
    if len(streams) < 2 and not report.get("files"):
        return []
    lines = []
    for name, row in streams.items():
        ack, pub = row["ack_latency_ms"], row.get("ack_to_published_ms", {})
        lines.append(
            f"{name}: acked {row.get('keys_acked', 0)} published {row.get('keys_published', 0)}"
            f" lost {row.get('lost', 0)} | ack p50 {ack['p50']} p99 {ack['p99']} ms"
            f" | ack→published p50 {pub.get('p50')} p99 {pub.get('p99')} ms"
        )
    for name, files in report.get("files", {}).items():
        cpu = files.get("cpu") or {}
        lines.append(
            f"{name} files: {files['files']} {files['by_status']} {files['by_reason'] or ''}"
            f" | {files['bytes_downloaded'] / 1e6:.1f} MB downloaded,"
            f" {files['bytes_stored'] / 1e6:.1f} MB stored in {files['span_s']} s:"
            f" {files['files_per_s']} files/s, {files['downloaded_mb_per_s']} MB/s"
            f" | service CPU {cpu.get('cpu_s')} s = {cpu.get('busy_cores')} busy cores:"
            f" {files.get('files_per_cpu_s')} files and"
            f" {files.get('downloaded_mb_per_cpu_s')} MB per CPU second"
        )
    return lines


def _summary_lines(report: dict[str, Any]) -> list[str]:
    r, ev = report["rates"], report["events"]
    ack, pub = report["ack_latency_ms"], report["ack_to_published_ms"]
    errors = report["requests"]["errors_by_status"]
    events = (
        f"events: acked {ev['keys_acked']} published {ev['keys_published']} lost {ev['lost']}"
        f" | published duplicates {ev['published_duplicates']}"
        f" unexpected {ev['unexpected_duplicates']}"
        f" | order violations {ev['order_violations']}"
        f" | state events {ev.get('state_events', 0)}"
        f" (conversations created {ev.get('conversations_created', 0)},"
        f" repeated created {ev.get('repeated_created', 0)})"
        if report.get("events_consumed", True)
        else "events: not consumed (the target publishes nothing the harness can match)"
    )
    return [
        f"offered {r['offered_rps']} req/s, sent {r['sent_rps']}, achieved {r['achieved_rps']}"
        f" req/s; published {r['published_eps']} events/s",
        f"ack latency ms: {_fmt(ack)}",
        f"ack→published ms: {_fmt(pub)}",
        f"errors by status: {errors or 'none'}",
        events,
        *(
            [f"publishing went on {report['publish_drain_s']} s after the last answer"]
            if report.get("publish_drain_s")
            else []
        ),
    ]
