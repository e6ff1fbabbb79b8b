"""`python -m loadtest bench` (make bench): three systems, one machine, one run.

(a) plain uvicorn, verify + parse only; (b) the naive bridge, 2 workers, publish each
item with a confirm; (c) this service (`python -m cluster run`, Redis inbox, RabbitMQ
publisher) under `flock` so that only one Ray runs at a time on a shared machine. Each is
measured idle, under wrk saturation (closed loop) and under the open-loop harness at a
fixed rate; the results are printed and written into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtest import procs, wrk
from loadtest.bench_doc import render_results, update_doc
from loadtest.bench_systems import System, cleanup_broker, cleanup_redis, systems
from loadtest.consumers import EventSource, RabbitSource
from loadtest.harness import RunConfig, run_load
from loadtest.report import verdict, write_json, write_png
from loadtest.tenants import generate_tenants, write_tenants_file
from loadtest.traffic import TrafficGenerator


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `bench`; the defaults are the documented benchmark."""
    parser.add_argument("--systems", default="a0,a,b,c", help="subset of a0,a,b,c")
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop req/s")
    parser.add_argument("--duration", type=float, default=60.0, help="open-loop seconds")
    parser.add_argument("--wrk-duration", type=int, default=20)
    parser.add_argument("--wrk-connections", type=int, default=32)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--wrk-bodies", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--conversations", type=int, default=5000)
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--shards", type=int, default=2, help="WA_SHARDS of system c")
    parser.add_argument(
        "--ingress-replicas", type=int, default=1, help="WA_INGRESS_REPLICAS of system c"
    )
    parser.add_argument(
        "--port-base", type=int, default=8100, help="ports: c=base, a=+1, b=+2, a0=+3"
    )
    parser.add_argument(
        "--lock",
        default="/tmp/wa-ray.lock",  # noqa: S108 -- the shared, documented Ray lock
        help="flock file around Ray",
    )
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench"))
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--no-doc", action="store_true", help="print only")


@dataclass(slots=True)
class Result:
    """One system's numbers."""

    name: str
    title: str
    rss_idle_mib: float = 0.0
    rss_wrk_mib: float = 0.0
    rss_open_mib: float = 0.0
    wrk: dict[str, Any] = field(default_factory=dict)
    open_loop: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class PeakRss:
    """Samples the process tree's RSS in a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self._pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, procs.tree_rss(self._pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class _NoEvents:
    """The peers publish nothing the harness can match: acks only (draining their queue)."""

    def __init__(self, drain: RabbitSource | None) -> None:
        self._drain = drain

    async def start(self, on_event: Any) -> None:
        """Bind a queue that swallows what the peer publishes, so routing costs the same."""
        if self._drain is not None:
            await self._drain.start(lambda _event, _at: None)

    async def stop(self) -> None:
        """Close the draining queue."""
        if self._drain is not None:
            await self._drain.stop()


def _mib(n: int) -> float:
    return round(n / 2**20, 1)


async def _open_loop(
    args: argparse.Namespace, system: System, gen: TrafficGenerator, work: Path
) -> dict[str, Any]:
    drain = RabbitSource(args.amqp_url, system.drain_exchange) if system.drain_exchange else None
    source: EventSource = _NoEvents(drain)
    if system.events_exchange is not None:
        source = RabbitSource(args.amqp_url, system.events_exchange)
    cfg = RunConfig(
        url=system.url,
        rate=args.rate,
        duration_s=args.duration,
        grace_s=15,
        expect_events=system.events_exchange is not None,
    )
    _state, measured = await run_load(cfg, gen, source)
    report = {
        "config": {
            "url": system.url,
            "rate": args.rate,
            "duration_s": args.duration,
            "batch": args.batch,
        },
        **measured,
    }
    write_json(report, work / f"open-loop-{system.name}.json")
    write_png(report, work / f"open-loop-{system.name}.png")
    return report


def measure(args: argparse.Namespace, system: System, tenants_file: Path, work: Path) -> Result:
    """Start one system, measure idle / wrk / open loop, stop it."""
    result = Result(system.name, system.title)
    tenants = generate_tenants(args.tenants, seed=1)
    proc = procs.start(system.command, system.env, work / f"{system.name}.log")
    try:
        print(f"[{system.name}] starting: {' '.join(system.command)}", flush=True)
        procs.wait_ready(system.ready_url, proc, system.ready_timeout_s)
        time.sleep(3)
        result.rss_idle_mib = _mib(procs.tree_rss(proc.pid))
        gen = TrafficGenerator(tenants, args.conversations, batch=args.batch, seed=101)
        script = wrk.write_script(gen, args.wrk_bodies, work / f"wrk-{system.name}")
        drain = (
            RabbitSource(args.amqp_url, system.drain_exchange) if system.drain_exchange else None
        )
        loop = asyncio.new_event_loop()
        seen = {"events": 0, "last": time.perf_counter()}

        def count(_event: Any, at: float) -> None:
            seen["events"] += 1
            seen["last"] = at

        if drain is not None:  # keep published events flowing to a queue, not piling up
            loop.run_until_complete(drain.start(count))
            threading.Thread(target=loop.run_forever, daemon=True).start()
        wrk_started = time.perf_counter()
        print(f"[{system.name}] wrk {args.wrk_duration}s, {args.wrk_connections} conns", flush=True)
        with PeakRss(proc.pid) as peak:
            res = wrk.run(
                system.url, script, args.wrk_duration, args.wrk_connections, args.wrk_threads
            )
        result.rss_wrk_mib = _mib(peak.peak)
        result.wrk.update({k: v for k, v in asdict(res).items() if k != "raw"})
        if drain is not None:
            # Let the service publish what wrk got acknowledged (quiet for 3 s, at most
            # 180 s), so the open loop starts on an empty backlog; the time it takes is the
            # publish path's sustained rate.
            deadline = time.perf_counter() + 180
            while time.perf_counter() - seen["last"] < 3 and time.perf_counter() < deadline:
                time.sleep(0.2)
            span = max(seen["last"] - wrk_started, 1e-9)
            result.wrk["published_events"] = seen["events"]
            result.wrk["published_per_s"] = round(seen["events"] / span, 1)
            result.wrk["drain_after_wrk_s"] = round(
                seen["last"] - wrk_started - args.wrk_duration, 1
            )
            asyncio.run_coroutine_threadsafe(drain.stop(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
        print(f"[{system.name}] wrk: {res.requests_per_s:.0f} req/s {res.latency_ms}", flush=True)
        print(
            f"[{system.name}] open loop {args.rate:.0f} req/s for {args.duration:.0f}s", flush=True
        )
        gen = TrafficGenerator(tenants, args.conversations, batch=args.batch, seed=202)
        with PeakRss(proc.pid) as peak:
            result.open_loop = asyncio.run(_open_loop(args, system, gen, work))
        result.rss_open_mib = _mib(peak.peak)
        for line in verdict(result.open_loop):
            print(f"[{system.name}]   {line}", flush=True)
    except Exception as exc:  # noqa: BLE001 -- one failed system must not lose the others' numbers
        result.error = f"{type(exc).__name__}: {exc}"
        print(f"[{system.name}] FAILED: {result.error}", file=sys.stderr, flush=True)
    finally:
        service_pid = system.service_pid(proc)
        procs.stop(proc, service_pid, timeout_s=90)
    return result


def main_bench(args: argparse.Namespace) -> int:
    """Run the benchmark and print the comparison; write docs/benchmarks.md unless --no-doc."""
    run_id = f"{os.getpid()}"
    work = args.work_dir / time.strftime("%Y%m%d-%H%M%S")
    tenants_file = work / "tenants.json"
    write_tenants_file(generate_tenants(args.tenants, seed=1), tenants_file)
    chosen = [
        s
        for s in systems(args, run_id, tenants_file.resolve(), work)
        if s.name in args.systems.split(",")
    ]
    results: list[Result] = []
    try:
        for system in chosen:
            results.append(measure(args, system, tenants_file, work))
    finally:
        cleanup_broker(args.amqp_url, run_id)
        cleanup_redis(args.redis_url, run_id)
    text = render_results(args, results)
    print(text)
    write_json({"results": [asdict(r) for r in results]}, work / "bench.json")
    if not args.no_doc:
        update_doc(args.doc, text)
        print(f"wrote {args.doc}")
    return 1 if any(r.error for r in results) else 0
