"""The Scanner port over clamd's INSTREAM protocol (`WA_CLAMD_URL`), on asyncio streams.

One connection per scan: clamd answers one command per connection unless a session is
opened (IDSESSION), and a session would serialize this process's scans behind one socket.
The z-prefixed commands end in NUL and so do the answers. INSTREAM sends the file in
chunks, each after its length as 4 bytes big-endian, ended by a zero length; clamd
answers `stream: OK`, `stream: <signature> FOUND`, or `<message> ERROR`.

"INSTREAM size limit exceeded" (the file is over clamd's StreamMaxLength, 25 MB by
default) is a TransientError like every other failure to get a verdict, as the port says:
failing open would store an unscanned file, and refusing it would blame the customer for
the scanner's configuration. Set clamd's StreamMaxLength at or over the largest media cap
(WA_MEDIA_MAX_BYTES_DOCUMENT, 100 MB by default); `max_stream_bytes` names that limit so
an oversized file fails here without streaming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from pathlib import Path
from urllib.parse import urlsplit

from adapters.errors import TransientError

_CHUNK = 64 * 1024
_MAX_ANSWER = 4096


class ClamdScanner:
    """clamd at `tcp://host:port` or `unix:///path/to/clamd.ctl`."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = 5.0,
        scan_timeout_s: float = 60.0,
        max_stream_bytes: int | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme == "tcp" and parts.hostname and parts.port:
            self._tcp: tuple[str, int] | None = (parts.hostname, parts.port)
            self._unix: str | None = None
        elif parts.scheme == "unix" and parts.path:
            self._tcp, self._unix = None, parts.path
        else:
            raise ValueError(f"clamd URL must be tcp://host:port or unix:///path, not {url!r}")
        self.url = url
        self._connect_timeout_s = connect_timeout_s
        self._scan_timeout_s = scan_timeout_s
        self._max_stream_bytes = max_stream_bytes

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            if self._tcp is not None:
                opening = asyncio.open_connection(*self._tcp)
            else:
                assert self._unix is not None
                opening = asyncio.open_unix_connection(self._unix)
            return await asyncio.wait_for(opening, self._connect_timeout_s)
        except (OSError, TimeoutError) as error:
            raise TransientError(f"clamd {self.url} unreachable: {error!r}") from error

    async def _command(self, command: bytes, path: Path | None, timeout_s: float) -> str:
        reader, writer = await self._connect()
        try:
            return await asyncio.wait_for(self._exchange(reader, writer, command, path), timeout_s)
        except TimeoutError as error:
            raise TransientError(f"clamd {self.url} did not answer within {timeout_s}s") from error
        except (BrokenPipeError, ConnectionResetError) as error:
            # clamd closes the connection once a stream passes its StreamMaxLength; its
            # "size limit exceeded" answer is then often lost with the connection.
            raise TransientError(
                f"clamd {self.url} closed the connection mid-stream"
                f" (over its StreamMaxLength size limit?): {error!r}"
            ) from error
        except (OSError, asyncio.IncompleteReadError) as error:
            raise TransientError(f"clamd {self.url} failed: {error!r}") from error
        finally:
            writer.close()
            with contextlib.suppress(OSError):  # the connection is gone either way
                await writer.wait_closed()

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        command: bytes,
        path: Path | None,
    ) -> str:
        writer.write(b"z" + command + b"\0")
        if path is not None:
            # clamd closes on its stream limit; its answer is already sent.
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                await self._stream(writer, path)
        answer = await reader.readuntil(b"\0") if not reader.at_eof() else b""
        if len(answer) > _MAX_ANSWER:
            raise TransientError(f"clamd {self.url} answered {len(answer)} bytes")
        return answer.rstrip(b"\0").decode("utf-8", "replace").strip()

    async def _stream(self, writer: asyncio.StreamWriter, path: Path) -> None:
        # Reads are small and local; the event loop is not held for long by one chunk.
        with path.open("rb") as file:
            while chunk := file.read(_CHUNK):
                writer.write(struct.pack(">I", len(chunk)) + chunk)
                await writer.drain()
        writer.write(struct.pack(">I", 0))
        await writer.drain()

    async def scan(self, path: Path) -> str | None:
        """None when clean, the signature's name when clamd found one; TransientError when
        clamd cannot give a verdict (down, timed out, over its stream limit)."""
        size = (await asyncio.to_thread(path.stat)).st_size
        if self._max_stream_bytes is not None and size > self._max_stream_bytes:
            raise TransientError(
                f"{size} bytes, over clamd's stream limit {self._max_stream_bytes}"
            )
        answer = await self._command(b"INSTREAM", path, self._scan_timeout_s)
        if answer == "stream: OK":
            return None
        if answer.startswith("stream: ") and answer.endswith(" FOUND"):
            return answer[len("stream: ") : -len(" FOUND")]
        # "INSTREAM size limit exceeded. ERROR", "... ERROR", or nothing at all.
        raise TransientError(f"clamd {self.url} gave no verdict: {answer or 'connection closed'!r}")

    async def ping(self) -> None:
        """Raise TransientError unless clamd answers PONG."""
        answer = await self._command(b"PING", None, self._connect_timeout_s)
        if answer != "PONG":
            raise TransientError(f"clamd {self.url} answered {answer!r} to PING")

    async def version(self) -> str:
        """clamd's version and its database's (for /readyz details)."""
        return await self._command(b"VERSION", None, self._connect_timeout_s)

    async def close(self) -> None:
        """Nothing held between scans."""
