"""`make run`: start (or join) Ray, deploy the Serve app, stay in the foreground, drain on exit.

Two processes: `run` is the supervisor (cluster/supervisor.py: signals, reaping, the pid
file, the shutdown deadline) and `drive`, started by it in a session of its own as
`python -m cluster.runner`, is the Ray driver.

Ray reads the Serve ingress flags when its processes start, so they are set here before
Ray is imported. HAProxy is Serve's C ingress: measured ~10x the Python proxy's
throughput on 2 cores (see ARCHITECTURE.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import NoReturn

import structlog

from cluster import process_tree
from cluster.backends import check_inbox_durability, check_publisher_topology
from cluster.layout import check_layout
from cluster.logging import configure_logging
from cluster.placement import unplaceable
from cluster.settings import Settings, SettingsError
from cluster.supervisor import RECORD_NOW, die_with_parent
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


def supervisor_args(pidfile: Path, settings: Settings) -> list[str]:
    """The command line of `python -m cluster.supervisor`, up to the driver's command."""
    return [
        "--pidfile",
        str(pidfile),
        "--timeout",
        str(settings.shutdown_timeout_s),
        "--log-level",
        settings.log_level,
        "--",
    ]


def run(settings: Settings) -> NoReturn:
    """`python -m cluster run`: check the stores, clear a stale run, become the supervisor.

    Its exit code is the supervisor's (cluster/supervisor.py says which).
    """
    wiring = Wiring.from_settings(settings)
    # One Redis round trip before anything starts: refuses a store that can lose or evict
    # acknowledged appends in production (docs/redis.md), and an unusable WAITAOF anywhere.
    check_inbox_durability(wiring.inbox)
    # The broker's exchanges and queues declared once: one declared with other arguments
    # refuses the start (every publish would fail so); a broker down is only logged.
    check_publisher_topology(wiring.publisher)
    wiring.data_dir.mkdir(parents=True, exist_ok=True)
    pidfile = wiring.data_dir / "run.pid"
    clear_stale_run(pidfile)
    # The partitions' layout against WA_SHARDS: entries placed for another count refuse
    # the start (cluster/layout.py) rather than be left unread (docs/resharding.md). After
    # the earlier run of this data dir is ended: its ingress, still accepting under the
    # old count, could otherwise append behind a check that found the inbox empty.
    check_layout(wiring.inbox, wiring.partitions)
    driver = [sys.executable, "-m", "cluster.runner", "--parent", str(os.getpid())]
    sys.stdout.flush()
    sys.stderr.flush()
    # The supervisor lives as long as the service: a fresh interpreter that imports only
    # cluster/supervisor.py (measured ~29 MiB resident, the CLI with every command's
    # imports ~114 MiB). Same pid, so it stays make's child or the container's PID 1.
    os.execv(  # noqa: S606 -- this interpreter and our own module, argv without a shell
        sys.executable,
        [sys.executable, "-m", "cluster.supervisor", *supervisor_args(pidfile, settings), *driver],
    )


def _head_alive() -> bool:
    """Whether the GCS and raylet this process started are still running.

    Without them nothing can drain: `serve.delete` would wait for a controller that
    cannot answer until the core worker gives up on the GCS (60 s). The handles are Ray's
    own Popen objects for the processes `ray.init` started (ray/_private/node.py).
    """
    from ray._private import ray_constants, worker

    node = worker._global_node
    if node is None:
        return False
    kinds = (ray_constants.PROCESS_TYPE_GCS_SERVER, ray_constants.PROCESS_TYPE_RAYLET)
    return all(
        info.process.poll() is None for kind in kinds for info in node.all_processes.get(kind, [])
    )


def _exit_now(code: int, event: str) -> None:
    """Leave without Ray's atexit `ray.shutdown()`, which would wait for the dead GCS too;
    the supervisor ends what is left."""
    log.warning(event)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _drain(app_name: str, started_ray: bool) -> None:
    """serve.delete, unless (or until) the Ray this process started is gone."""
    from ray import serve

    if started_ray and not _head_alive():
        _exit_now(0, "drain_skipped")  # the signal reached Ray's own processes too

    # Replicas finish in-flight requests; the pool drains its shards (publish and commit
    # the batch in hand). Serve itself is left to ray.shutdown(), or running on a cluster
    # this process joined. In a thread, so that a Ray dying meanwhile is noticed; the
    # supervisor's deadline bounds a delete that never returns.
    def delete() -> None:
        with contextlib.suppress(Exception):  # an app that never started: nothing to drain
            serve.delete(app_name)

    deleting = threading.Thread(target=delete, name="drain", daemon=True)
    deleting.start()
    while deleting.is_alive():
        deleting.join(0.2)
        if started_ray and deleting.is_alive() and not _head_alive():
            _exit_now(0, "drain_abandoned")
    log.info("app_deleted")


def drive(settings: Settings, parent: int) -> None:
    """Serve until SIGINT/SIGTERM, then drain and shut down the Ray this process started."""
    die_with_parent(parent)
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    wiring = Wiring.from_settings(settings)

    import ray
    from ray import serve

    from cluster.serve_app import APP_NAME, build_application

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("drain_requested", signal=signal.Signals(signum).name)
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
    # Before anything is deployed: an actor that no live node fits waits for one, with no
    # error, its partitions unread. On the Ray this process started no node will come:
    # refused (exit 2). On a joined cluster an autoscaler may add the nodes: a warning.
    placement, scaling = settings.placement_spec(), settings.ingress_scaling()
    short = unplaceable(
        placement,
        ray.nodes(),  # type: ignore[no-untyped-call]
        shards=wiring.partitions,
        media_workers=settings.media_workers,
        ingress_replicas=scaling.replicas,
    )
    if short and started_ray:
        raise SettingsError("; ".join(short))
    if short:
        log.warning("placement_waits_for_nodes", problems=short)
    # After ray.init: it installs a SIGTERM handler that exits at once, skipping the drain.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        serve.start(
            http_options={"host": settings.host, "port": settings.port},
            proxy_location=settings.proxy_location,
        )
        serve.run(
            build_application(wiring, scaling, placement),
            name=APP_NAME,
            route_prefix="/",
        )
        os.kill(parent, RECORD_NOW)  # HAProxy has just been started: record it now
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
            if started_ray and not _head_alive():
                _exit_now(1, "ray_died")  # nothing left to serve with: the supervisor ends the rest
    finally:
        log.info("draining")
        _drain(APP_NAME, started_ray)
        if started_ray:
            ray.shutdown()
            log.info("ray_stopped")


def main() -> int:
    """`python -m cluster.runner --parent PID`: the driver, started by the supervisor."""
    parser = argparse.ArgumentParser(prog="python -m cluster.runner", description=drive.__doc__)
    parser.add_argument("--parent", type=int, required=True, help="the supervisor's pid")
    args = parser.parse_args()
    try:
        settings = Settings()
        configure_logging(settings.log_level)
        drive(settings, args.parent)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
