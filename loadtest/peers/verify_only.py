"""Peer (a): uvicorn with a handler that verifies the signature and parses JSON, nothing else.

`uvicorn loadtest.peers.verify_only:app` — the per-core ceiling of any Python ingress.
"""

from __future__ import annotations

import orjson

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
