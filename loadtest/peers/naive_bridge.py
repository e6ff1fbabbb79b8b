"""Peer (b): the bridge most teams write first — verify, then publish each item with a confirm.

`uvicorn --workers 2 loadtest.peers.naive_bridge:app`, with LT_AMQP_URL and LT_EXCHANGE.
A FastAPI route; one connection and confirm channel per worker; every item is published
(persistent) and its confirm awaited before the next, and the POST is answered after the
last one. No dedup, no ordering across workers, nothing durable before the broker: that is
the point of the comparison.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
import orjson
from aio_pika.abc import AbstractExchange
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from loadtest.peers.asgi import items_of, secrets_from_env, verified

SECRETS = secrets_from_env()


@asynccontextmanager
async def _lifespan(api: FastAPI) -> AsyncIterator[None]:
    connection = await aio_pika.connect_robust(
        os.environ.get("LT_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    channel = await connection.channel(publisher_confirms=True)
    api.state.exchange = await channel.declare_exchange(
        os.environ.get("LT_EXCHANGE", "lt.naive"), aio_pika.ExchangeType.TOPIC, durable=True
    )
    try:
        yield
    finally:
        await connection.close()


app = FastAPI(lifespan=_lifespan)


@app.post("/webhook")
async def webhook(request: Request) -> Response:
    """Verify, parse, publish every item with a confirm, then 200."""
    body = await request.body()
    if not verified(body, request.headers.get("x-hub-signature-256"), SECRETS):
        return JSONResponse({"error": {"code": "signature_mismatch"}}, status_code=403)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return JSONResponse({"error": {"code": "invalid_json"}}, status_code=400)
    exchange: AbstractExchange = request.app.state.exchange
    try:
        for kind, item in items_of(payload):
            await exchange.publish(
                aio_pika.Message(
                    orjson.dumps(item), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                ),
                routing_key=f"naive.{kind}",
            )
    except Exception:  # noqa: BLE001 -- the naive peer answers 503 on any broker failure
        return JSONResponse({"error": {"code": "broker_unavailable"}}, status_code=503)
    return JSONResponse({"status": "accepted"})


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    """Up once the lifespan connected to the broker."""
    return {"status": "ready"}
