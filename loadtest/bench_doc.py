"""The bench's results as Markdown, and their place in docs/benchmarks.md.

Only the block between the two markers is rewritten, so the analysis written around it
by people survives every `make bench`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

BEGIN = "<!-- bench:begin (written by python -m loadtest bench) -->"
END = "<!-- bench:end -->"


class _Result(Protocol):
    name: str
    title: str
    rss_idle_mib: float
    rss_wrk_mib: float
    rss_open_mib: float
    wrk: dict[str, Any]
    open_loop: dict[str, Any]
    error: str | None


def machine() -> list[str]:
    """Machine and versions, one Markdown bullet each."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = []
    for package in ("ray", "fastapi", "uvicorn", "httpx", "aio-pika", "redis", "orjson"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    wrk = shutil.which("wrk")
    wrk_version = (
        subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False).stdout.split("\n")[
            0
        ]
        if wrk
        else "wrk missing"
    )
    return [
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: {cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, {platform.platform()}",
        f"- Python {sys.version.split()[0]}; {', '.join(versions)}; {wrk_version}",
    ]


def _pct(d: dict[str, Any], key: str) -> str:
    value = d.get(key)
    return "–" if value is None else f"{value:.1f}"


def render_results(args: argparse.Namespace, results: Sequence[_Result]) -> str:
    """The comparison table, ratios, latencies and memory, plus the exact commands."""
    by = {r.name: r for r in results}
    lines = [*machine(), "", "### Saturation (wrk, closed loop)", ""]
    lines += [
        f"`wrk -t{args.wrk_threads} -c{args.wrk_connections} -d{args.wrk_duration}s --latency`"
        f" POSTing {args.wrk_bodies} pre-signed bodies of {args.batch} item(s) each.",
        "",
        "| system | req/s | p50 ms | p90 ms | p99 ms | non-2xx | RSS idle MiB | RSS load MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        w = r.wrk
        if r.error and not w:
            lines.append(f"| {r.name}: {r.title} | failed: {r.error} | | | | | | |")
            continue
        lat = w.get("latency_ms", {})
        lines.append(
            f"| {r.name}: {r.title} | {w.get('requests_per_s', 0):.0f} | {_pct(lat, 'p50')} |"
            f" {_pct(lat, 'p90')} | {_pct(lat, 'p99')} | {w.get('non_2xx', 0)} |"
            f" {r.rss_idle_mib} | {max(r.rss_wrk_mib, r.rss_open_mib)} |"
        )
    rps = {n: by[n].wrk.get("requests_per_s", 0.0) for n in by if by[n].wrk}
    lines.append("")
    for r in results:
        if "published_per_s" in r.wrk:
            lines.append(
                f"- {r.name}: {r.wrk['published_events']} events consumed from the broker during"
                f" and after wrk, {r.wrk['published_per_s']} events/s from wrk's start to the"
                f" last one; the backlog took {r.wrk['drain_after_wrk_s']} s after wrk stopped"
            )
    for num, den in (("c", "a"), ("c", "b")):
        if rps.get(num) and rps.get(den):
            lines.append(f"- throughput ratio {num}/{den}: **{rps[num] / rps[den]:.2f}**")
    lines += ["", f"### Open loop ({args.rate:.0f} req/s for {args.duration:.0f} s)", ""]
    lines += [
        "| system | achieved req/s | ack p50 | p90 | p99 | p99.9 | max | errors |"
        " ack→published p50 | p99 | lost | order violations | publishing after last ack s |",
        "| --- " + "| ---: " * 6 + "| --- " + "| ---: " * 5 + "|",
    ]
    for r in results:
        o = r.open_loop
        if not o:
            continue
        ack, pub, ev = o["ack_latency_ms"], o["ack_to_published_ms"], o["events"]
        has_events = bool(o.get("events_consumed"))
        lines.append(
            f"| {r.name} | {o['rates']['achieved_rps']} | {_pct(ack, 'p50')} |"
            f" {_pct(ack, 'p90')} | {_pct(ack, 'p99')} | {_pct(ack, 'p99.9')} |"
            f" {_pct(ack, 'max')} | {o['requests']['errors_by_status'] or 0} |"
            + (
                f" {_pct(pub, 'p50')} | {_pct(pub, 'p99')} | {ev['lost']} |"
                f" {ev['order_violations']} | {o.get('publish_drain_s')} |"
                if has_events
                else " n/a | n/a | n/a | n/a | n/a |"
            )
        )
    lines += [
        "",
        "Latencies in ms. Ack latency is measured from each request's scheduled send time.",
        "RSS: sum over the whole process tree (for c: Ray's GCS, raylet, workers, Serve).",
        "",
        "Command: `make bench`, i.e. `.venv/bin/python -m loadtest bench"
        f" --rate {args.rate:.0f} --duration {args.duration:.0f}"
        f" --wrk-duration {args.wrk_duration} --wrk-connections {args.wrk_connections}`",
    ]
    return "\n".join(lines)


def update_doc(path: Path, block: str) -> None:
    """Replace the results block in the doc (creating the doc if needed)."""
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n## Latest run\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}")
