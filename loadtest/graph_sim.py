"""The Graph API the service calls, simulated on loopback: media, phone numbers, templates.

Endpoints, as Meta documents them (any `v<major>.<minor>` version is accepted):

- `GET /{version}/{media-id}` → `{messaging_product, url, mime_type, sha256, file_size, id}`;
  the `url` is a short-lived download link (`url_ttl_s`, Meta says 5 minutes).
- `GET /whatsapp_business/attachments/?mid=&ext=&hash=` → the media bytes; needs the same
  bearer token; an expired or tampered link answers 404 with a Graph error body.
- `GET /{version}/{phone-number-id}` → the number's verified name, quality rating, ...
- `GET /{version}/{waba-id}/message_templates` → `{data: [...], paging: {cursors}}`.

Every call needs `Authorization: Bearer <token>` (or `?access_token=`) of the tenant that
owns the object. Each token has a call allowance per window; past it, calls fail with the
documented throttling codes (4 for media, 80007 for WABA objects). A test can force any
documented error with the `X-Sim-Error: <code>` request header.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from loadtest.graph_errors import (
    APP_RATE_LIMIT,
    BY_CODE,
    EXPIRED_URL,
    INVALID_TOKEN,
    MISSING_TOKEN,
    NO_SUCH_OBJECT,
    WABA_RATE_LIMIT,
    GraphError,
    error_response,
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


@dataclass(frozen=True, slots=True)
class Media:
    """A media object: bytes and what the lookup reports about them."""

    id: str
    mime_type: str
    content: bytes

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the content, as the lookup reports it."""
        return hashlib.sha256(self.content).hexdigest()


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

    def tenant_of(self, request: Request) -> SimTenant | GraphError:
        """The caller's tenant from its bearer token, or the documented auth error."""
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        token = token or request.query_params.get("access_token", "")
        if not token:
            return MISSING_TOKEN
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

    def link(self, media_id: str, base_url: str) -> str:
        """A download URL for the media that expires after url_ttl_s."""
        ext = int(self.clock() + self.config.url_ttl_s)
        query = f"mid={media_id}&ext={ext}&hash={self._sig(media_id, ext)}"
        return f"{base_url}whatsapp_business/attachments/?{query}"

    def _sig(self, media_id: str, ext: int) -> str:
        mac = hmac.new(self.config.link_key, f"{media_id}:{ext}".encode(), "sha256")
        return mac.hexdigest()[:32]

    def link_valid(self, media_id: str, ext: str, sig: str) -> bool:
        """The link was issued by us and has not expired."""
        if not ext.isdigit() or not hmac.compare_digest(self._sig(media_id, int(ext)), sig):
            return False
        return self.clock() <= int(ext)

    def lookup_media(self, media_id: str) -> Media | None:
        """A registered media object, else a deterministic one for a well-formed id."""
        if media_id in self.media:
            return self.media[media_id]
        return media_for(media_id) if _MEDIA_ID.match(media_id) else None


_TEMPLATE_NAMES = [f"order_update_{i}" for i in range(60)]

# What a guarded call yields: the caller's tenant (None if unauthenticated), the error
# response to return instead of serving (None to serve), and the usage headers.
_Guarded = tuple[SimTenant | None, Response | None, dict[str, str]]


def _template(name: str, template_id: int) -> dict[str, object]:
    """One message template as the WABA templates listing returns it."""
    return {
        "name": name,
        "parameter_format": "POSITIONAL",
        "language": "en_US",
        "status": "APPROVED",
        "category": "UTILITY",
        "id": str(template_id),
        "components": [{"type": "BODY", "text": "Your order {{1}} has shipped."}],
    }


def _phone_number_info(tenant: SimTenant, number: BusinessNumber) -> dict[str, object]:
    """What the phone-number lookup reports about a tenant's business number."""
    return {
        "verified_name": f"{tenant.id} store",
        "code_verification_status": "VERIFIED",
        "display_phone_number": number.display_phone_number,
        "quality_rating": "GREEN",
        "platform_type": "CLOUD_API",
        "throughput": {"level": "STANDARD"},
        "id": number.phone_number_id,
    }


class GraphRoutes:
    """The simulated Graph API's endpoints, one method per route, over a GraphSim."""

    def __init__(self, sim: GraphSim) -> None:
        self.sim = sim

    def register(self, app: FastAPI) -> None:
        """Add the routes to the app (most specific path first)."""
        app.get("/whatsapp_business/attachments/")(self.download)
        app.get("/{version}/{object_id}/message_templates")(self.templates)
        app.get("/{version}/{object_id}")(self.graph_object)

    def _usage_headers(
        self, tenant: SimTenant, business: str | None
    ) -> tuple[dict[str, str], bool]:
        """Count the call; the usage headers to send and whether the allowance is exceeded."""
        used, exceeded = self.sim.count_call(tenant.access_token)
        limit = self.sim.config.calls_per_window
        regain = int(self.sim.config.window_s // 60) if exceeded else 0
        header = usage_header(business or tenant.waba_ids[0], used, limit or 10**9, regain)
        return {"X-Business-Use-Case-Usage": header}, exceeded

    def guard(self, request: Request, business: str | None, limit_error: GraphError) -> _Guarded:
        """Authenticate and count the call; the error to answer instead, if any."""
        tenant = self.sim.tenant_of(request)
        if isinstance(tenant, GraphError):
            return None, error_response(tenant), {}
        headers, exceeded = self._usage_headers(tenant, business)
        forced = request.headers.get("x-sim-error", "")
        if forced.isdigit() and int(forced) in BY_CODE:
            return tenant, error_response(BY_CODE[int(forced)], headers), headers
        if exceeded:
            return tenant, error_response(limit_error, headers), headers
        return tenant, None, headers

    async def download(
        self, request: Request, mid: str = "", ext: str = "", hash: str = ""
    ) -> Response:
        """The media bytes behind a link from the media lookup."""
        _tenant, failed, headers = self.guard(request, None, APP_RATE_LIMIT)
        if failed is not None:
            return failed
        media = self.sim.lookup_media(mid)
        if media is None or not self.sim.link_valid(mid, ext, hash):
            return error_response(EXPIRED_URL, headers)
        return Response(media.content, media_type=media.mime_type, headers=headers)

    async def templates(
        self, request: Request, version: str, object_id: str, limit: int = 25, after: str = ""
    ) -> Response:
        """A WABA's message templates, paged with cursors."""
        tenant, failed, headers = self.guard(request, object_id, WABA_RATE_LIMIT)
        if failed is not None:
            return failed
        assert tenant is not None
        if not re.fullmatch(_VERSION, version) or object_id not in tenant.waba_ids:
            return error_response(NO_SUCH_OBJECT, headers)
        start = int(after) if after.isdigit() else 0
        page = _TEMPLATE_NAMES[start : start + max(1, min(limit, 100))]
        data = [_template(name, 10**15 + start + i) for i, name in enumerate(page)]
        end = start + len(page)
        paging: dict[str, object] = {"cursors": {"before": str(start), "after": str(end)}}
        if end < len(_TEMPLATE_NAMES):
            nxt = f"{version}/{object_id}/message_templates?after={end}"
            paging["next"] = f"{request.base_url}{nxt}"
        return JSONResponse({"data": data, "paging": paging}, headers=headers)

    async def graph_object(self, request: Request, version: str, object_id: str) -> Response:
        """A phone number's info, or a media object's metadata and download link."""
        tenant, failed, headers = self.guard(request, None, APP_RATE_LIMIT)
        if failed is not None:
            return failed
        assert tenant is not None
        if not re.fullmatch(_VERSION, version):
            return error_response(NO_SUCH_OBJECT, headers)
        number = next((n for n in tenant.numbers if n.phone_number_id == object_id), None)
        if number is not None:
            return JSONResponse(_phone_number_info(tenant, number), headers=headers)
        return self._media_info(request, object_id, headers)

    def _media_info(self, request: Request, object_id: str, headers: dict[str, str]) -> Response:
        """A media object's metadata and a fresh download link, or NO_SUCH_OBJECT."""
        sim = self.sim
        media = sim.lookup_media(object_id) if object_id not in sim.phone_numbers else None
        if media is None:  # Meta does not say whether it exists or is someone else's
            return error_response(NO_SUCH_OBJECT, headers)
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "url": sim.link(media.id, str(request.base_url)),
                "mime_type": media.mime_type,
                "sha256": media.sha256,
                "file_size": len(media.content),
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
