"""The Graph simulator (loadtest/graph_sim.py) served on a real loopback port, in the
test's own event loop, for tests of the Graph client and the media pipeline."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from loadtest.graph_sim import GraphSim, create_graph_app


class SimClock:
    """A clock the test moves by hand (link expiry, call windows), from the real time."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def serve_graph_sim(sim: GraphSim) -> AsyncIterator[int]:
    """Serve the simulator on 127.0.0.1 until the block ends; yields the port.

    The socket is bound before uvicorn starts, so no other process can take the port in
    between.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(create_graph_app(sim), log_level="warning", lifespan="off", ws="none")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if serving.done():
                serving.result()  # raises what stopped it
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await serving
        sock.close()
