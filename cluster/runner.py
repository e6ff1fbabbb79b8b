"""`make run`: start (or join) Ray, deploy the Serve app, stay in the foreground, drain on exit.

Ray reads the Serve ingress flags when its processes start, so they are set here before
Ray is imported. HAProxy is Serve's C ingress: measured ~10x the Python proxy's
throughput on 2 cores (see ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

import structlog

from cluster import process_tree
from cluster.backends import check_inbox_durability
from cluster.settings import Settings
from cluster.wiring import Wiring

RAY_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # The CLI's own process must not print Ray's usage-stats prompt.
    "RAY_USAGE_STATS_ENABLED": "0",
    # How long a deleted ingress replica keeps serving while HAProxy stops routing to it.
    # Serve's default, 30 s, is for multi-node fleets; one local HAProxy reloads in well
    # under a second, and in-flight requests still finish (graceful_shutdown_timeout_s).
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
}

log = structlog.get_logger("runner")


def clear_stale_run(pidfile: Path) -> None:
    """End what a previous run left behind (after kill -9): the processes it recorded."""
    procs = process_tree.load(pidfile)
    if procs:
        ended = process_tree.end(procs)
        if ended:
            log.info("cleared_stale_run", processes=ended)
    pidfile.unlink(missing_ok=True)


def _record_forever(pidfile: Path, stop: threading.Event, now: threading.Event) -> None:
    """Keep the pidfile current: Ray starts workers and reloads HAProxy while it runs.

    Every 0.5 s (a psutil scan of ~90 processes costs ~7.5 ms of CPU), and at once when
    `now` is set (right after the deployment is up, when HAProxy has just been started): a
    kill -9 can only miss a process started in the last half second.
    """
    procs: list[process_tree.Proc] = []
    while True:
        procs = process_tree.record(pidfile, os.getpid(), procs)
        if now.wait(0.5):
            now.clear()
        if stop.is_set():
            return


def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM, then drain and shut down what this process started."""
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    wiring = Wiring.from_settings(settings)
    # One Redis round trip before anything starts: refuses a store that can lose or evict
    # acknowledged appends in production (docs/redis.md), and an unusable WAITAOF anywhere.
    check_inbox_durability(wiring.inbox)
    wiring.data_dir.mkdir(parents=True, exist_ok=True)
    pidfile = wiring.data_dir / "run.pid"
    clear_stale_run(pidfile)

    import ray
    from ray import serve

    from cluster.serve_app import APP_NAME, build_application

    stop = threading.Event()
    recorder_stop = threading.Event()
    record_now = threading.Event()
    recorder = threading.Thread(
        target=_record_forever,
        args=(pidfile, recorder_stop, record_now),
        name="pidfile",
        daemon=True,
    )
    recorder.start()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop.set()

    started_ray = not ray.is_initialized() and settings.ray_address is None
    if settings.ray_address is None:
        ray.init(
            namespace="wa-ingest",
            log_to_driver=True,
            num_cpus=settings.ray_num_cpus,
            include_dashboard=settings.ray_dashboard,
            dashboard_host="127.0.0.1",
            dashboard_port=settings.ray_dashboard_port,
            _metrics_export_port=settings.ray_metrics_port,
        )
    else:  # the cluster's own options (dashboard, metrics port) were set when it started
        ray.init(address=settings.ray_address, namespace="wa-ingest", log_to_driver=True)
    # After ray.init: it installs a SIGTERM handler that exits at once, skipping the drain.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(
            build_application(wiring, settings.ingress_replicas),
            name=APP_NAME,
            route_prefix="/",
        )
        record_now.set()
        log.info(
            "serving",
            url=f"http://{settings.host}:{settings.port}/webhook",
            **wiring.describe(),
            shards=wiring.partitions,
        )
        print(
            f"serving on http://{settings.host}:{settings.port}  (Ctrl-C drains and stops)",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        log.info("draining")
        with contextlib.suppress(Exception):
            # Replicas finish in-flight requests; the pool drains its shards (publish and
            # commit the batch in hand). Serve itself is left to ray.shutdown() below, or
            # running on a cluster this process joined.
            serve.delete(APP_NAME)
        log.info("app_deleted")
        if started_ray:
            ray.shutdown()
            log.info("ray_stopped")
        recorder_stop.set()
        record_now.set()
        recorder.join()
        # Whatever this run started and Ray left running (agents, HAProxy) ends here.
        process_tree.end(process_tree.load(pidfile))
        pidfile.unlink(missing_ok=True)
        log.info("stopped")
