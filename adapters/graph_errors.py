"""Meta's Graph API error bodies, read and mapped to the project's errors (adapters/errors.py).

Meta answers `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}` (plus
`error_data` and `is_transient` on some). Its guide says to decide on `code`, not on the
HTTP status or the message: throttling is codes 4 (app), 17 (user), 32 (page), 613 (a
call-rate limit), 80007 (WABA), 130429 (Cloud API throughput) and 131056 (business /
consumer pair); 190 is an invalid, expired or revoked token; 100 with subcode 33 an object
that does not exist (or that the token may not see); 1 and 2 Meta's own trouble.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from adapters.errors import GraphError, GraphThrottled, MediaUnavailable, TransientError

THROTTLING_CODES = frozenset({4, 17, 32, 613, 80007, 130429, 131056})
TOKEN_CODES = frozenset({190, 102})  # invalid/expired/revoked token; invalid session
TRANSIENT_CODES = frozenset({1, 2})  # unknown error, service temporarily unavailable
NOT_FOUND = (100, 33)


@dataclass(frozen=True, slots=True)
class MetaError:
    """One Graph error response, as read (fields absent from the body are None)."""

    status: int
    code: int | None
    subcode: int | None
    type: str | None
    message: str
    transient: bool
    fbtrace_id: str | None

    @property
    def detail(self) -> str:
        """A short human word for logs and events (never a token: Meta does not echo it)."""
        trace = f" fbtrace_id={self.fbtrace_id}" if self.fbtrace_id else ""
        return (
            f"http {self.status} code={self.code} subcode={self.subcode}{trace}: "
            + (self.message[:200])
        )

    def graph_error(self) -> GraphError:
        """As the project's GraphError."""
        return GraphError(self.status, self.code, self.subcode, self.type, self.message)

    @property
    def throttled(self) -> bool:
        """Meta throttled the call (or answered 429 without a recognizable body)."""
        return self.code in THROTTLING_CODES or (self.code is None and self.status == 429)

    @property
    def bad_token(self) -> bool:
        """The token was refused (invalid, expired, revoked, lacking permission)."""
        code = self.code
        return (
            code in TOKEN_CODES
            or code == 10
            or (code is not None and 200 <= code <= 299)
            or (code is None and self.status in (401, 403))
        )

    @property
    def retryable(self) -> bool:
        """Meta's own trouble: 5xx, `is_transient`, codes 1 and 2."""
        return self.status >= 500 or self.transient or self.code in TRANSIENT_CODES


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_error(status: int, body: bytes) -> MetaError:
    """Read an error response's body; a body that is not Meta's shape still gives the status."""
    try:
        doc = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        doc = None
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return MetaError(status, None, None, None, f"http {status}", status >= 500, None)
    trace = err.get("fbtrace_id")
    return MetaError(
        status=status,
        code=_int(err.get("code")),
        subcode=_int(err.get("error_subcode")),
        type=str(err["type"]) if err.get("type") is not None else None,
        message=str(err.get("message", "")),
        transient=err.get("is_transient") is True,
        fbtrace_id=str(trace) if trace is not None else None,
    )


def throttled(error: MetaError, retry_after_s: float) -> GraphThrottled:
    """The GraphThrottled for a throttling answer."""
    return GraphThrottled(error.code or error.status, retry_after_s, error.message[:200])


def media_lookup_error(error: MetaError) -> Exception:
    """What a failed `GET /{media-id}` raises (throttling is handled before this)."""
    if error.bad_token:
        return MediaUnavailable("unauthorized", error.detail, retryable=False)
    if (error.code, error.subcode) == NOT_FOUND or error.status == 404:
        return MediaUnavailable("not_found", error.detail, retryable=False)
    if error.retryable:
        return TransientError(f"graph media lookup: {error.detail}")
    # Another 4xx: our request is wrong, retrying it unchanged will not help.
    return MediaUnavailable("lookup_failed", error.detail, retryable=False)


def account_error(error: MetaError) -> Exception:
    """What a failed phone-number / WABA / templates call raises."""
    if error.retryable:
        return TransientError(f"graph: {error.detail}")
    return error.graph_error()
