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
import time
from pathlib import Path

import structlog

from cluster.settings import Settings
from cluster.wiring import Wiring

RAY_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # The CLI's own process must not print Ray's usage-stats prompt.
    "RAY_USAGE_STATS_ENABLED": "0",
}

log = structlog.get_logger("runner")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clear_stale_run(pidfile: Path) -> None:
    """End what a previous `make run` left behind (after kill -9), by its process group."""
    if not pidfile.exists():
        return
    try:
        pgid = int(pidfile.read_text().split()[0])
    except (ValueError, IndexError):
        pidfile.unlink(missing_ok=True)
        return
    if pgid != os.getpgid(0):
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                continue
            break
        log.info("cleared_stale_run", pgid=pgid)
    pidfile.unlink(missing_ok=True)


def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM, then drain and shut down what this process started."""
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    wiring = Wiring.from_settings(settings)
    wiring.data_dir.mkdir(parents=True, exist_ok=True)
    pidfile = wiring.data_dir / "run.pid"
    clear_stale_run(pidfile)
    # Own process group, so a later run can clean up after a kill -9 of this one.
    with contextlib.suppress(PermissionError):
        os.setpgid(0, 0)
    pidfile.write_text(f"{os.getpgid(0)}\n")

    import ray
    from ray import serve

    from cluster.serve_app import APP_NAME, build_application

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    started_ray = not ray.is_initialized() and settings.ray_address is None
    ray.init(
        address=settings.ray_address,
        namespace="wa-ingest",
        num_cpus=settings.ray_num_cpus,
        include_dashboard=False if settings.ray_address is None else None,
        log_to_driver=True,
    )
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(
            build_application(wiring, settings.ingress_replicas),
            name=APP_NAME,
            route_prefix="/",
        )
        log.info(
            "serving",
            url=f"http://{settings.host}:{settings.port}/webhook",
            inbox="redis" if wiring.redis_url else f"sqlite:{wiring.data_dir / 'inbox.db'}",
            publisher="rabbitmq" if wiring.rabbitmq_url else f"outbox:{wiring.outbox_path}",
            shards=wiring.partitions,
        )
        print(f"serving on http://{settings.host}:{settings.port}  (Ctrl-C drains and stops)",
              flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        log.info("draining")
        with contextlib.suppress(Exception):
            serve.delete(APP_NAME)  # replicas finish in-flight requests; shards drain
        with contextlib.suppress(Exception):
            serve.shutdown()
        if started_ray:
            ray.shutdown()
        pidfile.unlink(missing_ok=True)
        log.info("stopped")
