"""POST /admin/replay: re-process a delivery, a tenant's time range, or dead letters.

Mounted on the admin router (bearer token, ingress/admin.py) when the app has an archive.
The body is one JSON object, `models.replay.ReplayRequest`; every bad input is answered in
the project's error shape (ingress/rejection.py), never FastAPI's validation body:

    400 invalid_replay     not a JSON object; not exactly one selector; a range without a
                           time zone, ... (a body over 16 KiB: 413 body_too_large)
    404 replay_not_found   no such delivery (archived or waiting) or dead letter
    503 store_unavailable  the archive store or the inbox did not answer (retry)
    200 ReplayResult       what was appended again (replayed=True)
"""

from __future__ import annotations

import orjson
import structlog
from fastapi import APIRouter, Request
from pydantic import ValidationError

from adapters.errors import AdapterError
from ingress.admin import StateStoreUnavailable
from ingress.rejection import BodyTooLarge, RequestRejected
from ingress.replay import Replayer, ReplayNotFound
from models.replay import ReplayRequest, ReplayResult

log = structlog.get_logger("ingress")

MAX_REPLAY_BODY = 16 * 1024
_NOT_AN_OBJECT = "the body must be a JSON object"


class InvalidReplay(RequestRejected):
    """The replay request names nothing, or too much, or a bad range."""

    status, code, default_message = 400, "invalid_replay", "invalid replay request"


class NothingToReplay(RequestRejected):
    """No delivery (archived or waiting) or dead letter by that id."""

    status, code, default_message = 404, "replay_not_found", "nothing to replay by that id"


def parse_replay(body: bytes) -> ReplayRequest:
    """The request, or the rejection naming what is wrong with it."""
    if len(body) > MAX_REPLAY_BODY:
        raise BodyTooLarge(MAX_REPLAY_BODY)
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidReplay(_NOT_AN_OBJECT) from exc
    if not isinstance(fields, dict):
        raise InvalidReplay(_NOT_AN_OBJECT)
    try:
        return ReplayRequest.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidReplay(f"{where}: {message}" if where else message) from exc


def replay_routes(router: APIRouter, replayer: Replayer) -> None:
    """Add POST /admin/replay to the (token-guarded) admin router."""

    @router.post(
        "/replay",
        summary="Re-process archived deliveries or dead letters (published again, same ids)",
        responses={404: {"description": "No such delivery or dead letter"}},
    )
    async def replay(request: Request) -> ReplayResult:
        """Append the named deliveries' items (or dead letters' items) again with
        replayed=True; consumers see the same event ids again, with a `replayed` header."""
        wanted = parse_replay(await request.body())
        try:
            result = await replayer.replay(wanted)
        except ReplayNotFound as exc:
            raise NothingToReplay(str(exc)) from exc
        except AdapterError as exc:
            log.warning("admin_replay_unavailable", error_type=type(exc).__name__)
            raise StateStoreUnavailable from exc
        log.info(
            "admin_replayed",
            deliveries=result.deliveries,
            items=result.items,
            dead_letters=result.dead_letters,
        )
        return result
