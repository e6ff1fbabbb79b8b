"""The HTTP clients the sender can POST with: aiohttp (default) or httpx.

Why two: on this 2-core machine httpx sustained ~900 POST/s at 32 concurrent requests
(about 1 ms of client CPU each, mostly in httpcore's pool bookkeeping) where aiohttp
sustained ~9,500/s against the same server. An open-loop test at 1,000 req/s with httpx
would measure the client, not the server, so aiohttp is the default; httpx stays for
in-memory tests (httpx.MockTransport) and as a cross-check (`--client httpx`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import httpx

Poster = Callable[[str, bytes, dict[str, str]], Awaitable[int]]
"""(url, body, headers) -> HTTP status; raises PostFailed when there is no answer."""


class PostFailed(Exception):
    """No HTTP answer: `outcome` is timeout, connect_error or error."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def httpx_poster(client: httpx.AsyncClient) -> Poster:
    """POST with an httpx client (vendor errors become PostFailed)."""

    async def post(url: str, body: bytes, headers: dict[str, str]) -> int:
        try:
            response = await client.post(url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise PostFailed("timeout") from exc
        except httpx.ConnectError as exc:
            raise PostFailed("connect_error") from exc
        except httpx.HTTPError as exc:
            raise PostFailed("error") from exc
        return response.status_code

    return post


def aiohttp_poster(session: aiohttp.ClientSession) -> Poster:
    """POST with an aiohttp session (vendor errors become PostFailed)."""

    async def post(url: str, body: bytes, headers: dict[str, str]) -> int:
        try:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status
        except TimeoutError as exc:
            raise PostFailed("timeout") from exc
        except aiohttp.ClientConnectorError as exc:
            raise PostFailed("connect_error") from exc
        except aiohttp.ClientError as exc:
            raise PostFailed("error") from exc

    return post


@asynccontextmanager
async def open_poster(kind: str, connections: int, timeout_s: float) -> AsyncIterator[Poster]:
    """A poster with a pool of `connections` keep-alive connections."""
    if kind == "httpx":
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(limits=limits, timeout=timeout_s) as client:
            yield httpx_poster(client)
        return
    if kind != "aiohttp":
        raise ValueError(f"unknown client {kind!r}")
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield aiohttp_poster(session)
    await asyncio.sleep(0)  # let the connector close its transports
