"""The Graph API the service calls, simulated on loopback: media, phone numbers, templates.

Endpoints, as Meta documents them (any `v<major>.<minor>` version is accepted):

- `GET /{version}/{media-id}` → `{messaging_product, url, mime_type, sha256, file_size, id}`;
  the `url` is a short-lived download link (`url_ttl_s`, Meta says 5 minutes).
- `GET /whatsapp_business/attachments/?mid=&ext=&hash=` → the media bytes; needs the same
  bearer token; an expired or tampered link answers 404 with a Graph error body.
- `GET /{version}/{phone-number-id}` → the number's verified name, quality rating, ...
- `GET /{version}/{waba-id}` → the WhatsApp Business Account's name, review and
  verification status, currency, time zone, template namespace.
- `GET /{version}/{waba-id}/message_templates` → `{data: [...], paging: {cursors}}`.
- `POST /{version}/{phone-number-id}/media` (multipart: `file` with its content type,
  `type`, `messaging_product=whatsapp`) → `{"id": "<media-id>"}`: the upload, owned by the
  number's tenant, which the media lookup and its link then serve with the real sha256
  and size. `type` may be left out when the file part names its type (`-F
  'file=@photo.jpg;type=image/jpeg'`, as Meta's example does); a missing parameter or an
  unsupported type is Meta's code 100, another tenant's number code 100 subcode 33.

Objects answer Meta's default fields, or those named by `?fields=` (an unknown one is
Meta's code 100 "nonexisting field"). Every call needs `Authorization: Bearer <token>` (or
`?access_token=`) of the tenant that owns the object; a revoked token (`GraphSim.revoke`)
answers code 190 subcode 460. Each token has a call allowance per window; past it, calls
fail with the documented throttling codes (4 for media, 80007 for WABA objects). Responses
carry `X-Business-Use-Case-Usage` and `X-App-Usage`.

Tests shape what the service meets: `add_media` registers a file with any bytes and MIME
type (and, to lie like a broken upstream, another sha256 or size than the truth, or a
download that redirects to another base URL, served there from `/whatsapp_business/cdn/`
by the signed link alone, as a CDN does); `fail` makes an object's next lookups (a WABA's
templates: `<waba-id>/message_templates`; uploads: `<phone-number-id>/media`) or downloads
answer a documented error ("fails twice, then works"); `set_fields` overrides an object's
fields; `media_base_url` issues links on another host than the simulator's own;
`downloads` records each download request. A request can also force any documented error
with the `X-Sim-Error: <code>` header.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from loadtest.graph_errors import (
    APP_RATE_LIMIT,
    BY_CODE,
    EXPIRED_URL,
    INVALID_TOKEN,
    MISSING_TOKEN,
    NO_SUCH_OBJECT,
    NO_SUCH_POST_OBJECT,
    SERVICE_UNAVAILABLE,
    SESSION_INVALIDATED,
    UPLOAD_TYPES,
    WABA_RATE_LIMIT,
    GraphError,
    app_usage_header,
    error_response,
    invalid_parameter,
    missing_parameter,
    nonexisting_field,
    unsupported_upload_type,
    usage_header,
)
from loadtest.payloads import MEDIA_TYPES
from loadtest.tenants import BusinessNumber, SimTenant

_VERSION = r"v\d+\.\d+"
_MEDIA_ID = re.compile(r"^\d{6,20}$")
_MIME_BY_DIGIT = list(MEDIA_TYPES.values())


@dataclass(slots=True)
class GraphSimConfig:
    """Who may call, how long links live, how many calls a token gets per window."""

    tenants: list[SimTenant]
    url_ttl_s: float = 300.0
    calls_per_window: int = 0  # 0: unlimited
    window_s: float = 60.0
    link_key: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    # Where download links point (Meta: https://lookaside.fbsbx.com/), with a trailing
    # slash; None: the simulator's own URL as the request reached it.
    media_base_url: str | None = None


@dataclass(frozen=True, slots=True)
class Media:
    """A media object: bytes and what the lookup reports about them."""

    id: str
    mime_type: str
    content: bytes
    owner: str | None = None  # the tenant id that may fetch it; None: any tenant
    announced_sha256: str | None = None  # what the lookup says instead of the truth
    announced_size: int | None = None
    redirect_to: str | None = None  # a base URL the download redirects to (trailing /)
    chunked: bool = False  # served without Content-Length (only the bytes tell the size)

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the content."""
        return hashlib.sha256(self.content).hexdigest()

    @property
    def reported_sha256(self) -> str:
        """The sha256 the lookup reports (the truth unless a test made it lie)."""
        return self.announced_sha256 or self.sha256

    @property
    def reported_size(self) -> int:
        """The file_size the lookup reports."""
        return len(self.content) if self.announced_size is None else self.announced_size


@dataclass(frozen=True, slots=True)
class Forced:
    """An error an object's next call answers instead of serving (`GraphSim.fail`)."""

    error: GraphError
    regain_minutes: int = 0  # the usage header's estimated_time_to_regain_access


@dataclass(frozen=True, slots=True)
class DownloadHit:
    """A request that reached a download route, as the simulator saw it."""

    media_id: str
    host: str  # the Host header
    path: str
    authorized: bool  # it carried a bearer token


Stage = Literal["lookup", "download"]


def media_for(media_id: str) -> Media:
    """Deterministic media for any well-formed id (so generated webhooks resolve)."""
    seed = hashlib.sha256(media_id.encode()).digest()
    size = 512 + int.from_bytes(seed[:2], "big") % 8192
    content = (seed * (size // len(seed) + 1))[:size]
    return Media(media_id, _MIME_BY_DIGIT[int(media_id[-1]) % len(_MIME_BY_DIGIT)], content)


class GraphSim:
    """State of the simulated Graph API: tokens, call windows, signed links."""

    def __init__(self, config: GraphSimConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self._by_token = {t.access_token: t for t in config.tenants}
        self._calls: dict[str, deque[float]] = {}
        self.phone_numbers = {n.phone_number_id for t in config.tenants for n in t.numbers}
        self.media: dict[str, Media] = {}
        self.revoked: set[str] = set()  # tokens
        self.fields: dict[str, dict[str, object]] = {}  # per object id, over the defaults
        # The latest download requests (bounded: a long load run must not grow it).
        self.downloads: deque[DownloadHit] = deque(maxlen=10_000)
        self._forced: dict[tuple[Stage, str], deque[Forced]] = {}

    def add_media(
        self,
        media_id: str,
        content: bytes,
        mime_type: str,
        *,
        owner: str | None = None,
        announced_sha256: str | None = None,
        announced_size: int | None = None,
        redirect_to: str | None = None,
        chunked: bool = False,
    ) -> Media:
        """Register a media object (any id, any bytes) that lookups and links then serve."""
        media = Media(
            media_id,
            mime_type,
            content,
            owner,
            announced_sha256,
            announced_size,
            redirect_to,
            chunked,
        )
        self.media[media_id] = media
        return media

    def new_media_id(self) -> str:
        """A fresh 16-digit media id (Meta's are numeric) that no object holds yet."""
        while True:
            media_id = str(10**15 + secrets.randbelow(9 * 10**15))
            if media_id not in self.media and media_id not in self.phone_numbers:
                return media_id

    def revoke(self, tenant_id: str) -> None:
        """The tenant's token stops working (code 190, session invalidated)."""
        self.revoked |= {t.access_token for t in self.config.tenants if t.id == tenant_id}

    def fail(
        self,
        object_id: str,
        times: int,
        error: GraphError = SERVICE_UNAVAILABLE,
        *,
        on: Stage = "lookup",
        regain_minutes: int = 0,
    ) -> None:
        """The object's next `times` lookups (or downloads) answer `error`, then it works."""
        queue = self._forced.setdefault((on, object_id), deque())
        queue.extend(Forced(error, regain_minutes) for _ in range(times))

    def forced(self, on: Stage, object_id: str) -> Forced | None:
        """Take the next forced error of the object, if any."""
        queue = self._forced.get((on, object_id))
        return queue.popleft() if queue else None

    def set_fields(self, object_id: str, **values: object) -> None:
        """Override fields of a phone number or WABA (e.g. quality_rating="RED")."""
        self.fields.setdefault(object_id, {}).update(values)

    def tenant_of(self, request: Request) -> SimTenant | GraphError:
        """The caller's tenant from its bearer token, or the documented auth error."""
        token = _token(request)
        if not token:
            return MISSING_TOKEN
        if token in self.revoked:
            return SESSION_INVALIDATED
        tenant = self._by_token.get(token)
        return tenant if tenant is not None else INVALID_TOKEN

    def count_call(self, token: str) -> tuple[int, bool]:
        """Record a call; (calls in the window, whether the allowance is exceeded)."""
        now = self.clock()
        calls = self._calls.setdefault(token, deque())
        while calls and calls[0] <= now - self.config.window_s:
            calls.popleft()
        calls.append(now)
        limit = self.config.calls_per_window
        return len(calls), bool(limit and len(calls) > limit)

    def link(self, media_id: str, base_url: str, route: str = "attachments") -> str:
        """A download URL for the media that expires after url_ttl_s."""
        ext = int(self.clock() + self.config.url_ttl_s)
        query = f"mid={media_id}&ext={ext}&hash={self._sig(media_id, ext)}"
        return f"{base_url}whatsapp_business/{route}/?{query}"

    def _sig(self, media_id: str, ext: int) -> str:
        mac = hmac.new(self.config.link_key, f"{media_id}:{ext}".encode(), "sha256")
        return mac.hexdigest()[:32]

    def link_valid(self, media_id: str, ext: str, sig: str) -> bool:
        """The link was issued by us and has not expired."""
        if not ext.isdigit() or not hmac.compare_digest(self._sig(media_id, int(ext)), sig):
            return False
        return self.clock() <= int(ext)

    def lookup_media(self, media_id: str, tenant: SimTenant | None = None) -> Media | None:
        """A registered media object (None for a tenant that does not own it), else a
        deterministic one for a well-formed id."""
        if media_id in self.media:
            media = self.media[media_id]
            owned = tenant is None or media.owner in (None, tenant.id)
            return media if owned else None
        return media_for(media_id) if _MEDIA_ID.match(media_id) else None


def _media_body(media: Media, headers: dict[str, str]) -> Response:
    """The media's bytes, whole (with Content-Length) or chunked (without)."""
    if not media.chunked:
        return Response(media.content, media_type=media.mime_type, headers=headers)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(media.content), 16384):
            yield media.content[start : start + 16384]

    return StreamingResponse(chunks(), media_type=media.mime_type, headers=headers)


def _token(request: Request) -> str:
    """The bearer token of the request (header, else `?access_token=`), or ""."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    return token or request.query_params.get("access_token", "")


_TEMPLATE_NAMES = [f"order_update_{i}" for i in range(60)]

# What a guarded call yields: the caller's tenant (None if unauthenticated), the error
# response to return instead of serving (None to serve), and the usage headers.
_Guarded = tuple[SimTenant | None, Response | None, dict[str, str]]


def _template(name: str, template_id: int) -> dict[str, object]:
    """Every field a message template has here, as Meta names them."""
    return {
        "name": name,
        "parameter_format": "POSITIONAL",
        "language": "en_US",
        "status": "APPROVED",
        "category": "UTILITY",
        "id": str(template_id),
        "components": [{"type": "BODY", "text": "Your order {{1}} has shipped."}],
        "quality_score": {"score": "GREEN", "date": 1_700_000_000},
        "rejected_reason": "NONE",
    }


_TEMPLATE_DEFAULT_FIELDS = (
    "name",
    "parameter_format",
    "language",
    "status",
    "category",
    "id",
    "components",
)


# The fields Meta answers when `?fields=` is not given.
_NUMBER_DEFAULT_FIELDS = (
    "verified_name",
    "code_verification_status",
    "display_phone_number",
    "quality_rating",
    "platform_type",
    "throughput",
    "id",
)
_WABA_DEFAULT_FIELDS = ("id", "name", "timezone_id", "message_template_namespace")


def _phone_number_info(tenant: SimTenant, number: BusinessNumber) -> dict[str, object]:
    """Every field the phone-number node has here, as Meta names them."""
    return {
        "verified_name": f"{tenant.id} store",
        "code_verification_status": "VERIFIED",
        "display_phone_number": number.display_phone_number,
        "quality_rating": "GREEN",
        "platform_type": "CLOUD_API",
        "throughput": {"level": "STANDARD"},
        "id": number.phone_number_id,
        "name_status": "APPROVED",
        "status": "CONNECTED",
        "messaging_limit_tier": "TIER_1K",
        "whatsapp_business_manager_messaging_limit": "TIER_2K",
        "is_official_business_account": False,
        "account_mode": "LIVE",
    }


def _waba_info(tenant: SimTenant, waba_id: str) -> dict[str, object]:
    """Every field the WhatsApp Business Account node has here, as Meta names them."""
    return {
        "id": waba_id,
        "name": f"{tenant.id} business",
        "timezone_id": "1",
        "message_template_namespace": hashlib.sha256(waba_id.encode()).hexdigest()[:36],
        "account_review_status": "APPROVED",
        "business_verification_status": "verified",
        "currency": "USD",
        "country": "US",
        "ownership_type": "CLIENT_OWNED",
    }


def _select(
    record: dict[str, object], fields: str, defaults: tuple[str, ...], node_type: str
) -> dict[str, object] | GraphError:
    """The record's `?fields=` (nested `{...}` selections taken whole), else its defaults;
    a field the node does not have is Meta's code 100."""
    names = [f.strip() for f in re.sub(r"\{[^}]*\}", "", fields).split(",") if f.strip()]
    for name in names:
        if name not in record:
            return nonexisting_field(name, node_type)
    chosen = names or list(defaults)
    return {name: record[name] for name in [*chosen, "id"] if name in record}


async def _upload_fields(form: FormData) -> tuple[bytes, str] | GraphError:
    """The upload's bytes and MIME type (the `type` field, else the file part's), or the
    error Meta answers for the first parameter that is missing or wrong."""
    product = form.get("messaging_product")
    if not isinstance(product, str) or not product:
        return missing_parameter("messaging_product")
    if product.lower() != "whatsapp":
        return invalid_parameter("messaging_product", ("WHATSAPP",), product)
    part = form.get("file")
    if not isinstance(part, UploadFile):
        return missing_parameter("file")
    declared = form.get("type")
    mime_type = declared if isinstance(declared, str) and declared else part.content_type
    if not mime_type:
        return missing_parameter("type")
    if mime_type.split(";")[0].strip().lower() not in UPLOAD_TYPES:
        return unsupported_upload_type(mime_type)
    return await part.read(), mime_type


class GraphRoutes:
    """The simulated Graph API's endpoints, one method per route, over a GraphSim."""

    def __init__(self, sim: GraphSim) -> None:
        self.sim = sim

    def register(self, app: FastAPI) -> None:
        """Add the routes to the app (most specific path first)."""
        app.get("/whatsapp_business/attachments/")(self.download)
        app.get("/whatsapp_business/cdn/")(self.cdn_download)
        app.get("/{version}/{object_id}/message_templates")(self.templates)
        app.post("/{version}/{object_id}/media")(self.upload)
        app.get("/{version}/{object_id}")(self.graph_object)

    def _usage_headers(
        self, tenant: SimTenant, business: str | None, regain_minutes: int = 0
    ) -> tuple[dict[str, str], bool]:
        """Count the call; the usage headers to send and whether the allowance is exceeded."""
        used, exceeded = self.sim.count_call(tenant.access_token)
        limit = self.sim.config.calls_per_window
        regain = int(self.sim.config.window_s // 60) if exceeded else regain_minutes
        header = usage_header(business or tenant.waba_ids[0], used, limit or 10**9, regain)
        app = app_usage_header(used, limit or 10**9)
        return {"X-Business-Use-Case-Usage": header, "X-App-Usage": app}, exceeded

    def guard(
        self,
        request: Request,
        business: str | None,
        limit_error: GraphError,
        forced_on: tuple[Stage, str] | None = None,
    ) -> _Guarded:
        """Authenticate and count the call; the error to answer instead, if any (a forced
        one of the object first, then the X-Sim-Error header's, then the allowance's)."""
        tenant = self.sim.tenant_of(request)
        if isinstance(tenant, GraphError):
            return None, error_response(tenant), {}
        forced = self.sim.forced(*forced_on) if forced_on else None
        regain = forced.regain_minutes if forced else 0
        headers, exceeded = self._usage_headers(tenant, business, regain)
        if forced is not None:
            return tenant, error_response(forced.error, headers), headers
        header = request.headers.get("x-sim-error", "")
        if header.isdigit() and int(header) in BY_CODE:
            return tenant, error_response(BY_CODE[int(header)], headers), headers
        if exceeded:
            return tenant, error_response(limit_error, headers), headers
        return tenant, None, headers

    def _hit(self, request: Request, mid: str) -> None:
        host = request.headers.get("host", "")
        self.sim.downloads.append(DownloadHit(mid, host, request.url.path, bool(_token(request))))

    async def download(
        self, request: Request, mid: str = "", ext: str = "", hash: str = ""
    ) -> Response:
        """The media bytes behind a link from the media lookup (or a redirect to them)."""
        self._hit(request, mid)
        tenant, failed, headers = self.guard(
            request, None, APP_RATE_LIMIT, forced_on=("download", mid)
        )
        if failed is not None:
            return failed
        media = self.sim.lookup_media(mid, tenant)
        if media is None or not self.sim.link_valid(mid, ext, hash):
            return error_response(EXPIRED_URL, headers)
        if media.redirect_to is not None:
            location = self.sim.link(mid, media.redirect_to, route="cdn")
            return Response(status_code=302, headers={**headers, "Location": location})
        return _media_body(media, headers)

    async def cdn_download(
        self, request: Request, mid: str = "", ext: str = "", hash: str = ""
    ) -> Response:
        """Where a redirected download lands: the signed link alone is the credential, as
        on a CDN (no bearer token needed, and the client should not send one across)."""
        self._hit(request, mid)
        media = self.sim.lookup_media(mid)
        if media is None or not self.sim.link_valid(mid, ext, hash):
            return error_response(EXPIRED_URL)
        return _media_body(media, {})

    async def upload(self, request: Request, version: str, object_id: str) -> Response:
        """Meta's media upload on a number of the caller's tenant; the bytes are registered
        with `add_media(owner=<tenant>)`, so the lookup reports their real sha256 and size."""
        forced_on: tuple[Stage, str] = ("lookup", f"{object_id}/media")
        tenant, failed, headers = self.guard(request, None, APP_RATE_LIMIT, forced_on)
        if failed is not None:
            return failed
        assert tenant is not None
        owned = any(n.phone_number_id == object_id for n in tenant.numbers)
        if not re.fullmatch(_VERSION, version) or not owned:
            return error_response(NO_SUCH_POST_OBJECT, headers)
        try:
            async with request.form() as form:  # closes the parts' temporary files
                upload = await _upload_fields(form)
        except HTTPException:  # a malformed multipart body: Meta finds no file in it
            upload = missing_parameter("file")
        if isinstance(upload, GraphError):
            return error_response(upload, headers)
        content, mime_type = upload
        media = self.sim.add_media(self.sim.new_media_id(), content, mime_type, owner=tenant.id)
        return JSONResponse({"id": media.id}, headers=headers)

    async def templates(
        self,
        request: Request,
        version: str,
        object_id: str,
        limit: int = 25,
        after: str = "",
        fields: str = "",
    ) -> Response:
        """A WABA's message templates, paged with cursors (`set_fields` on a template id
        changes that template)."""
        forced_on: tuple[Stage, str] = ("lookup", f"{object_id}/message_templates")
        tenant, failed, headers = self.guard(request, object_id, WABA_RATE_LIMIT, forced_on)
        if failed is not None:
            return failed
        assert tenant is not None
        if not re.fullmatch(_VERSION, version) or object_id not in tenant.waba_ids:
            return error_response(NO_SUCH_OBJECT, headers)
        start = int(after) if after.isdigit() else 0
        page = _TEMPLATE_NAMES[start : start + max(1, min(limit, 100))]
        data: list[dict[str, object]] = []
        for i, name in enumerate(page):
            record = _template(name, 10**15 + start + i)
            record |= self.sim.fields.get(str(record["id"]), {})
            selected = _select(record, fields, _TEMPLATE_DEFAULT_FIELDS, "MessageTemplate")
            if isinstance(selected, GraphError):
                return error_response(selected, headers)
            data.append(selected)
        end = start + len(page)
        paging: dict[str, object] = {"cursors": {"before": str(start), "after": str(end)}}
        if end < len(_TEMPLATE_NAMES):
            nxt = f"{version}/{object_id}/message_templates?after={end}"
            paging["next"] = f"{request.base_url}{nxt}"
        return JSONResponse({"data": data, "paging": paging}, headers=headers)

    async def graph_object(
        self, request: Request, version: str, object_id: str, fields: str = ""
    ) -> Response:
        """A phone number's or WABA's fields, or a media object's metadata and link."""
        waba = object_id if object_id in self._wabas() else None
        tenant, failed, headers = self.guard(
            request, waba, WABA_RATE_LIMIT if waba else APP_RATE_LIMIT, ("lookup", object_id)
        )
        if failed is not None:
            return failed
        assert tenant is not None
        if not re.fullmatch(_VERSION, version):
            return error_response(NO_SUCH_OBJECT, headers)
        number = next((n for n in tenant.numbers if n.phone_number_id == object_id), None)
        if number is not None:
            record = {**_phone_number_info(tenant, number), **self.sim.fields.get(object_id, {})}
            return self._answer(record, fields, _NUMBER_DEFAULT_FIELDS, "PhoneNumber", headers)
        if object_id in tenant.waba_ids:
            record = {**_waba_info(tenant, object_id), **self.sim.fields.get(object_id, {})}
            kind = "WhatsAppBusinessAccount"
            return self._answer(record, fields, _WABA_DEFAULT_FIELDS, kind, headers)
        return self._media_info(request, tenant, object_id, headers)

    def _wabas(self) -> set[str]:
        return {w for t in self.sim.config.tenants for w in t.waba_ids}

    @staticmethod
    def _answer(
        record: dict[str, object],
        fields: str,
        defaults: tuple[str, ...],
        node_type: str,
        headers: dict[str, str],
    ) -> Response:
        selected = _select(record, fields, defaults, node_type)
        if isinstance(selected, GraphError):
            return error_response(selected, headers)
        return JSONResponse(selected, headers=headers)

    def _media_info(
        self, request: Request, tenant: SimTenant, object_id: str, headers: dict[str, str]
    ) -> Response:
        """A media object's metadata and a fresh download link, or NO_SUCH_OBJECT."""
        sim = self.sim
        known = object_id not in sim.phone_numbers and object_id not in self._wabas()
        media = sim.lookup_media(object_id, tenant) if known else None
        if media is None:  # Meta does not say whether it exists or is someone else's
            return error_response(NO_SUCH_OBJECT, headers)
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "url": sim.link(media.id, sim.config.media_base_url or str(request.base_url)),
                "mime_type": media.mime_type,
                "sha256": media.reported_sha256,
                "file_size": media.reported_size,
                "id": media.id,
            },
            headers=headers,
        )


def create_graph_app(sim: GraphSim) -> FastAPI:
    """The FastAPI app serving the simulated Graph API."""
    app = FastAPI(title="Graph API simulator", version="0.1.0")
    app.state.sim = sim
    GraphRoutes(sim).register(app)
    return app
