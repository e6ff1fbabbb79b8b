"""The clamd adapter against a real clamd of the test's own (tests/support/clamd_server.py):
verdicts over TCP and the unix socket, the stream limit, and a clamd that is down or
silent reported as TransientError within the timeouts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.clamd import ClamdScanner
from adapters.errors import TransientError
from adapters.ports import Scanner
from tests.support import media_files as files
from tests.support.clamd_server import (
    EICAR_SIGNATURE,
    MARKER_SIGNATURE,
    ClamdServer,
    clamd_binary,
    own_clamd,
)

pytestmark = pytest.mark.skipif(
    clamd_binary() is None, reason="clamd is not installed (apt-get install clamav-daemon)"
)


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdServer]:
    """The module's clamd, with a 2 MB stream limit (the limit's test sends 3 MB)."""
    with own_clamd(tmp_path_factory.mktemp("clamd"), stream_max_bytes=2 * 1024 * 1024) as server:
        yield server


@pytest.mark.parametrize("over", ["tcp", "unix"])
async def test_verdicts_over_tcp_and_the_unix_socket(
    clamd: ClamdServer, tmp_path: Path, over: str
) -> None:
    """A clean file is None; EICAR and the tests' own marker are their signatures' names."""
    scanner: Scanner = ClamdScanner(clamd.url if over == "tcp" else clamd.unix_url)
    await scanner.ping()
    assert await scanner.scan(files.pdf(tmp_path / "clean.pdf")) is None
    assert await scanner.scan(files.eicar(tmp_path / "eicar.com")) == EICAR_SIGNATURE
    assert await scanner.scan(files.marker_file(tmp_path / "marker.txt")) == MARKER_SIGNATURE
    await scanner.close()


async def test_a_file_in_many_chunks_is_scanned_whole(clamd: ClamdServer, tmp_path: Path) -> None:
    """The marker after 1.5 MB of text (24 chunks of 64 kB) is still found: the chunks
    make one stream."""
    path = tmp_path / "long.txt"
    path.write_bytes(b"lorem ipsum " * 131072 + files.TEST_MARKER)
    assert await ClamdScanner(clamd.url).scan(path) == MARKER_SIGNATURE


async def test_over_the_stream_limit_is_a_transient_error(
    clamd: ClamdServer, tmp_path: Path
) -> None:
    """clamd's "INSTREAM size limit exceeded" is no verdict: TransientError, never clean.
    With the limit known, the adapter says so without streaming."""
    path = tmp_path / "big.bin"
    path.write_bytes(b"\x01" * (3 * 1024 * 1024))
    with pytest.raises(TransientError, match="size limit"):
        await ClamdScanner(clamd.url).scan(path)
    with pytest.raises(TransientError, match="stream limit"):
        await ClamdScanner(clamd.url, max_stream_bytes=2 * 1024 * 1024).scan(path)
    await ClamdScanner(clamd.url).ping()  # clamd itself is fine after it


async def test_a_clamd_that_is_down_or_silent_is_a_transient_error(
    closed_port: int, silent_port: int, tmp_path: Path
) -> None:
    """Refused at once, or accepted and never answered: TransientError within the timeouts."""
    path = files.pdf(tmp_path / "clean.pdf")
    with pytest.raises(TransientError, match="unreachable"):
        await ClamdScanner(f"tcp://127.0.0.1:{closed_port}").scan(path)
    with pytest.raises(TransientError, match="unreachable"):
        await ClamdScanner(f"unix://{tmp_path / 'none.sock'}").ping()
    silent = ClamdScanner(
        f"tcp://127.0.0.1:{silent_port}", connect_timeout_s=0.5, scan_timeout_s=1.0
    )
    started = time.monotonic()
    with pytest.raises(TransientError, match="did not answer"):
        await silent.scan(path)
    with pytest.raises(TransientError):
        await silent.ping()
    assert time.monotonic() - started < 5.0


async def test_a_clamd_stopped_then_started_again(tmp_path: Path) -> None:
    """While clamd is stopped every scan fails as transient; once back, scans answer."""
    with own_clamd(tmp_path / "own") as server:
        scanner = ClamdScanner(server.url)
        path = files.eicar(tmp_path / "eicar.com")
        assert await scanner.scan(path) == EICAR_SIGNATURE
        server.stop()
        with pytest.raises(TransientError):
            await scanner.scan(path)
        server.start()
        assert await scanner.scan(path) == EICAR_SIGNATURE


def test_only_tcp_and_unix_urls_are_accepted() -> None:
    """A URL of another scheme, or without a port, is a configuration error at start-up."""
    for url in ("http://127.0.0.1:3310", "tcp://127.0.0.1", "unix://", "127.0.0.1:3310"):
        with pytest.raises(ValueError, match="clamd URL"):
            ClamdScanner(url)
