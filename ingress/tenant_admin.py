"""The tenant registry through the admin API (issue 13, docs/tenants.md).

Mounted on the admin router (bearer token, ingress/admin.py):

    GET    /admin/tenants               every tenant (public views)
    POST   /admin/tenants               create: 201; 409 tenant_exists / tenant_conflict
    GET    /admin/tenants/{id}          one tenant; 404 tenant_not_found
    PUT    /admin/tenants/{id}          replace it whole
    PATCH  /admin/tenants/{id}          replace each top-level member given; `rules` merged
                                        member by member ({"disabled": true})
    DELETE /admin/tenants/{id}          remove it (seeding never brings it back)
    POST   /admin/tenants/{id}/rotate   a new app secret (the previous one of that app kept
                                        while keep_previous), access or verify token

Secrets are write-only: every answer is Tenant.public() (which secrets are set, never a
value), a refused body's message names locations and pydantic's messages with any secret
of the body scrubbed, and the rejection log carries only the code. Bodies are bounded
(MAX_BODY_BYTES) and parsed here, answered in the project's error shape
(ingress/rejection.py). After a write the replica reloads its own directory at once; the
other replicas and the shards follow within WA_TENANT_RELOAD_S (cluster/tenant_wiring.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import orjson
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from adapters.errors import AdapterError
from adapters.errors import TenantExists as RegistryTenantExists
from adapters.errors import TenantNotFound as RegistryTenantNotFound
from adapters.ports import TenantRegistry
from ingress.account_admin import TenantNotFound
from ingress.admin import StateStoreUnavailable
from ingress.rejection import BodyTooLarge, InvalidJson, RequestRejected
from models.tenant import AppSecret, Tenant, TenantConflict, TenantDirectory

log = structlog.get_logger("ingress")

T = TypeVar("T")

MAX_BODY_BYTES = 64 * 1024
"""A tenant with 16 secrets, hundreds of numbers and every rule fits in a few KB."""

MAX_SECRETS_PER_APP = 2
"""A rotation keeps the new secret and the one before it: Meta signs with one secret per
app at a time, the previous one only covers deliveries in flight during the switch."""

_MIN_SCRUBBED = 4
_SECRET_KEYS = frozenset({"app_secrets", "secret", "verify_token", "access_token", "pii_key"})


class InvalidTenant(RequestRejected):
    """The body is not a valid tenant (or change); the message says where and why."""

    status, code, default_message = 400, "invalid_tenant", "invalid tenant"


class TenantAlreadyExists(RequestRejected):
    """POST of an id that is registered."""

    status, code, default_message = 409, "tenant_exists", "a tenant by that id exists"


class TenantsConflict(RequestRejected):
    """The change would make the set conflict (a number claimed twice, two defaults)."""

    status, code, default_message = 409, "tenant_conflict", "the tenants would conflict"


class Rotation(BaseModel):
    """`POST /admin/tenants/{id}/rotate`: any of a new app secret, access or verify token."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    app_secret: SecretStr | None = Field(default=None, min_length=1)
    app_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    keep_previous: bool = True
    access_token: SecretStr | None = Field(default=None, min_length=1)
    verify_token: SecretStr | None = Field(default=None, min_length=1)

    def applied(self, tenant: Tenant) -> Tenant:
        """The tenant after the rotation (InvalidTenant when it names nothing to rotate)."""
        if self.app_secret is None and self.access_token is None and self.verify_token is None:
            raise InvalidTenant("give app_secret, access_token and/or verify_token")
        update: dict[str, Any] = {}
        if self.app_secret is not None:
            same_app = [s for s in tenant.app_secrets if s.app_id == self.app_id]
            kept = same_app[: MAX_SECRETS_PER_APP - 1] if self.keep_previous else []
            others = [s for s in tenant.app_secrets if s.app_id != self.app_id]
            new = AppSecret(app_id=self.app_id, secret=self.app_secret)
            update["app_secrets"] = (new, *kept, *others)
        if self.access_token is not None:
            update["access_token"] = self.access_token
        if self.verify_token is not None:
            update["verify_token"] = self.verify_token
        return _validated({**_revealed(tenant), **_reveal_update(update)})


def _revealed(tenant: Tenant) -> dict[str, Any]:
    """The tenant as the JSON the registry stores (secrets in clear, pii_key included)."""
    data: dict[str, Any] = orjson.loads(tenant.stored())
    return data


def _reveal_update(update: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in update.items():
        if isinstance(value, SecretStr):
            out[key] = value.get_secret_value()
        elif key == "app_secrets":
            out[key] = [{"app_id": s.app_id, "secret": s.get_secret_value()} for s in value]
        else:
            out[key] = value
    return out


def _secret_strings(value: Any, under_secret: bool = False) -> Iterator[str]:
    """Every string of the body under a member that holds a secret."""
    if isinstance(value, str):
        if under_secret:
            yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from _secret_strings(inner, under_secret or key in _SECRET_KEYS)
    elif isinstance(value, list):
        for inner in value:
            yield from _secret_strings(inner, under_secret)


def _described(exc: ValidationError, body: Any) -> str:
    """Pydantic's locations and messages, never its inputs, with the body's secrets
    scrubbed from the messages too (a validator could quote what it refused)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    message = "; ".join(parts)
    for secret in sorted(set(_secret_strings(body)), key=len, reverse=True):
        if len(secret) >= _MIN_SCRUBBED:  # a shorter one would mangle the words around
            message = message.replace(secret, "[redacted]")
    return message[:2000]


def _validated(data: Any) -> Tenant:
    """The tenant `data` describes (InvalidTenant with the reasons)."""
    try:
        return Tenant.model_validate(data)
    except ValidationError as exc:
        raise InvalidTenant(_described(exc, data)) from None


async def _json_body(request: Request) -> Any:
    """The body parsed, at most MAX_BODY_BYTES (as declared or as streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge(MAX_BODY_BYTES)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge(MAX_BODY_BYTES)
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise InvalidJson from None


async def _object_body(request: Request) -> dict[str, Any]:
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise InvalidTenant("the body must be a JSON object")
    return body


async def _registry_call(call: Awaitable[T]) -> T:
    """The registry's answer, its refusals mapped to the API's errors."""
    try:
        return await call
    except RegistryTenantExists as exc:
        raise TenantAlreadyExists(str(exc)) from None
    except RegistryTenantNotFound:
        raise TenantNotFound from None
    except TenantConflict as exc:
        raise TenantsConflict(str(exc)) from None
    except AdapterError as exc:
        log.warning("admin_store_unavailable", error_type=type(exc).__name__)
        raise StateStoreUnavailable from exc


class _Tenants:
    """What the routes share: the registry (None: this replica's directory only), the
    reload after a write, and the admin token no tenant secret may equal."""

    def __init__(
        self,
        directory: TenantDirectory,
        registry: TenantRegistry | None,
        reload: Callable[[], Awaitable[object]] | None,
        admin_token: SecretStr | None,
    ) -> None:
        self.directory = directory
        self.registry = registry
        self._reload = reload
        self._guard = admin_token.get_secret_value() if admin_token is not None else None

    async def current(self, tenant_id: str) -> Tenant:
        """The tenant as registered (TenantNotFound: 404)."""
        if self.registry is None:
            found = self.directory.get(tenant_id)
        else:
            found = await _registry_call(self.registry.get(tenant_id))
        if found is None:
            raise TenantNotFound
        return found

    async def listed(self) -> dict[str, Any]:
        """Every tenant's public view and the registry version they are of."""
        if self.registry is None:
            return {"tenants": [t.public() for t in self.directory.tenants], "version": None}
        version, tenants = await _registry_call(self.registry.load())
        return {"tenants": [t.public() for t in tenants], "version": version}

    async def store(self, tenant: Tenant, *, create: bool, action: str) -> dict[str, Any]:
        """Put the tenant, reload this replica, answer its public view and the version."""
        assert self.registry is not None  # write routes exist only with a registry
        if self._guard is not None and self._guard in tenant.secret_values():
            raise InvalidTenant("a secret of the tenant equals the admin token")
        version = await _registry_call(self.registry.put(tenant, create=create))
        log.info(f"tenant_{action}", tenant_id=tenant.id, registry_version=version)
        await self.reloaded()
        return {"tenant": (await self.current(tenant.id)).public(), "version": version}

    async def delete(self, tenant_id: str) -> dict[str, Any]:
        """Remove the tenant, reload this replica."""
        assert self.registry is not None
        version = await _registry_call(self.registry.delete(tenant_id))
        log.info("tenant_deleted", tenant_id=tenant_id, registry_version=version)
        await self.reloaded()
        return {"deleted": tenant_id, "version": version}

    async def reloaded(self) -> None:
        """This replica's directory reloaded now (the others poll within the period)."""
        if self._reload is not None:
            await self._reload()


def _patched(tenant: Tenant, body: dict[str, Any]) -> Tenant:
    """The tenant with each top-level member of `body` replaced, `rules` merged member by
    member (each rule given replaces that rule whole)."""
    if body.get("id", tenant.id) != tenant.id:
        raise InvalidTenant("id: a tenant's id cannot be changed")
    merged = _revealed(tenant)
    rules = body.pop("rules", None)
    if rules is not None:
        if not isinstance(rules, dict):
            raise InvalidTenant("rules: must be an object")
        merged["rules"] = {**merged.get("rules", {}), **rules}
    merged.update(body)
    return _validated(merged)


def _rotation(body: dict[str, Any]) -> Rotation:
    try:
        return Rotation.model_validate(body)
    except ValidationError as exc:
        # Every string of a rotation but app_id is a secret: all scrubbed.
        raise InvalidTenant(_described(exc, {"secret": list(_strings(body))})) from None


def tenant_routes(
    router: APIRouter,
    directory: TenantDirectory,
    registry: TenantRegistry | None,
    *,
    reload: Callable[[], Awaitable[object]] | None = None,
    admin_token: SecretStr | None = None,
) -> None:
    """Add the /admin/tenants routes to `router`; without a registry, only the reads of
    this replica's directory."""
    tenants = _Tenants(directory, registry, reload, admin_token)

    @router.get("/tenants", summary="Every tenant (never a secret)")
    async def list_tenants() -> dict[str, Any]:
        """The tenants' public views and the registry version they are of."""
        return await tenants.listed()

    @router.get(
        "/tenants/{tenant_id}",
        summary="One tenant (never a secret)",
        responses={404: {"description": "No such tenant"}},
    )
    async def show_tenant(tenant_id: str) -> dict[str, Any]:
        """The tenant's public view."""
        return {"tenant": (await tenants.current(tenant_id)).public()}

    if registry is not None:
        _write_routes(router, tenants)


def _write_routes(router: APIRouter, tenants: _Tenants) -> None:
    """POST, PUT, PATCH, DELETE and rotate."""

    @router.post("/tenants", status_code=201, summary="Create a tenant")
    async def create_tenant(request: Request) -> JSONResponse:
        """Register the tenant the body describes (the tenants-file shape)."""
        tenant = _validated(await _object_body(request))
        answer = await tenants.store(tenant, create=True, action="created")
        return JSONResponse(answer, status_code=201)

    @router.put("/tenants/{tenant_id}", summary="Replace a tenant whole")
    async def replace_tenant(tenant_id: str, request: Request) -> dict[str, Any]:
        """The body is the whole tenant; its id, when given, must be the path's."""
        body = await _object_body(request)
        if body.setdefault("id", tenant_id) != tenant_id:
            raise InvalidTenant("id: the body's id differs from the path's")
        await tenants.current(tenant_id)
        return await tenants.store(_validated(body), create=False, action="replaced")

    @router.patch("/tenants/{tenant_id}", summary="Change part of a tenant")
    async def patch_tenant(tenant_id: str, request: Request) -> dict[str, Any]:
        """Each top-level member given replaces the tenant's; `rules` member by member."""
        body = await _object_body(request)
        tenant = _patched(await tenants.current(tenant_id), body)
        return await tenants.store(tenant, create=False, action="updated")

    @router.delete(
        "/tenants/{tenant_id}",
        summary="Delete a tenant",
        responses={404: {"description": "No such tenant"}},
    )
    async def delete_tenant(tenant_id: str) -> dict[str, Any]:
        """Remove it; seeding from WA_TENANTS_FILE never brings it back."""
        return await tenants.delete(tenant_id)

    @router.post("/tenants/{tenant_id}/rotate", summary="Rotate a secret or token")
    async def rotate(tenant_id: str, request: Request) -> dict[str, Any]:
        """A new app secret first (the previous one of that app kept while keep_previous),
        and/or a new access or verify token."""
        rotation = _rotation(await _object_body(request))
        tenant = rotation.applied(await tenants.current(tenant_id))
        return await tenants.store(tenant, create=False, action="rotated")


def _strings(value: Any) -> Iterator[str]:
    """Every string in the body."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for inner in value.values():
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)
