"""The admin API under /admin: bearer token, compared in constant time.

Mounted only when a token is configured: without one every /admin path is an ordinary
404, indistinguishable from a path that does not exist. Answers never carry a secret.
Later issues add replay and dead letters here.

Conversation look-ups (issue 10) show a record as `conversation.created` publishes it
(`ConversationState`, its service window taken now). A customer is searched by query
parameters, never by path segments: the error handler logs the path, and a wa_id is a
phone number. Every input is bounded and checked here, answered in the project's error
shape (ingress/rejection.py), not FastAPI's validation body.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, SecretStr

from adapters.errors import AdapterError
from adapters.ports import Inbox
from ingress.rejection import RequestRejected
from models.conversation import ConversationRecord, ConversationState
from models.tenant import TenantDirectory
from models.tenant_pii import mask_state

log = structlog.get_logger("ingress")

T = TypeVar("T")

MAX_LOOKUP_CHARS = 256
"""The longest conversation id, tenant id, wa_id or user_id a look-up takes (ids are 32
hex digits, Meta's ids far shorter): a longer one is refused before the store is asked."""


class AdminUnauthorized(Exception):
    """No or a wrong bearer token (answered 401 with WWW-Authenticate)."""


class InvalidLookup(RequestRejected):
    """A look-up's parameters are missing, empty or over MAX_LOOKUP_CHARS."""

    status, code, default_message = 400, "invalid_lookup", "invalid look-up parameters"


class ConversationNotFound(RequestRejected):
    """No conversation record by that id, or none of that tenant's customer."""

    status, code, default_message = 404, "conversation_not_found", "no such conversation"


class StateStoreUnavailable(RequestRejected):
    """The state store did not answer; nothing is known, so the look-up may be retried."""

    status, code, default_message = 503, "store_unavailable", "the store did not answer"

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "1"})


class ConversationFound(BaseModel):
    """`GET /admin/conversations/{conversation_id}`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    conversation: ConversationState


class ConversationsFound(BaseModel):
    """`GET /admin/conversations?tenant_id=…&wa_id=…|user_id=…`, ordered by id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    conversations: list[ConversationState]


def _optional(name: str, value: str | None) -> str | None:
    """The parameter, None when absent or empty; InvalidLookup past MAX_LOOKUP_CHARS."""
    if value is not None and len(value) > MAX_LOOKUP_CHARS:
        raise InvalidLookup(f"{name} is longer than {MAX_LOOKUP_CHARS} characters")
    return value or None


def _required(name: str, value: str | None) -> str:
    """The parameter; InvalidLookup when absent, empty or past MAX_LOOKUP_CHARS."""
    given = _optional(name, value)
    if given is None:
        raise InvalidLookup(f"{name} is required")
    return given


def _shown(record: ConversationRecord) -> bool:
    """A record the admin API shows: a real conversation (not a legacy sequence, not a
    tenant's stream of non-conversation items)."""
    return record.created and record.kind != "tenant"


async def _ask(call: Awaitable[T]) -> T:
    """The store's answer; StateStoreUnavailable (503) when it fails."""
    try:
        return await call
    except AdapterError as exc:
        log.warning("admin_store_unavailable", error_type=type(exc).__name__)
        raise StateStoreUnavailable from exc


def admin_router(
    token: SecretStr,
    directory: TenantDirectory,
    inbox: Inbox,
    partitions: int,
    *,
    clock: Callable[[], float] = time.time,
) -> APIRouter:
    """The /admin routes, guarded by `Authorization: Bearer <token>`; `clock` (unix
    seconds) is the time a conversation's service window is shown at."""
    expected = token.get_secret_value().encode()

    async def authorized(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # compare_digest even when the scheme is wrong: the time taken says nothing.
        ok = hmac.compare_digest(expected, given.strip().encode())
        if scheme.lower() != "bearer" or not ok:
            raise AdminUnauthorized

    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(authorized)])

    # GET/POST/PUT/PATCH/DELETE /admin/tenants...: ingress/tenant_admin.py.

    @router.get("/inbox", summary="Backlog per inbox partition")
    async def backlog() -> dict[str, Any]:
        """Entries not yet committed, per partition, and their total."""
        per_partition = {str(p): await _ask(inbox.backlog(p)) for p in range(partitions)}
        return {"partitions": per_partition, "total": sum(per_partition.values())}

    _conversation_routes(router, inbox, lambda: datetime.fromtimestamp(clock(), UTC), directory)
    return router


def _conversation_routes(
    router: APIRouter, inbox: Inbox, now: Callable[[], datetime], directory: TenantDirectory
) -> None:
    """GET /admin/conversations/{conversation_id} and GET /admin/conversations?…

    Answers are shown under the tenant's PII rule (models/tenant_pii.py): a look-up by
    the clear wa_id works (the store keeps it clear), the answer carries its hash."""

    def shown(record: ConversationRecord, at: datetime) -> ConversationState:
        return mask_state(record.public(at), directory.get(record.tenant_id))

    @router.get(
        "/conversations/{conversation_id}",
        summary="A conversation's record by its id",
        responses={404: {"description": "No such conversation"}},
    )
    async def conversation(conversation_id: str) -> ConversationFound:
        """The record as `conversation.created` publishes it, its service window now."""
        wanted = _required("conversation_id", conversation_id)
        found = (await _ask(inbox.conversations([wanted]))).get(wanted)
        if found is None or not _shown(found):
            raise ConversationNotFound
        return ConversationFound(conversation=shown(found, now()))

    @router.get(
        "/conversations",
        summary="A tenant's conversations with a customer (wa_id and/or user_id)",
        responses={404: {"description": "No conversation of that customer"}},
    )
    async def find(
        tenant_id: str | None = Query(None, description="The tenant id (required)"),
        wa_id: str | None = Query(None, description="The customer's WhatsApp id"),
        user_id: str | None = Query(None, description="The customer's business-scoped id"),
    ) -> ConversationsFound:
        """One record per business number that talked to the customer, ordered by id;
        given both ids, the conversations matching either."""
        tenant = _required("tenant_id", tenant_id)
        wa, user = _optional("wa_id", wa_id), _optional("user_id", user_id)
        if wa is None and user is None:
            raise InvalidLookup("wa_id or user_id is required")
        found = await _ask(inbox.find_conversations(tenant, wa_id=wa, user_id=user))
        at = now()
        states = [shown(r, at) for r in found if _shown(r) and r.tenant_id == tenant]
        if not states:
            raise ConversationNotFound
        return ConversationsFound(conversations=states)
