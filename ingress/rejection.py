"""Why a request is refused: one exception per thing that happened, and one error body.

Every rejection answers `{"error": {"code", "message"}}` with its class's status and code;
nothing was stored. The message is the class's unless the raiser knows more (which bound
was exceeded, which part of the envelope is wrong). The ingress's exception handler is the
one place that turns them into responses (ingress/error_handlers.py).
"""

from __future__ import annotations

import math
from typing import ClassVar

from fastapi.responses import JSONResponse


class RequestRejected(Exception):
    """A request answered with a 4xx/5xx and a JSON error; nothing was stored."""

    status: ClassVar[int]
    code: ClassVar[str]
    default_message: ClassVar[str]

    def __init__(self, message: str | None = None, headers: dict[str, str] | None = None) -> None:
        self.message = self.default_message if message is None else message
        super().__init__(self.message)
        self.headers = headers


class SourceNotAllowed(RequestRejected):
    """The client address is outside the allowlist."""

    status, code, default_message = 403, "source_not_allowed", "source address not allowed"


class UnsupportedMediaType(RequestRejected):
    """The Content-Type is not JSON."""

    status, code, default_message = 415, "unsupported_media_type", "Content-Type must be JSON"


class BadContentLength(RequestRejected):
    """The Content-Length header is not a number."""

    status, code, default_message = 400, "bad_content_length", "Content-Length is not a number"


class BodyTooLarge(RequestRejected):
    """The body is over the cap, as declared or as streamed."""

    status, code, default_message = 413, "body_too_large", "body too large"

    def __init__(self, cap: int) -> None:
        super().__init__(f"body exceeds {cap} bytes")


class BodyTimeout(RequestRejected):
    """The body did not arrive within the read deadline."""

    status, code, default_message = 408, "request_timeout", "body not received in time"


class SignatureMissing(RequestRejected):
    """No X-Hub-Signature-256, or one that is not `sha256=<64 hex>`."""

    status, code, default_message = 401, "signature_missing", "missing X-Hub-Signature-256"


class SignatureInvalid(RequestRejected):
    """No candidate secret signed the body, or the body names a tenant whose secret did not."""

    status, code, default_message = 403, "signature_mismatch", "signature does not match"


class InvalidJson(RequestRejected):
    """The signed body does not parse as JSON."""

    status, code, default_message = 400, "invalid_json", "body is not valid JSON"


class BodyOutOfBounds(RequestRejected):
    """The body nests deeper or holds a longer array than allowed."""

    status, code, default_message = 400, "body_out_of_bounds", "the body is out of bounds"


class NotAWebhook(RequestRejected):
    """Valid JSON that is not a WhatsApp webhook envelope."""

    status, code, default_message = 400, "not_a_whatsapp_webhook", "not a WhatsApp webhook"


class TooManyItems(RequestRejected):
    """The delivery holds more items than one delivery may (WA_MAX_ITEMS_PER_DELIVERY)."""

    status, code, default_message = 413, "too_many_items", "the delivery holds too many items"


class DeliveryTooLarge(RequestRejected):
    """An item, or the whole delivery, would store more bytes than allowed: its items'
    copies of shared parts (contact, metadata) would multiply the body."""

    status, code, default_message = 413, "delivery_too_large", "the delivery would store too much"


class TenantDisabled(RequestRejected):
    """The delivery's signature verified, but a tenant it belongs to is disabled: nothing
    of it is stored, and Meta retries it (for up to 7 days) until the tenant is enabled."""

    status, code, default_message = 403, "tenant_disabled", "the tenant is disabled"


class RateLimited(RequestRejected):
    """The source address or a tenant is over its limit in the current window."""

    status, code, default_message = 429, "rate_limited", "too many requests"

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))})


class InboxUnavailable(RequestRejected):
    """The inbox append failed (nothing was marked, so Meta's retry is stored) or did not
    answer in time (if it lands after all, its mark answers the retry `duplicate`)."""

    status, code, default_message = 503, "inbox_unavailable", "try again later"


class Overloaded(RequestRejected):
    """The replica already holds as many unverified body bytes as it may; Meta retries."""

    status, code, default_message = 503, "overloaded", "too many bodies in flight, retry later"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The one shape of every error body: {"error": {"code", "message"}}."""
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )
