"""The open-loop harness: send at a fixed arrival rate, consume what is published, account.

Open loop: delivery i is due at start + i/rate whatever happened to earlier ones, and its
ack latency is measured from that due time, so a slow server shows up as latency (and as
requests queued in the client), never as a politely lower offered rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from loadtest.accounting import Ledger
from loadtest.clients import open_poster
from loadtest.consumers import EventSource
from loadtest.cpu_sampler import CpuSampler
from loadtest.media_accounting import FileTally
from loadtest.sender import Attempt, MetaSender, RetryPolicy, SendResult
from loadtest.stats import Series, summarize
from loadtest.traffic import Delivery, TrafficGenerator


@dataclass(frozen=True, slots=True)
class RunConfig:
    """How hard, how long, and how patient."""

    url: str
    rate: float
    duration_s: float
    connections: int = 64
    timeout_s: float = 10.0
    client: str = "aiohttp"
    grace_s: float = 30.0  # give up once nothing new was published for this long
    max_drain_s: float = 600.0  # and in any case this long after the last answer
    max_inflight: int = 20_000
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    expect_dedup: bool = False
    expect_events: bool = True  # False: the target publishes nothing we can consume
    progress: bool = True
    # The media stream (loadtest/media_traffic.py): its own open loop at this rate,
    # starting this long after the text stream; both run until their deliveries are out.
    media_rate: float = 0.0
    media_start_s: float = 0.0
    cpu_roots: tuple[int, ...] = ()  # process trees whose CPU the report samples


@dataclass(slots=True)
class RunState:
    """Everything measured while the run goes on."""

    ledger: Ledger
    started: float = 0.0
    last_published: float = 0.0
    scheduled: int = 0
    skipped_overload: int = 0
    attempts: int = 0
    acked: int = 0
    failed: int = 0
    inflight: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    send_lag: Series = field(default_factory=Series)
    ack_latency: Series = field(default_factory=Series)
    ack_to_pub: Series = field(default_factory=Series)
    offered: Series = field(default_factory=Series)
    acks: Series = field(default_factory=Series)
    published: Series = field(default_factory=Series)
    ack_by_stream: dict[str, list[float]] = field(default_factory=dict)
    files: dict[str, FileTally] = field(default_factory=dict)

    def tally(self, stream: str) -> FileTally:
        """The stream's file tally (created on first use)."""
        return self.files.setdefault(stream, FileTally())


def _on_attempt(state: RunState, result: SendResult, attempt: Attempt) -> None:
    state.attempts += 1
    if attempt.outcome != "200":
        state.outcomes[attempt.outcome] += 1
    acked_at = attempt.started + attempt.seconds if attempt.outcome == "200" else None
    state.ledger.record_answer(result.delivery.keys, acked_at)
    stream = result.delivery.stream
    if len(result.attempts) == 1:
        state.tally(stream).sent(result.scheduled)
    if acked_at is not None:
        state.acked += 1
        state.ack_latency.add(acked_at - state.started, acked_at - result.scheduled)
        state.ack_by_stream.setdefault(stream, []).append(acked_at - result.scheduled)
        state.acks.add(acked_at - state.started)


def make_event_hook(state: RunState) -> Any:
    """The consumer callback: account the event, record its ack→published latency."""

    def on_event(event: dict[str, Any], at: float) -> None:
        key = state.ledger.record_published(event, at)
        if key is None:
            return
        state.published.add(at - state.started)
        state.last_published = at
        first = state.ledger.published[key] == 1
        if first:
            state.tally(state.ledger.stream(key)).observe(event, at)
        acked = state.ledger.first_ack.get(key)
        if acked is not None and first:
            state.ack_to_pub.add(at - state.started, max(0.0, at - acked))

    return on_event


async def _progress(state: RunState, cfg: RunConfig, out: TextIO) -> None:
    while True:
        await asyncio.sleep(1.0)
        elapsed = time.perf_counter() - state.started
        errors = sum(state.outcomes.values())
        line = (
            f"t={elapsed:5.1f}s offered={state.scheduled} acked={state.acked} "
            f"inflight={state.inflight} errors={errors} "
            f"published={sum(state.ledger.published.values())} "
            f"missing={state.ledger.missing()}"
        )
        out.write(("\r" if out.isatty() else "") + line + ("" if out.isatty() else "\n"))
        out.flush()


class _Dispatch:
    """Starts each delivery's send task at its due time and tracks those in flight."""

    def __init__(self, state: RunState, cfg: RunConfig, sender: MetaSender) -> None:
        self.state = state
        self.cfg = cfg
        self.sender = sender
        self.tasks: set[asyncio.Task[SendResult]] = set()

    def _done(self, task: asyncio.Task[SendResult]) -> None:
        self.tasks.discard(task)
        self.state.inflight -= 1
        if not task.cancelled() and task.exception() is None and not task.result().acked:
            self.state.failed += 1

    def _admit(self, due: float) -> bool:
        """Count the delivery as offered; False if the client is too loaded to send it."""
        state = self.state
        state.scheduled += 1
        state.offered.add(due - state.started)
        if state.inflight >= self.cfg.max_inflight:
            state.skipped_overload += 1  # the client, not the server, is the limit
            return False
        state.send_lag.add(due - state.started, max(0.0, time.perf_counter() - due))
        return True

    def _start(self, delivery: Delivery, due: float) -> None:
        state = self.state
        task = asyncio.create_task(
            self.sender.send(
                delivery,
                due,
                lambda r, a: _on_attempt(state, r, a),
                lambda d: state.ledger.record_sending(d.keys),
            )
        )
        state.inflight += 1
        self.tasks.add(task)
        task.add_done_callback(self._done)

    async def send_all(
        self, deliveries: list[Delivery], rate: float | None = None, offset_s: float = 0.0
    ) -> None:
        """Open loop: delivery i goes out at started + offset_s + i/rate, whatever came
        before (rate: the config's)."""
        per_s = rate or self.cfg.rate
        for i, delivery in enumerate(deliveries):
            due = self.state.started + offset_s + i / per_s
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._admit(due):
                self._start(delivery, due)

    async def wait_answered(self) -> None:
        """Until every started send has its final answer."""
        if self.tasks:
            await asyncio.wait(set(self.tasks))


async def _drain(state: RunState, cfg: RunConfig) -> None:
    """Wait for what is still to be published once every request has been answered."""
    # Lost means "never published while the service was still publishing": wait as
    # long as new events keep arriving, until grace_s passes without one.
    answered = time.perf_counter()
    hard_deadline = answered + (cfg.max_drain_s if cfg.expect_events else 0.0)
    while state.ledger.missing() and time.perf_counter() < hard_deadline:
        if time.perf_counter() - max(state.last_published, answered) > cfg.grace_s:
            break
        await asyncio.sleep(0.05)
    # A little longer, so late duplicates are seen too.
    if cfg.expect_events:
        await asyncio.sleep(1.0)


async def _stop_progress(progress: asyncio.Task[None] | None, out: TextIO) -> None:
    if progress is None:
        return
    progress.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await progress
    out.write("\n")


async def run_load(
    cfg: RunConfig,
    generator: TrafficGenerator,
    source: EventSource,
    out: TextIO = sys.stderr,
    media: list[Delivery] | None = None,
) -> tuple[RunState, dict[str, Any]]:
    """Run one test; returns the raw state and the report's measurement section.

    `media` (loadtest/media_traffic.py) is sent as a second open loop at cfg.media_rate
    beside the generator's deliveries, its keys accounted as the media stream."""
    total = int(cfg.rate * cfg.duration_s)
    deliveries: list[Delivery] = [generator.next_delivery() for _ in range(total)]
    state = RunState(ledger=Ledger(expect_dedup=cfg.expect_dedup))
    for delivery in media or ():
        state.ledger.assign(delivery.keys, delivery.stream)
    cpu = CpuSampler(list(cfg.cpu_roots))
    await cpu.start()
    await source.start(make_event_hook(state))
    progress: asyncio.Task[None] | None = None
    async with open_poster(cfg.client, cfg.connections, cfg.timeout_s) as post:
        sender = MetaSender(post, cfg.url, cfg.retry, connections=cfg.connections)
        dispatch = _Dispatch(state, cfg, sender)
        state.started = time.perf_counter()
        if cfg.progress:
            progress = asyncio.create_task(_progress(state, cfg, out))
        loops = [dispatch.send_all(deliveries)]
        if media:
            loops.append(dispatch.send_all(media, cfg.media_rate or cfg.rate, cfg.media_start_s))
        await asyncio.gather(*loops)
        send_window = time.perf_counter() - state.started
        await dispatch.wait_answered()
        last_ack = time.perf_counter() - state.started
        await _drain(state, cfg)
        await _stop_progress(progress, out)
    await source.stop()
    await cpu.stop()
    report = measurements(cfg, state, send_window, last_ack, generator)
    report.update(stream_measurements(state, cpu))
    return state, report


def stream_measurements(state: RunState, cpu: CpuSampler) -> dict[str, Any]:
    """Per stream: ack latency, ack→published, loss and files; CPU over the run and over
    each file stream's span (first sent → last published), with files per CPU second."""
    by_stream = state.ledger.streams()
    streams: dict[str, Any] = {}
    for name in sorted(set(by_stream) | set(state.ack_by_stream)):
        streams[name] = {
            **by_stream.get(name, {}),
            "ack_latency_ms": summarize(state.ack_by_stream.get(name, [])),
        }
    files: dict[str, Any] = {}
    for name, tally in sorted(state.files.items()):
        if not tally.files:
            continue
        files[name] = tally.report()
        if tally.first_sent is not None and tally.last_published is not None:
            window = cpu.window(tally.first_sent, tally.last_published)
            files[name]["cpu"] = window
            if window is not None and window["cpu_s"]:
                cpu_s = float(window["cpu_s"])
                files[name]["files_per_cpu_s"] = round(tally.files / cpu_s, 2)
                files[name]["downloaded_mb_per_cpu_s"] = round(
                    tally.bytes_downloaded / 1e6 / cpu_s, 2
                )
    run_cpu = cpu.window(state.started, cpu.samples[-1].at) if cpu.samples else None
    return {"streams": streams, "files": files, "cpu": {"roots": cpu.roots, "run": run_cpu}}


def measurements(
    cfg: RunConfig,
    state: RunState,
    send_window: float,
    last_ack: float,
    generator: TrafficGenerator,
) -> dict[str, Any]:
    """The report's numbers (JSON-ready)."""
    summary = state.ledger.summary()
    ack_values = [v for b in state.ack_latency.buckets.values() for v in b]
    seconds = max(int(cfg.duration_s) + 1, state.acks.span, state.published.span)
    drain = max(0.0, state.last_published - state.started - last_ack)
    return {
        "events_consumed": cfg.expect_events,
        "publish_drain_s": round(drain, 2) if state.last_published else None,
        "rates": {
            "offered_rps": round(state.scheduled / cfg.duration_s, 1),
            "sent_rps": round((state.scheduled - state.skipped_overload) / send_window, 1),
            "achieved_rps": round(state.acked / max(last_ack, 1e-9), 1),
            "published_eps": round(summary.published_events / max(state.published.span, 1), 1),
        },
        "requests": {
            "scheduled": state.scheduled,
            "skipped_client_overload": state.skipped_overload,
            "attempts": state.attempts,
            "acked": state.acked,
            "failed_after_retries": state.failed,
            "errors_by_status": dict(state.outcomes),
            "send_lag_ms": summarize(v for b in state.send_lag.buckets.values() for v in b),
        },
        "ack_latency_ms": summarize(ack_values),
        "ack_to_published_ms": summarize(state.ledger.ack_to_published().values()),
        "events": asdict(summary),
        "traffic": asdict(generator.stats),
        "series": {
            "second": list(range(seconds)),
            "offered": state.offered.counts(seconds),
            "acked": state.acks.counts(seconds),
            "published": state.published.counts(seconds),
            "ack_p50_ms": state.ack_latency.quantile(seconds, 50),
            "ack_p99_ms": state.ack_latency.quantile(seconds, 99),
            "pub_p50_ms": state.ack_to_pub.quantile(seconds, 50),
            "pub_p99_ms": state.ack_to_pub.quantile(seconds, 99),
        },
    }
