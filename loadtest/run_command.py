"""`python -m loadtest run`: one open-loop test against a URL, with JSON and PNG reports."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from cluster.process_tree import load as load_procs
from loadtest.consumers import EventSource, OutboxSource, RabbitSource
from loadtest.harness import RunConfig, run_load
from loadtest.media_traffic import (
    MEDIA_KINDS,
    SAMPLE_DISPLAY_NUMBER,
    SAMPLE_PHONE_NUMBER_ID,
    SAMPLE_WABA_ID,
    GraphTarget,
    MediaSender,
    load_spec,
    media_deliveries,
    upload_many,
)
from loadtest.report import verdict, write_json, write_png
from loadtest.sender import RetryPolicy
from loadtest.tenants import DEV_APP_SECRET, SimTenant, generate_tenants, load_tenants_file
from loadtest.traffic import Delivery, TrafficGenerator


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `run` (also used by `bench` for its open-loop phase)."""
    parser.add_argument("--url", default="http://127.0.0.1:8000/webhook")
    parser.add_argument("--rate", type=float, default=100.0, help="POSTs per second (open loop)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    parser.add_argument("--tenants", type=int, default=2, help="generated tenants")
    parser.add_argument(
        "--tenants-file",
        type=Path,
        default=None,
        help="the service's WA_TENANTS_FILE: sign with its secrets",
    )
    parser.add_argument(
        "--app-secret",
        default=DEV_APP_SECRET,
        help="secret of generated tenants (the service's WA_APP_SECRET)",
    )
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1, help="items per POST")
    parser.add_argument("--dup-rate", type=float, default=0.0, help="share of duplicate POSTs")
    parser.add_argument(
        "--reorder-rate",
        type=float,
        default=0.0,
        help="share of outbound messages whose statuses arrive swapped",
    )
    parser.add_argument(
        "--field-rate",
        type=float,
        default=0.0,
        help="share of items that are template/account field events",
    )
    parser.add_argument("--seed", type=int, default=0, help="0: a fresh random run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--client",
        choices=("aiohttp", "httpx"),
        default="aiohttp",
        help="HTTP client (httpx is ~10x costlier per request here)",
    )
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--max-attempts", type=int, default=4, help="Meta-style retries")
    parser.add_argument("--retry-base", type=float, default=0.5, help="first retry delay (s)")
    parser.add_argument(
        "--grace", type=float, default=30.0, help="seconds to wait for acked events to be published"
    )
    parser.add_argument(
        "--max-drain",
        type=float,
        default=600.0,
        help="longest wait for publication after the last answer (s)",
    )
    parser.add_argument("--amqp-url", default=None, help="consume from RabbitMQ")
    parser.add_argument("--exchange", default="whatsapp.events")
    parser.add_argument(
        "--bind", action="append", default=None, help="binding key(s), default '#'; e.g. 'acme.#'"
    )
    parser.add_argument(
        "--outbox",
        type=Path,
        default=Path("var/outbox.db"),
        help="the embedded outbox to tail when no --amqp-url",
    )
    parser.add_argument(
        "--expect-dedup",
        action="store_true",
        help="the service deduplicates: any re-publication is unexpected",
    )
    parser.add_argument(
        "--metrics-url",
        default=None,
        help="Prometheus endpoint to snapshot (default: <url origin>/metrics)",
    )
    parser.add_argument("--report-dir", type=Path, default=Path("var/loadtest"))
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--text-only",
        action="store_true",
        help="the --rate stream sends text messages (and their statuses) only",
    )
    parser.add_argument(
        "--cpu-pid",
        type=int,
        action="append",
        default=None,
        help="sample the CPU of this process tree (the service's runner; repeatable)",
    )
    parser.add_argument(
        "--cpu-pid-file",
        type=Path,
        default=None,
        help="sample the tree of the runner recorded there (the service's WA_DATA_DIR/run.pid)",
    )
    add_media_arguments(parser)


def add_media_arguments(parser: argparse.ArgumentParser) -> None:
    """The media stream's flags (loadtest/media_traffic.py)."""
    media = parser.add_argument_group(
        "media stream",
        "real files: --media-file is uploaded under --media-count distinct media ids to "
        "the Graph API (the simulator) before the run, then one media message per id is "
        "sent at --media-rate beside the --rate stream",
    )
    media.add_argument("--media-rate", type=float, default=0.0, help="media POSTs per second")
    media.add_argument(
        "--media-count", type=int, default=None, help="media messages (default: rate x duration)"
    )
    media.add_argument("--media-file", type=Path, default=None, help="e.g. an MP4 from ffmpeg")
    media.add_argument(
        "--media-type", choices=MEDIA_KINDS, default=None, help="default: from the MIME type"
    )
    media.add_argument("--media-mime", default=None, help="default: from the file's extension")
    media.add_argument(
        "--media-start", type=float, default=0.0, help="seconds after the text stream starts"
    )
    media.add_argument(
        "--media-conversations",
        type=int,
        default=0,
        help="customers the media messages come from (0: one each)",
    )
    media.add_argument("--graph-url", default="http://127.0.0.1:8900", help="the Graph API")
    media.add_argument("--graph-token", default=None, help="the tenant's Graph token")
    media.add_argument("--graph-version", default="v23.0")
    media.add_argument("--phone-number-id", default=SAMPLE_PHONE_NUMBER_ID)
    media.add_argument("--display-phone-number", default=SAMPLE_DISPLAY_NUMBER)
    media.add_argument("--waba-id", default=SAMPLE_WABA_ID)
    media.add_argument("--upload-concurrency", type=int, default=4)


async def media_stream(args: argparse.Namespace, tenants: list[SimTenant]) -> list[Delivery]:
    """Upload the media file under distinct ids and build one signed message per id
    (empty without --media-rate)."""
    if not args.media_rate:
        return []
    if args.media_file is None or args.graph_token is None:
        raise SystemExit("--media-rate needs --media-file and --graph-token")
    spec = load_spec(args.media_file, args.media_type, args.media_mime)
    count = args.media_count or int(args.media_rate * args.duration)
    target = GraphTarget(args.graph_url, args.graph_token, args.phone_number_id, args.graph_version)
    began = time.perf_counter()
    ids = await upload_many(target, spec, count, args.upload_concurrency)
    print(
        f"uploaded {spec.file_name} ({spec.mime_type}, {len(spec.content)} bytes) "
        f"{count} times in {time.perf_counter() - began:.1f} s",
        file=sys.stderr,
    )
    # The number's tenant signs (a tenants file's owner), else the shared --app-secret.
    owner = next(
        (t for t in tenants if any(n.phone_number_id == args.phone_number_id for n in t.numbers)),
        None,
    )
    sender = MediaSender(
        owner.id if owner else "default",
        owner.secret_bytes if owner else args.app_secret.encode(),
        args.phone_number_id,
        args.display_phone_number,
        args.waba_id,
    )
    nonce = f"{args.seed:08x}"[-8:] if args.seed else f"{int(time.time()) % 10**8:08d}"
    return media_deliveries(
        spec, ids, sender, nonce=nonce, ts=int(time.time()), conversations=args.media_conversations
    )


def sim_tenants(args: argparse.Namespace) -> list[SimTenant]:
    """The tenants to sign for: the service's file, else generated with one secret."""
    if args.tenants_file is not None:
        return load_tenants_file(args.tenants_file)
    return generate_tenants(args.tenants, seed=args.seed, shared_secret=args.app_secret)


def event_source(args: argparse.Namespace) -> EventSource:
    """RabbitMQ when --amqp-url is given, else the embedded outbox."""
    if args.amqp_url:
        return RabbitSource(args.amqp_url, args.exchange, tuple(args.bind or ["#"]))
    return OutboxSource(args.outbox)


def metrics_snapshot(url: str, limit: int = 400) -> dict[str, Any]:
    """The service's Prometheus samples (not comments), or why there are none."""
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError as exc:
        return {"url": url, "error": type(exc).__name__}
    if response.status_code != 200:
        return {"url": url, "error": f"HTTP {response.status_code}"}
    samples = [line for line in response.text.splitlines() if line and not line.startswith("#")]
    return {"url": url, "samples": samples[:limit], "truncated": len(samples) > limit}


def cpu_roots(args: argparse.Namespace) -> tuple[int, ...]:
    """The process trees to sample: --cpu-pid, and the runner --cpu-pid-file names."""
    roots = list(args.cpu_pid or ())
    if args.cpu_pid_file is not None:
        recorded = load_procs(args.cpu_pid_file)
        if not recorded:
            raise SystemExit(f"no runner recorded in {args.cpu_pid_file}")
        roots.append(recorded[0][0])  # the runner comes first, its descendants after
    return tuple(roots)


async def run_test(args: argparse.Namespace) -> dict[str, Any]:
    """Run one test as the flags say and return the full report."""
    tenants = sim_tenants(args)
    generator = TrafficGenerator(
        tenants,
        args.conversations,
        batch=args.batch,
        dup_rate=args.dup_rate,
        reorder_rate=args.reorder_rate,
        field_rate=args.field_rate,
        seed=args.seed,
        message_weights={"text": 1} if args.text_only else None,
    )
    media = await media_stream(args, tenants)
    cfg = RunConfig(
        url=args.url,
        rate=args.rate,
        duration_s=args.duration,
        connections=args.connections,
        timeout_s=args.timeout,
        grace_s=args.grace,
        max_drain_s=args.max_drain,
        expect_dedup=args.expect_dedup,
        retry=RetryPolicy(max_attempts=args.max_attempts, base_s=args.retry_base),
        progress=not args.no_progress,
        media_rate=args.media_rate,
        media_start_s=args.media_start,
        cpu_roots=cpu_roots(args),
    )
    started = time.time()
    _state, measured = await run_load(cfg, generator, event_source(args), media=media)
    origin = urlsplit(args.url)
    metrics_url = args.metrics_url or f"{origin.scheme}://{origin.netloc}/metrics"
    config = {k: v for k, v in asdict(cfg).items() if k != "retry"}
    config.update(
        retry=asdict(cfg.retry),
        batch=args.batch,
        tenants=[t.id for t in tenants],
        conversations=args.conversations,
        dup_rate=args.dup_rate,
        reorder_rate=args.reorder_rate,
        field_rate=args.field_rate,
        text_only=args.text_only,
        media=(
            {
                "file": str(args.media_file),
                "type": args.media_type,
                "count": len(media),
                "rate": args.media_rate,
                "start_s": args.media_start,
                "graph_url": args.graph_url,
            }
            if media
            else None
        ),
        consumer=f"rabbitmq:{args.exchange}" if args.amqp_url else f"outbox:{args.outbox}",
    )
    return {
        "started_at": started,
        "config": config,
        **measured,
        "metrics": metrics_snapshot(metrics_url),
    }


def finish(report: dict[str, Any], report_dir: Path, name: str = "report") -> int:
    """Write the reports, print the verdict; exit 1 on loss, order breaks or surprises."""
    write_json(report, report_dir / f"{name}.json")
    write_png(report, report_dir / f"{name}.png")
    for line in verdict(report):
        print(line)
    print(f"reports: {report_dir / (name + '.json')} {report_dir / (name + '.png')}")
    ev = report["events"]
    bad = report.get("events_consumed", True) and (
        ev["lost"]
        or ev["order_violations"]
        or ev["unexpected_duplicates"]
        or ev.get("repeated_created", 0)  # a second conversation.created with a new id
    )
    return 1 if bad else 0


def main_run(args: argparse.Namespace) -> int:
    """Entry point of `python -m loadtest run`."""
    import asyncio

    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        report = runner.run(run_test(args))
    return finish(report, args.report_dir)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python -m loadtest run ...")
