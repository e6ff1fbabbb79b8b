"""A clamd of the test's own (Debian's clamav-daemon) on a free loopback port.

The machine cannot download ClamAV's signature databases (no freshclam), so the test
builds its own in its tmp dir: an `.hdb` holding EICAR's md5:size:name, and an `.ndb`
body signature for tests/support/media_files.TEST_MARKER (a file only clamd calls
malware). clamd loads the two in well under a second. It runs in the foreground and is
stopped by its process id.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.media_files import EICAR, EICAR_MD5, TEST_MARKER

EICAR_SIGNATURE = "WaTest.Eicar.UNOFFICIAL"  # clamd adds .UNOFFICIAL to unsigned databases
MARKER_SIGNATURE = "WaTest.Marker.UNOFFICIAL"
_START_TIMEOUT_S = 60.0


def clamd_binary() -> str | None:
    """clamd on PATH or in Debian's /usr/sbin."""
    return shutil.which("clamd") or (
        "/usr/sbin/clamd" if Path("/usr/sbin/clamd").exists() else None
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ClamdServer:
    """One clamd process with its config, databases and log in `directory`."""

    binary: str
    directory: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        """clamd's unix socket, beside its config."""
        return self.directory / "clamd.sock"

    @property
    def unix_url(self) -> str:
        """The WA_CLAMD_URL of this server's unix socket."""
        return f"unix://{self.socket_path}"

    @property
    def url(self) -> str:
        """The WA_CLAMD_URL of this server."""
        return f"tcp://127.0.0.1:{self.port}"

    def start(self, stream_max_bytes: int = 100 * 1024 * 1024) -> None:
        """Write the databases and config, start clamd, wait until it answers PING."""
        db = self.directory / "db"
        db.mkdir(parents=True, exist_ok=True)
        (db / "watest.hdb").write_text(f"{EICAR_MD5}:{len(EICAR)}:WaTest.Eicar\n")
        (db / "watest.ndb").write_text(f"WaTest.Marker:0:*:{TEST_MARKER.hex()}\n")
        self.port = self.port or _free_port()
        config = self.directory / "clamd.conf"
        config.write_text(
            "Foreground yes\n"
            f"DatabaseDirectory {db}\n"
            f"TCPSocket {self.port}\n"
            "TCPAddr 127.0.0.1\n"
            f"LogFile {self.directory / 'clamd.log'}\n"
            f"StreamMaxLength {stream_max_bytes}\n"
            "MaxThreads 4\n"
            f"LocalSocket {self.socket_path}\n"
        )
        with (self.directory / "clamd.out").open("ab") as log:  # the child keeps its own fd
            self.proc = subprocess.Popen([self.binary, "-c", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clamd exited: {(self.directory / 'clamd.out').read_text()}")
            if self.ping():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("clamd did not answer PING in time")

    def ping(self) -> bool:
        """Whether clamd answers PONG now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(b"zPING\0")
                return sock.recv(16).startswith(b"PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop clamd by its pid (SIGTERM, then SIGKILL after a grace)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@contextlib.contextmanager
def own_clamd(directory: Path, stream_max_bytes: int = 100 * 1024 * 1024) -> Iterator[ClamdServer]:
    """A running clamd for the block, stopped afterwards; RuntimeError when it is missing."""
    binary = clamd_binary()
    if binary is None:
        raise RuntimeError("clamd is not installed (apt-get install clamav-daemon)")
    server = ClamdServer(binary, directory)
    server.start(stream_max_bytes)
    try:
        yield server
    finally:
        server.stop()
