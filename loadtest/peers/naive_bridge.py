"""Peer (b): the bridge most teams write first — verify, then publish each item with a confirm.

`uvicorn --workers 2 loadtest.peers.naive_bridge:app`, with LT_AMQP_URL and LT_EXCHANGE.
One connection and confirm channel per worker; every item is published (persistent) and
its confirm awaited before the next, and the POST is answered after the last one. No
dedup, no ordering across workers, nothing durable before the broker: that is the point.
"""

from __future__ import annotations

import os

import aio_pika
import orjson
from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from loadtest.peers.asgi import (
    Receive,
    Scope,
    Send,
    header,
    items_of,
    read_body,
    respond,
    secrets_from_env,
    verified,
)

SECRETS = secrets_from_env()
_state: dict[str, AbstractRobustConnection | AbstractExchange] = {}


async def _startup() -> None:
    connection = await aio_pika.connect_robust(
        os.environ.get("LT_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    channel = await connection.channel(publisher_confirms=True)
    _state["connection"] = connection
    _state["exchange"] = await channel.declare_exchange(
        os.environ.get("LT_EXCHANGE", "lt.naive"), aio_pika.ExchangeType.TOPIC, durable=True
    )


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """POST: verify, parse, publish every item with a confirm, then 200."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await _startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                connection = _state.get("connection")
                if isinstance(connection, AbstractRobustConnection):
                    await connection.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":
        await respond(send, 200, {"status": "ready"})
        return
    body = await read_body(receive)
    if not verified(body, header(scope, b"x-hub-signature-256"), SECRETS):
        await respond(send, 403, {"error": {"code": "signature_mismatch"}})
        return
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        await respond(send, 400, {"error": {"code": "invalid_json"}})
        return
    exchange = _state["exchange"]
    assert isinstance(exchange, AbstractExchange)
    try:
        for kind, item in items_of(payload):
            await exchange.publish(
                aio_pika.Message(
                    orjson.dumps(item), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                ),
                routing_key=f"naive.{kind}",
            )
    except Exception:  # the naive peer answers 503 on any broker failure
        await respond(send, 503, {"error": {"code": "broker_unavailable"}})
        return
    await respond(send, 200, {"status": "accepted"})
