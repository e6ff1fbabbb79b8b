"""The Graph API client: media lookups and downloads (MediaSource), business accounts.

One per process (an httpx.AsyncClient with its own pool), built by the composition root with
the tenants' token lookup. Every call carries the tenant's bearer token in the header,
never in the URL, and nothing here logs a token or a signed media URL's query.

Retries, each decided here so the callers see one answer: 5xx, network errors and Meta's
transient codes are retried `max_retries` times with full-jitter exponential backoff
(`retry_base_s * 2**attempt`), because they are Meta's trouble and usually pass within
seconds. Throttling is retried only when Meta's wait (X-Business-Use-Case-Usage's
`estimated_time_to_regain_access`, else the backoff) is at most `max_retry_wait_s`: a
longer wait is the caller's to schedule (GraphThrottled.retry_after_s), not a worker to
block. Everything else is final for this call.

Downloads (the SSRF guard, adapters/media_hosts.py): redirects are followed by hand, at
most `max_redirects`, every hop's host checked against the allowlist and its DNS answers
against the public-address rule; the connection then goes to the checked address itself
(the URL's host replaced by the IP, `Host` and TLS SNI set to the name, so certificates are
still verified against the name), so no second DNS answer is ever used. The bearer token
goes only to the first URL's origin (scheme, host, port) and same-origin hops: like
`curl -L`, a hop to another host, even an allowed one, gets no token. Plain http is allowed
only for explicitly listed hosts. The body streams to the file with a running count, cut
at `max_bytes`; a failed download leaves no file.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import structlog

from adapters.errors import (
    GraphError,
    GraphThrottled,
    MediaRejected,
    MediaUnavailable,
    TransientError,
    UrlExpired,
)
from adapters.graph_account import (
    PHONE_NUMBER_FIELDS,
    TEMPLATE_FIELDS,
    WABA_FIELDS,
    PhoneNumberInfo,
    TemplateInfo,
    WabaInfo,
)
from adapters.graph_errors import (
    MetaError,
    account_error,
    media_lookup_error,
    parse_error,
    throttled,
)
from adapters.graph_usage import GraphUsage, usage_from_headers
from adapters.media_hosts import (
    DEFAULT_MEDIA_HOSTS,
    HostPolicy,
    Resolver,
    checked_addresses,
    normalize_host,
    system_resolver,
)
from adapters.ports import GraphBudget, MediaInfo

log = structlog.get_logger("graph")

T = TypeVar("T")
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # Graph ids are digits; never a `/`, `.` or `?`
_REDIRECTS = (301, 302, 303, 307, 308)
_ERROR_BODY_CAP = 64 * 1024
_CHUNK = 64 * 1024


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _url(text: str, base: httpx.URL | None = None) -> httpx.URL:
    """The URL (a redirect's location resolved against `base`); a malformed one is refused
    like a host that is not allowed."""
    try:
        return base.join(text) if base is not None else httpx.URL(text)
    except (httpx.InvalidURL, ValueError) as exc:
        raise MediaRejected("host_not_allowed", "malformed media URL") from exc


class _NoCookies(DefaultCookiePolicy):
    """Never keep or send cookies: one client serves every tenant."""

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False


class GraphClient:
    """Meta's Graph API for every tenant: implements the MediaSource port."""

    def __init__(
        self,
        token_for: Callable[[str], str | None],
        *,
        base_url: str = "https://graph.facebook.com",
        api_version: str = "v23.0",
        allowed_hosts: Iterable[str] = DEFAULT_MEDIA_HOSTS,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        download_timeout_s: float = 300.0,
        max_retries: int = 3,
        retry_base_s: float = 0.5,
        max_retry_wait_s: float = 5.0,
        max_redirects: int = 3,
        max_connections: int = 32,
        on_usage: Callable[[str, GraphUsage], None] | None = None,
        resolver: Resolver | None = None,
        budget: GraphBudget | None = None,
    ) -> None:
        """`token_for(tenant_id)`: the tenant's access token, None when it has none.
        `allowed_hosts`: WA_MEDIA_ALLOWED_HOSTS entries (adapters/media_hosts.py).
        `on_usage(tenant_id, snapshot)`: called after each response that carries usage
        headers (must not raise; the rate limiters of issue 13 read it). `resolver`: DNS
        for media hosts (default getaddrinfo; tests give their own). `budget`: the
        tenants' Graph call budgets (issue 13, actors/limiter_leases.py), asked before each
        call (each retry and download included) and told of throttling and usage; None:
        no budget but Meta's own answers."""
        if not re.fullmatch(r"v\d+\.\d+", api_version):
            raise ValueError(f"Graph API version must look like v23.0, not {api_version!r}")
        self._token_for = token_for
        self._api = f"{base_url.rstrip('/')}/{api_version}"
        self._hosts = HostPolicy.parse(allowed_hosts)
        self._download_timeout_s = download_timeout_s
        self._max_retries = max_retries
        self._retry_base_s = retry_base_s
        self._max_retry_wait_s = max_retry_wait_s
        self._max_redirects = max_redirects
        self._on_usage = on_usage
        self._budget = budget
        self._resolve = resolver or system_resolver
        self._usage: dict[str, GraphUsage] = {}
        timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._http = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,  # by hand, each hop checked (the module docstring)
            trust_env=False,  # no proxy from the environment: it would resolve for us
            cookies=CookieJar(_NoCookies()),
            limits=httpx.Limits(max_connections=max_connections),
            headers={"User-Agent": "wa-ingest"},
        )

    # --- usage -----------------------------------------------------------------------

    def usage(self, tenant_id: str) -> GraphUsage | None:
        """The tenant's latest usage as Meta's headers reported it (None: none seen yet)."""
        return self._usage.get(tenant_id)

    def _record_usage(self, tenant_id: str, headers: httpx.Headers) -> GraphUsage | None:
        snapshot = usage_from_headers(headers, time.time())
        if snapshot is None:
            return self._usage.get(tenant_id)
        previous = self._usage.get(tenant_id)
        current = previous.merged(snapshot) if previous else snapshot
        self._usage[tenant_id] = current
        if self._on_usage is not None:
            self._on_usage(tenant_id, current)
        if self._budget is not None:
            self._budget.used(tenant_id, current.peak_pct, current.regain_s)
        return current

    # --- retries ---------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        """Full jitter: a random wait up to base * 2**attempt, so retries spread out."""
        return random.uniform(0, self._retry_base_s * 2**attempt)

    def _throttled(self, tenant_id: str, error: MetaError, attempt: int) -> GraphThrottled:
        usage = self._usage.get(tenant_id)
        regain = usage.regain_s if usage is not None else 0.0
        if self._budget is not None:  # Meta's own wait, or 0: the limiter's backoff
            self._budget.throttled(tenant_id, error.code or error.status, regain)
        return throttled(error, regain or self._retry_base_s * 2**attempt)

    async def _retrying(self, what: str, tenant_id: str, once: Callable[[int], Awaitable[T]]) -> T:
        """Run `once(attempt)`, retrying TransientError (GraphThrottled included)."""
        for attempt in range(self._max_retries + 1):
            try:
                return await once(attempt)
            except GraphThrottled as exc:
                # Meta told us how long; sleeping longer than a worker should is the
                # caller's decision (it reschedules with retry_after_s).
                if attempt == self._max_retries or exc.retry_after_s > self._max_retry_wait_s:
                    raise
                delay = exc.retry_after_s
                log.info(
                    "graph throttled, retrying",
                    what=what,
                    tenant_id=tenant_id,
                    code=exc.code,
                    attempt=attempt + 1,
                    delay_s=round(delay, 3),
                )
            except TransientError as exc:
                if attempt == self._max_retries:
                    raise
                delay = self._backoff(attempt)
                log.info(
                    "graph call failed, retrying",
                    what=what,
                    tenant_id=tenant_id,
                    error=str(exc)[:200],
                    attempt=attempt + 1,
                    delay_s=round(delay, 3),
                )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    # --- Graph JSON calls ------------------------------------------------------------

    def _token(self, tenant_id: str, *, media: bool) -> str:
        token = self._token_for(tenant_id)
        if token:
            return token
        detail = f"no access token configured for tenant {tenant_id}"
        if media:
            raise MediaUnavailable("no_token", detail, retryable=False)
        raise GraphError(0, None, None, "no_token", detail)

    async def _get_json(
        self,
        tenant_id: str,
        path: str,
        params: dict[str, str],
        map_error: Callable[[MetaError], Exception],
        *,
        media: bool,
    ) -> dict[str, Any]:
        token = self._token(tenant_id, media=media)
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{self._api}/{path}"

        async def once(attempt: int) -> dict[str, Any]:
            if self._budget is not None:
                await self._budget.acquire(tenant_id)
            try:
                response = await self._http.get(url, params=params, headers=headers)
            except httpx.TransportError as exc:
                raise TransientError(f"graph {path.split('/')[-1]}: {type(exc).__name__}") from exc
            self._record_usage(tenant_id, response.headers)
            if response.status_code == 200:
                try:
                    doc = orjson.loads(response.content)
                except orjson.JSONDecodeError as exc:
                    raise TransientError("graph answered 200 with a body that is not JSON") from exc
                if not isinstance(doc, dict):
                    raise TransientError("graph answered 200 with a body that is not an object")
                return doc
            error = parse_error(response.status_code, response.content)
            if error.throttled:
                raise self._throttled(tenant_id, error, attempt)
            raise map_error(error)

        return await self._retrying(path.split("/")[-1], tenant_id, once)

    @staticmethod
    def _checked_id(kind: str, object_id: str) -> str:
        if not _ID.fullmatch(object_id):
            raise ValueError(f"malformed {kind} id: {object_id[:80]!r}")
        return object_id

    async def media_info(self, tenant_id: str, media_id: str) -> MediaInfo:
        """`GET /{version}/{media-id}`: where to download the file now (MediaSource)."""
        if not _ID.fullmatch(media_id):
            detail = f"malformed media id {media_id[:80]!r}"
            raise MediaUnavailable("not_found", detail, retryable=False)
        doc = await self._get_json(tenant_id, media_id, {}, media_lookup_error, media=True)
        url = doc.get("url")
        if not isinstance(url, str) or not url:
            raise TransientError("graph media lookup answered without a url")
        size = doc.get("file_size")
        if isinstance(size, str) and size.isdigit():  # Meta has sent it as a string
            size = int(size)
        sha = doc.get("sha256")
        mime = doc.get("mime_type")
        return MediaInfo(
            media_id=str(doc.get("id") or media_id),
            url=url,
            mime_type=mime if isinstance(mime, str) else None,
            sha256=sha.lower() if isinstance(sha, str) else None,
            file_size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        )

    async def phone_number(self, tenant_id: str, phone_number_id: str) -> PhoneNumberInfo:
        """`GET /{version}/{phone-number-id}`: name, quality, limits (GraphError, ...)."""
        path = self._checked_id("phone number", phone_number_id)
        params = {"fields": ",".join(PHONE_NUMBER_FIELDS)}
        doc = await self._get_json(tenant_id, path, params, account_error, media=False)
        return PhoneNumberInfo.from_graph(doc)

    async def waba(self, tenant_id: str, waba_id: str) -> WabaInfo:
        """`GET /{version}/{waba-id}`: the business account's details."""
        path = self._checked_id("WABA", waba_id)
        params = {"fields": ",".join(WABA_FIELDS)}
        doc = await self._get_json(tenant_id, path, params, account_error, media=False)
        return WabaInfo.from_graph(doc)

    async def templates(
        self, tenant_id: str, waba_id: str, page_size: int = 100, max_pages: int = 100
    ) -> list[TemplateInfo]:
        """Every message template of the WABA, following the `after` cursors.

        The next page is asked of our own base URL with the cursor, never of the `next`
        URL Meta sends (it is only a sign that there is one): the token goes nowhere else.
        """
        path = f"{self._checked_id('WABA', waba_id)}/message_templates"
        templates: list[TemplateInfo] = []
        after = ""
        for _ in range(max_pages):
            params = {"fields": ",".join(TEMPLATE_FIELDS), "limit": str(page_size)}
            if after:
                params["after"] = after
            doc = await self._get_json(tenant_id, path, params, account_error, media=False)
            data = doc.get("data")
            templates += [TemplateInfo.from_graph(t) for t in data or [] if isinstance(t, dict)]
            paging = _dict(doc.get("paging"))
            cursor = _dict(paging.get("cursors")).get("after")
            if not paging.get("next") or not isinstance(cursor, str) or cursor == after:
                return templates
            after = cursor
        raise GraphError(0, None, None, "paging", f"more than {max_pages} template pages")

    # --- downloads -------------------------------------------------------------------

    async def download(self, tenant_id: str, info: MediaInfo, dest: Path, max_bytes: int) -> int:
        """Stream the file to `dest` (MediaSource.download; the module docstring)."""
        token = self._token(tenant_id, media=True)

        async def once(attempt: int) -> int:
            if self._budget is not None:
                await self._budget.acquire(tenant_id)
            try:
                async with asyncio.timeout(self._download_timeout_s):
                    return await self._download_once(tenant_id, token, info, dest, max_bytes)
            except TimeoutError as exc:
                await asyncio.to_thread(dest.unlink, missing_ok=True)
                detail = f"download of {info.media_id} took over {self._download_timeout_s}s"
                raise TransientError(detail) from exc

        return await self._retrying("download", tenant_id, once)

    async def _download_once(
        self, tenant_id: str, token: str, info: MediaInfo, dest: Path, max_bytes: int
    ) -> int:
        url = _url(info.url)
        origin = (url.scheme, url.raw_host, url.port)
        for _hop in range(self._max_redirects + 1):
            send_token = (url.scheme, url.raw_host, url.port) == origin
            response = await self._open(url, token if send_token else None)
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    url = _url(response.headers["location"], url)
                    continue
                if response.status_code == 200:
                    return await self._save(response, dest, max_bytes)
                raise await self._download_error(tenant_id, response)
            finally:
                await response.aclose()
        detail = f"more than {self._max_redirects} redirects"
        raise MediaUnavailable("download_failed", detail, retryable=True)

    async def _open(self, url: httpx.URL, token: str | None) -> httpx.Response:
        """Send the GET to an address checked for the URL's host (each in turn, in the
        resolver's order, until one connects); the response is streaming."""
        host = url.raw_host.decode("ascii")
        if url.scheme not in ("https", "http"):
            raise MediaRejected("host_not_allowed", f"scheme {url.scheme!r} is not allowed")
        port = url.port or (443 if url.scheme == "https" else 80)
        match, addresses = await checked_addresses(self._hosts, host, port, self._resolve)
        if url.scheme == "http" and match != "explicit":
            detail = f"{normalize_host(host)}: plain http only for explicitly listed hosts"
            raise MediaRejected("host_not_allowed", detail)
        headers = {"Host": url.netloc.decode("ascii"), "Accept-Encoding": "identity"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        extensions = {"sni_hostname": normalize_host(host)} if url.scheme == "https" else {}
        last: Exception | None = None
        for address in addresses:
            pinned = url.copy_with(host=address)
            request = self._http.build_request(
                "GET", pinned, headers=headers, extensions=extensions
            )
            try:
                return await self._http.send(request, stream=True)
            except httpx.ConnectError as exc:
                last = exc  # the next checked address, if the host has another
            except httpx.TransportError as exc:
                raise TransientError(f"download from {normalize_host(host)}: {exc!r}") from exc
        raise TransientError(f"download from {normalize_host(host)}: {last!r}") from last

    async def _save(self, response: httpx.Response, dest: Path, max_bytes: int) -> int:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise MediaRejected("too_large", f"{declared} bytes announced, the cap is {max_bytes}")
        written = 0
        file = await asyncio.to_thread(dest.open, "wb")
        try:
            async for chunk in response.aiter_bytes(_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise MediaRejected("too_large", f"over the cap of {max_bytes} bytes")
                await asyncio.to_thread(file.write, chunk)
            await asyncio.to_thread(file.close)
        except BaseException as exc:
            await asyncio.to_thread(file.close)
            await asyncio.to_thread(dest.unlink, missing_ok=True)
            if isinstance(exc, httpx.TransportError):
                raise TransientError(f"download cut short: {type(exc).__name__}") from exc
            raise
        return written

    async def _download_error(self, tenant_id: str, response: httpx.Response) -> Exception:
        body = b""
        try:
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= _ERROR_BODY_CAP:
                    break
        except httpx.TransportError:
            pass  # the status alone decides then
        self._record_usage(tenant_id, response.headers)
        error = parse_error(response.status_code, body[:_ERROR_BODY_CAP])
        if error.throttled:
            return self._throttled(tenant_id, error, 0)
        if error.code == 190:  # the token, not the URL: resolving again will not help
            return MediaUnavailable("unauthorized", error.detail, retryable=False)
        if response.status_code in (401, 403, 404):
            return UrlExpired(error.detail)
        if error.retryable:
            return TransientError(f"download: {error.detail}")
        return MediaUnavailable("download_failed", error.detail, retryable=True)

    async def close(self) -> None:
        """Release connections."""
        await self._http.aclose()
