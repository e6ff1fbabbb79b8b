"""What both peers share: secrets from the environment, body reading, signature check.

They are raw ASGI callables rather than FastAPI apps so that they measure the ceiling of
the approach (uvicorn + HMAC + JSON), not a framework's overhead.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson

from ingress.signature import SignatureMissing, parse_signature
from loadtest.tenants import DEV_APP_SECRET, load_tenants_file

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def secrets_from_env() -> list[bytes]:
    """LT_TENANTS_FILE (the service's tenants file) if set, else LT_APP_SECRET or the dev one."""
    path = os.environ.get("LT_TENANTS_FILE")
    if path:
        return [t.secret_bytes for t in load_tenants_file(Path(path))]
    return [os.environ.get("LT_APP_SECRET", DEV_APP_SECRET).encode()]


def verified(body: bytes, header: str | None, secrets: list[bytes]) -> bool:
    """The body was signed with one of the secrets (each compared in constant time)."""
    try:
        digest = parse_signature(header)
    except SignatureMissing:
        return False
    ok = False
    for secret in secrets:
        ok |= hmac.compare_digest(hmac.new(secret, body, hashlib.sha256).digest(), digest)
    return ok


async def read_body(receive: Receive) -> bytes:
    """The whole request body."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def header(scope: Scope, name: bytes) -> str | None:
    """One request header, decoded."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def respond(send: Send, status: int, body: dict[str, Any]) -> None:
    """A JSON response."""
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def items_of(payload: Any) -> list[tuple[str, Any]]:
    """Every (kind, item) of a webhook body: messages, statuses, errors, else the value."""
    found: list[tuple[str, Any]] = []
    for entry in payload.get("entry", []) if isinstance(payload, dict) else []:
        for change in entry.get("changes", []):
            value = change.get("value")
            before = len(found)
            if isinstance(value, dict):
                for kind in ("messages", "statuses", "errors"):
                    found.extend((kind, item) for item in value.get(kind) or [])
            if len(found) == before:
                found.append((str(change.get("field")), value))
    return found
