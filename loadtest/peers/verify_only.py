"""Peer (a): uvicorn with a handler that verifies the signature and parses JSON, nothing else.

`uvicorn loadtest.peers.verify_only:fastapi_app` is (a), a FastAPI route like the service's
own ingress; `...:app` is the same handler as a bare ASGI callable (a0), the per-core
ceiling of any Python ingress without a framework.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from loadtest.peers.asgi import (
    Receive,
    Scope,
    Send,
    header,
    read_body,
    respond,
    secrets_from_env,
    verified,
)

SECRETS = secrets_from_env()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """POST: verify and parse, then 200; GET /readyz: 200."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
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
        orjson.loads(body)
    except orjson.JSONDecodeError:
        await respond(send, 400, {"error": {"code": "invalid_json"}})
        return
    await respond(send, 200, {"status": "accepted"})


def _fastapi_app() -> FastAPI:
    """The same handler as a FastAPI route: what a team's first ingress looks like."""
    api = FastAPI()

    @api.post("/webhook")
    async def webhook(request: Request) -> Response:
        body = await request.body()
        if not verified(body, request.headers.get("x-hub-signature-256"), SECRETS):
            return JSONResponse({"error": {"code": "signature_mismatch"}}, status_code=403)
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            return JSONResponse({"error": {"code": "invalid_json"}}, status_code=400)
        return JSONResponse({"status": "accepted"})

    @api.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return api


fastapi_app = _fastapi_app()
