"""The README's media tour, command for command: `python -m loadtest graph-sim --token
sim-token --phone-number-id 106540352242922`, the service started with only
WA_ACCESS_TOKEN, WA_GRAPH_API_URL and WA_MEDIA_ALLOWED_HOSTS (the embedded default tenant,
which owns every unclaimed number), `python -m cluster send-test --media photo.jpg`, then
`python -m cluster events tail`: the photo is stored, EXIF-stripped, at a URL that serves
the stored bytes."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from PIL import Image

from tests.support import media_files
from tests.support.service import ROOT, free_port, running_service

pytestmark = pytest.mark.ray

TOKEN = "sim-token"
PHONE_NUMBER_ID = "106540352242922"  # send-test's sample number (the README's)


def _env(**wa: str) -> dict[str, str]:
    """This process's environment without WA_* (a new user's shell), plus `wa`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("WA_")}, **wa}


@contextmanager
def graph_sim_cli(log: Path) -> Iterator[str]:
    """`python -m loadtest graph-sim` as the README starts it; yields its URL."""
    port = free_port()
    args = ["--token", TOKEN, "--phone-number-id", PHONE_NUMBER_ID, "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "loadtest", "graph-sim", *args],
            cwd=ROOT,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                httpx.get(f"{url}/v23.0/{PHONE_NUMBER_ID}", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        printed = log.read_text()
        assert f"tenant default: token {TOKEN} numbers ['{PHONE_NUMBER_ID}']" in printed
        assert f"WA_GRAPH_API_URL={url}" in printed
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def image_event(data_dir: Path, timeout_s: float = 120) -> dict[str, Any]:
    """The image message's event, read with `python -m cluster events tail`."""
    deadline = time.monotonic() + timeout_s
    while True:
        tail = subprocess.run(
            [sys.executable, "-m", "cluster", "events", "tail"],
            cwd=ROOT,
            env=_env(WA_DATA_DIR=str(data_dir)),
            capture_output=True,
            check=True,
            timeout=60,
        )
        for line in tail.stdout.splitlines():
            row = orjson.loads(line)
            if row["routing_key"] == "default.message.image":
                event: dict[str, Any] = row["event"]
                return event
        assert time.monotonic() < deadline, "no image event"
        time.sleep(1)


def test_the_readme_media_tour(tmp_path: Path) -> None:
    photo = media_files.jpeg_with_gps(tmp_path / "photo.jpg")
    content = photo.read_bytes()
    with graph_sim_cli(tmp_path / "sim.log") as graph_url:
        service_env = {
            "WA_ACCESS_TOKEN": TOKEN,
            "WA_GRAPH_API_URL": graph_url,
            "WA_MEDIA_ALLOWED_HOSTS": "127.0.0.1",
        }
        with running_service(tmp_path / "svc", service_env) as svc:
            send = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cluster",
                    "send-test",
                    "--media",
                    str(photo),
                    "--graph-url",
                    graph_url,
                    "--token",
                    TOKEN,
                    "--url",
                    f"{svc.url}/webhook",
                ],
                cwd=ROOT,
                env=_env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert send.returncode == 0, send.stdout + send.stderr
            assert "media id" in send.stdout
            assert '200 {"status":"accepted"' in send.stdout

            event = image_event(svc.data_dir)
            file = event["data"]["file"]
            assert file["status"] == "stored", (file, svc.tail())
            assert file["sha256"] == hashlib.sha256(content).hexdigest()
            stored = httpx.get(file["url"], timeout=30)
            assert stored.status_code == 200
            assert hashlib.sha256(stored.content).hexdigest() == file["stored_sha256"]
            assert not Image.open(io.BytesIO(stored.content)).getexif(), "EXIF stripped"
