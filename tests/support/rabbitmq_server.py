"""A RabbitMQ node of the test's own, for tests that stop, kill or restart the broker.

The machine's broker (127.0.0.1:5672) is shared with other tests and is never touched: a
test that takes the broker down starts its own node on free ports, with its database,
logs, Erlang cookie and configuration in the test's directory, and stops it by its node
name and process group afterwards. The machine's /etc/rabbitmq files are not read (they
name port 5672): the node gets a config file, an env file and an enabled-plugins file of
its own (no management plugin, whose fixed port 15672 the machine's broker holds).

Start-up costs ~8 s on the 2-core machine (the Erlang VM boots the whole broker); a
`stop_app`/`start_app` cycle ~2 s, of which ~1 s is each rabbitmqctl's own VM start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

SCRIPTS = Path("/usr/lib/rabbitmq/bin")
"""The broker's own scripts: /usr/sbin/rabbitmq-server would `su` to the rabbitmq user
and read the machine's configuration."""


def available() -> bool:
    """rabbitmq-server and rabbitmqctl are installed where the Debian package puts them."""
    return (SCRIPTS / "rabbitmq-server").exists() and (SCRIPTS / "rabbitmqctl").exists()


def _free_port_pair() -> int:
    """A free port p with p + 20000 (the node's distribution port) free too."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port + 20000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 20000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a RabbitMQ node")


@dataclass
class RabbitNode:
    """One broker node: its AMQP URL, node name, files, and the process running it."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        """The Erlang node name (rabbitmqctl -n)."""
        return f"wa-chaos-{self.port}@localhost"

    @property
    def url(self) -> str:
        """The AMQP URL clients connect to."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        base = self.directory
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")},
            # The Erlang cookie is created in $HOME: the test's directory, not the user's.
            "HOME": str(base),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.port + 20000),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self, timeout_s: float = 90) -> float:
        """Boot the node (same database as before, if any); returns the seconds it took."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "enabled_plugins").write_text("[].\n")
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
        )
        (self.directory / "rabbitmq-env.conf").write_text("")
        started = time.monotonic()
        with (self.directory / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(SCRIPTS / "rabbitmq-server")],
                cwd=self.directory,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: the VM and its helpers end together
            )
        self.wait_ready(timeout_s)
        return time.monotonic() - started

    def wait_ready(self, timeout_s: float = 90) -> None:
        """Until the AMQP port answers the protocol header (the broker's last boot step)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq node {self.name} exited:\n{self.log_tail()}")
            if self._answers_amqp():
                return
            time.sleep(0.2)
        raise RuntimeError(f"rabbitmq node {self.name} not ready in {timeout_s}s")

    def _answers_amqp(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"AMQP\x00\x00\x09\x01")
                return sock.recv(8).startswith(b"\x01\x00\x00")  # connection.start frame
        except OSError:
            return False

    def ctl(self, *args: str, timeout_s: float = 60) -> None:
        """rabbitmqctl against this node (with its cookie); raises on failure."""
        subprocess.run(
            [str(SCRIPTS / "rabbitmqctl"), "-n", self.name, *args],
            env=self._env(),
            check=True,
            capture_output=True,
            timeout=timeout_s,
        )

    def stop_app(self) -> None:
        """Stop the broker application (every connection closed), the VM stays up."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        """Start the broker application again and wait until it accepts AMQP."""
        self.ctl("start_app")
        self.wait_ready()

    def vm_pid(self) -> int | None:
        """The Erlang VM's pid (the start script's child), None if it is not running."""
        if self.process is None or self.process.poll() is not None:
            return None
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                if child.name() == "beam.smp":
                    return child.pid
        return None

    def kill_hard(self) -> None:
        """kill -9 the node's VM (a crash: no clean shutdown) and wait for the script."""
        pid = self.vm_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._end_group()

    def stop(self) -> None:
        """Stop the node cleanly, then end whatever its process group still holds."""
        if self.process is None or self.process.poll() is not None:
            self._end_group()
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.ctl("stop", timeout_s=30)
        self._end_group()

    def _end_group(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=15)
        # Its own session's group (start_new_session): erl_child_setup and the like.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the start script's output."""
        path = self.directory / "server.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def own_rabbitmq(directory: Path) -> Iterator[RabbitNode]:
    """A started node on free ports with its files under `directory`; stopped afterwards."""
    node = RabbitNode(_free_port_pair(), directory)
    try:
        node.start()
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def rabbitmq_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    """A RabbitMQ node of the module's own (skipped where rabbitmq-server is missing)."""
    if not available():
        pytest.skip("rabbitmq-server is not installed (make services)")
    with own_rabbitmq(tmp_path_factory.mktemp("rabbitmq")) as node:
        yield node
