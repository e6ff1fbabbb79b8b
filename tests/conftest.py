"""Shared fixtures: real Redis and RabbitMQ with a key prefix / exchange per test, and
ports with no server behind them (refusing, or silent) for the unreachable cases."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.support.s3_server import S3Server, own_s3

REDIS_URL = os.environ.get("WA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("WA_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A fresh key prefix on the real Redis; its keys are deleted afterwards."""
    prefix = f"watest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


async def _delete_exchange(name: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(name)
        await channel.exchange_delete(f"{name}.unrouted")
        await channel.queue_delete(f"{name}.unrouted")
        await channel.exchange_delete(f"{name}.dead")
        await channel.queue_delete(f"{name}.dead")


@pytest.fixture
def exchange_name() -> Iterator[str]:
    """A fresh exchange on the real RabbitMQ; it and its unrouted and dead twins deleted after."""
    name = f"watest.{uuid.uuid4().hex[:12]}"
    yield name
    asyncio.run(_delete_exchange(name))


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on: a connection to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (into the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port: int = sock.getsockname()[1]
        yield port


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The session's S3-compatible server (SeaweedFS, tests/support/s3_server.py), started
    on first use and stopped by its pid at the end."""
    with own_s3(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh bucket on the session's S3 server."""
    return s3_server.create_bucket()
