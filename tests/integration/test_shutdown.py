"""Shutdown of `python -m cluster run` under every signal a new user's setup sends.

Each case starts the real service (as `make run` does) in a fresh process group with its
data in a tmp dir and its own ports, on Redis and RabbitMQ, has a signed webhook accepted,
then signals it the way one kind of supervisor does: a terminal or `kill PID` (the runner
alone), `kill -- -PGID` and GNU make (the process group), systemd's default
`KillMode=control-group` (every process the run started, Ray's own included), and
`docker stop` (the container's PID 1, here a real PID namespace from `unshare`). Each
asserts the run ended within WA_SHUTDOWN_TIMEOUT_S, that no process of its tree is alive
and that nothing listens on its ports (the webhook port, Serve's HAProxy stats and
metrics ports 8404 and 9101, the dashboard's, and every port Ray's processes listened on).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from cluster import process_tree
from tests.conftest import RABBITMQ_URL, REDIS_URL, _delete_exchange
from tests.support.app import signed
from tests.support.bodies import envelope, messages_value, text_message
from tests.support.service import ROOT, free_port

pytestmark = [pytest.mark.ray, pytest.mark.redis, pytest.mark.rabbitmq]

SECRET = "shutdown-secret"
TIMEOUT_S = 30.0  # WA_SHUTDOWN_TIMEOUT_S's default, what every case below runs with
SERVE_FIXED_PORTS = (8404, 9101)  # Serve's HAProxy stats and metrics ports (not settable)


@dataclass
class Run:
    """A started `python -m cluster run` (the test's child, leader of its process group)."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    log: Path
    port: int
    dashboard_port: int
    tree: list[process_tree.Proc] = field(default_factory=list)
    ports: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, lines: int = 40) -> str:
        """The end of the run's log."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout_s: float = 240) -> None:
        """Until /readyz answers 200 after the run's own "serving on" line."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exited {self.process.returncode}:\n{self.tail()}")
            if "serving on" in self.log.read_text(errors="replace"):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                        return
            time.sleep(0.5)
        raise AssertionError(f"not ready after {timeout_s}s:\n{self.tail()}")

    def snapshot(self) -> None:
        """Record the run's process tree (host pids) and every port it listens on."""
        self.tree = sorted(set(process_tree.descendants(self.process.pid)) | set(self.recorded()))
        pids = {pid for pid, _ in self.tree} | {self.process.pid}
        self.ports = {self.port, self.dashboard_port, *SERVE_FIXED_PORTS}
        self.ports |= {port for port, pid in listening().items() if pid in pids}

    def recorded(self) -> list[process_tree.Proc]:
        """What the runner recorded in run.pid (its own pid namespace's pids)."""
        return process_tree.load(self.data_dir / "run.pid")

    def left_behind(self) -> tuple[list[process_tree.Proc], dict[int, int | None]]:
        """Processes of the snapshot still alive, and the run's ports someone listens on."""
        alive = [proc for proc in self.tree if process_tree.alive(proc)]
        return alive, {port: pid for port, pid in listening().items() if port in self.ports}

    def cleanup(self) -> None:
        """End whatever of this run is still alive (by the pids recorded, never by name)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        process_tree.end([*self.tree, *self.recorded()], grace_s=2)


def listening() -> dict[int, int | None]:
    """Every TCP port something listens on, with the pid holding it (None if unknown)."""
    found: dict[int, int | None] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr:
            found[conn.laddr.port] = conn.pid
    return found


def start(data_dir: Path, env: dict[str, str], pid_namespace: bool = False) -> Run:
    """`python -m cluster run` in a new process group (and, for PID 1, a new PID namespace)."""
    port, dashboard_port = free_port(), free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "service.log"
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WA_")},
        "WA_HOST": "127.0.0.1",
        "WA_PORT": str(port),
        "WA_DATA_DIR": str(data_dir),
        "WA_SHARDS": "2",
        "WA_RAY_DASHBOARD_PORT": str(dashboard_port),
        "WA_LOG_LEVEL": "INFO",
        "WA_APP_SECRET": SECRET,
        "WA_TENANT_ID": "acme",
        **env,
    }
    command = [sys.executable, "-m", "cluster", "run"]
    if pid_namespace:
        # A container's PID 1: the runner is init of its own PID namespace (`--mount-proc`
        # so that /proc, which psutil reads, is the namespace's). unshare waits for it.
        command = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *command]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Run(process, data_dir, log, port, dashboard_port)


def accept_one(run: Run) -> None:
    """A signed webhook, answered 200 accepted (it is in the inbox)."""
    body = envelope(("messages", messages_value([text_message("wamid.shutdown", "16505550001")])))
    raw, headers = signed(body, SECRET)
    response = httpx.post(f"{run.url}/webhook", content=raw, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"


@pytest.fixture
def stores(redis_prefix: str) -> Iterator[dict[str, str]]:
    """Redis (a prefix of its own) and RabbitMQ (an exchange of its own) for one run."""
    exchange = f"watest.{uuid.uuid4().hex[:12]}"
    yield {
        "WA_REDIS_URL": REDIS_URL,
        "WA_REDIS_PREFIX": redis_prefix,
        "WA_RABBITMQ_URL": RABBITMQ_URL,
        "WA_RABBITMQ_EXCHANGE": exchange,
    }
    asyncio.run(_delete_exchange(exchange))


def stop_and_measure(run: Run, send: object, timeout_s: float = TIMEOUT_S) -> float:
    """Signal the run with `send()`, wait for its exit; the seconds from signal to exit.

    The wait allows the timeout plus 3 s: the interpreter's own start-to-exit overhead is
    not part of the runner's budget, and a run that hangs fails here, not later.
    """
    assert callable(send)
    run.snapshot()
    started = time.monotonic()
    send()
    try:
        run.process.wait(timeout=timeout_s + 3)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"still running {timeout_s + 3}s after the signal:\n{run.tail()}"
        ) from None
    elapsed = time.monotonic() - started
    print(f"exit {run.process.returncode} {elapsed:.1f}s after the signal")
    return elapsed


def assert_nothing_left(run: Run, grace_s: float = 10.0) -> None:
    """No process of the run alive and none of its ports listened on, within a short
    grace: a SIGKILLed process's sockets are closed by the kernel as it tears the process
    down, which on a loaded machine was seen to outlast its exit by a moment (the port
    listed with no owner)."""
    deadline = time.monotonic() + grace_s
    while True:
        alive, ports = run.left_behind()
        if (not alive and not ports) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert alive == [], f"alive after exit: {alive}\n{run.tail()}"
    assert ports == {}, f"still listening: {ports}\n{run.tail()}"


def test_sigterm_to_the_process_group_drains_and_leaves_nothing(
    tmp_path: Path, stores: dict[str, str]
) -> None:
    """`kill -TERM -- -PGID` (what make, many init wrappers and a terminal do): Ray's
    processes are outside the group and survive it, so the run drains through Serve,
    exits 0 within WA_SHUTDOWN_TIMEOUT_S and leaves no process and no listening port."""
    run = start(tmp_path / "svc", {**stores, "WA_RAY_DASHBOARD": "true"})
    try:
        run.wait_ready()
        accept_one(run)
        stop_and_measure(run, lambda: os.killpg(run.process.pid, signal.SIGTERM))
        assert run.process.returncode == 0, run.tail()
        assert "app_deleted" in run.log.read_text(), run.tail()
        assert_nothing_left(run)
    finally:
        run.cleanup()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_runner_alone_drains_and_leaves_nothing(
    tmp_path: Path, stores: dict[str, str], signum: signal.Signals
) -> None:
    """`kill PID` / SIGINT to the runner's pid only: drained, exit 0, nothing left."""
    run = start(tmp_path / "svc", {**stores, "WA_RAY_DASHBOARD": "false"})
    try:
        run.wait_ready()
        accept_one(run)
        stop_and_measure(run, lambda: run.process.send_signal(signum))
        assert run.process.returncode == 0, run.tail()
        assert "app_deleted" in run.log.read_text(), run.tail()
        assert_nothing_left(run)
    finally:
        run.cleanup()


def test_sigterm_to_every_process_of_the_run_does_not_wait_for_a_dead_ray(
    tmp_path: Path, stores: dict[str, str]
) -> None:
    """systemd's KillMode=control-group signals every process of the unit at once: Ray's
    GCS and raylet die with the signal, so there is no Serve left to drain through. The
    runner does not wait for it (before: a 60 s hang on the GCS), ends what survived and
    exits within the timeout with nothing left."""
    run = start(tmp_path / "svc", {**stores, "WA_RAY_DASHBOARD": "false"})
    try:
        run.wait_ready()
        accept_one(run)

        def everyone() -> None:
            for pid in {run.process.pid, *(pid for pid, _ in run.tree)}:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

        stop_and_measure(run, everyone)
        log = run.log.read_text()
        assert "drain_skipped" in log or "drain_abandoned" in log, run.tail()
        assert_nothing_left(run)
    finally:
        run.cleanup()


def test_sigterm_to_pid_1_of_a_pid_namespace_drains_and_leaves_nothing(
    tmp_path: Path, stores: dict[str, str]
) -> None:
    """`docker stop`: SIGTERM to the container's PID 1, the runner itself (the image has no
    init). PID 1 has no default signal action and adopts every orphan: the runner handles
    the signal, reaps what it adopts (an orphan planted in the namespace is reaped), drains
    and exits 0 within the timeout; the namespace is empty and no port is left."""
    run = start(tmp_path / "svc", {**stores, "WA_RAY_DASHBOARD": "false"}, pid_namespace=True)
    try:
        run.wait_ready()
        accept_one(run)
        (init,) = process_tree.children(run.process.pid)  # unshare's one child: the runner
        namespace = os.readlink(f"/proc/{init}/ns/pid")
        assert namespace != os.readlink("/proc/self/ns/pid")
        orphan = plant_orphan(init)
        deadline = time.monotonic() + 30
        while psutil.pid_exists(orphan) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not psutil.pid_exists(orphan), f"orphan {orphan} not reaped by PID 1"
        stop_and_measure(run, lambda: os.kill(init, signal.SIGTERM))
        assert run.process.returncode == 0, run.tail()
        assert "app_deleted" in run.log.read_text(), run.tail()
        assert_nothing_left(run)
        assert in_namespace(namespace) == []
    finally:
        run.cleanup()


def test_a_drain_that_cannot_finish_is_cut_at_the_timeout(
    tmp_path: Path, stores: dict[str, str]
) -> None:
    """With Serve's controller frozen (SIGSTOP) serve.delete can never finish: at
    WA_SHUTDOWN_TIMEOUT_S the runner ends its recorded process tree (a stopped process
    only yields to SIGKILL), exits 1 (the drain did not complete) and leaves nothing."""
    timeout_s = 10.0
    env = {**stores, "WA_RAY_DASHBOARD": "false", "WA_SHUTDOWN_TIMEOUT_S": str(timeout_s)}
    run = start(tmp_path / "svc", env)
    try:
        run.wait_ready()
        accept_one(run)
        (controller,) = [pid for pid in ray_actor_pids(run) if b"ServeController" in pid[1]]
        os.kill(controller[0], signal.SIGSTOP)
        stop_and_measure(run, lambda: os.killpg(run.process.pid, signal.SIGTERM), timeout_s)
        assert run.process.returncode == 1, run.tail()
        assert "shutdown_forced" in run.log.read_text(), run.tail()
        assert_nothing_left(run)
    finally:
        run.cleanup()


def ray_actor_pids(run: Run) -> list[tuple[int, bytes]]:
    """(pid, command line) of the run's processes, to pick a victim by its Ray actor title."""
    found = []
    for pid, _ in process_tree.descendants(run.process.pid):
        with contextlib.suppress(OSError):
            found.append((pid, Path(f"/proc/{pid}/cmdline").read_bytes()))
    return found


def plant_orphan(init: int) -> int:
    """A process inside init's PID namespace whose parent exits at once: init adopts it.

    Returns its host pid; it exits 3 s later, and only its adopter can reap it.
    """
    script = "sleep 3 >/dev/null 2>&1 & echo $!; exit 0"
    out = subprocess.run(
        ["nsenter", "--target", str(init), "--pid", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    inner = int(out.split()[0])
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            nspids = Path(f"/proc/{process.pid}/status").read_text().split("NSpid:")[1]
            ids = [int(x) for x in nspids.splitlines()[0].split()]
            if len(ids) == 2 and ids[1] == inner and in_ns(process.pid, init):
                return process.pid
    raise AssertionError(f"planted orphan {inner} not found")


def in_ns(pid: int, init: int) -> bool:
    """Whether pid is in the same PID namespace as init."""
    return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{init}/ns/pid")


def in_namespace(namespace: str) -> list[int]:
    """Host pids of the processes still in a PID namespace."""
    found = []
    for pid in psutil.pids():
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/pid") == namespace:
                found.append(pid)
    return found
