"""Graph API errors and usage headers, shaped as Meta documents them.

Every error body is `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`
(plus `error_data`/`is_transient` where Meta sends them). Usage is reported in
`X-Business-Use-Case-Usage`: a JSON object keyed by business id, each a list of
`{type, call_count, total_cputime, total_time, estimated_time_to_regain_access}` with the
counts in percent of the allowance and the wait in minutes. Platform rate limits (the app's
own allowance) come in `X-App-Usage`: `{call_count, total_cputime, total_time}`, percent.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import orjson
from fastapi.responses import JSONResponse


@dataclass(frozen=True, slots=True)
class GraphError:
    """One documented Graph API error."""

    http_status: int
    code: int
    type: str
    message: str
    subcode: int | None = None
    transient: bool = False


MISSING_TOKEN = GraphError(
    400, 2500, "OAuthException", "An active access token must be used to query information."
)
INVALID_TOKEN = GraphError(
    401, 190, "OAuthException", "Invalid OAuth access token - Cannot parse access token"
)
# A token that was valid and has been revoked (the user logged out, the system user's token
# was regenerated): still code 190, with the "session invalidated" subcode.
SESSION_INVALIDATED = GraphError(
    401,
    190,
    "OAuthException",
    "Error validating access token: The session has been invalidated because the user "
    "changed their password or Facebook has changed the session for security reasons.",
    subcode=460,
)
NO_SUCH_OBJECT = GraphError(
    400,
    100,
    "GraphMethodException",
    "Unsupported get request. Object with ID does not exist, cannot be loaded due to "
    "missing permissions, or does not support this operation.",
    subcode=33,
)
EXPIRED_URL = GraphError(404, 100, "OAuthException", "The media URL has expired.", subcode=2494100)
APP_RATE_LIMIT = GraphError(
    429, 4, "OAuthException", "(#4) Application request limit reached", transient=True
)
WABA_RATE_LIMIT = GraphError(
    429, 80007, "OAuthException", "(#80007) Rate limit issues", transient=True
)
THROUGHPUT_LIMIT = GraphError(
    429, 130429, "OAuthException", "(#130429) Rate limit hit", subcode=2494055, transient=True
)
SERVICE_UNAVAILABLE = GraphError(
    503, 2, "OAuthException", "(#2) Service temporarily unavailable", transient=True
)
PAIR_RATE_LIMIT = GraphError(
    429,
    131056,
    "OAuthException",
    "(#131056) (Business Account, Consumer Account) pair rate limit hit",
    transient=True,
)
INTERNAL_ERROR = GraphError(
    500, 1, "OAuthException", "An unknown error has occurred.", transient=True
)


# A POST to an id that is not a node the token may post to (the media upload's number).
NO_SUCH_POST_OBJECT = GraphError(
    400,
    100,
    "GraphMethodException",
    "Unsupported post request. Object with ID does not exist, cannot be loaded due to "
    "missing permissions, or does not support this operation.",
    subcode=33,
)

# The MIME types the media upload takes (Meta's "Supported media types"), without params.
UPLOAD_TYPES = (
    "audio/aac",
    "audio/amr",
    "audio/mpeg",
    "audio/mp4",
    "audio/ogg",
    "text/plain",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/pdf",
    "image/jpeg",
    "image/png",
    "image/webp",
    "video/3gpp",
    "video/mp4",
)


def missing_parameter(name: str) -> GraphError:
    """What Meta answers to a call without one of its required parameters."""
    return GraphError(400, 100, "OAuthException", f"(#100) The parameter {name} is required")


def invalid_parameter(name: str, allowed: tuple[str, ...], got: str) -> GraphError:
    """What Meta answers to a parameter outside its enumeration (messaging_product)."""
    choices = ", ".join(allowed)
    message = f'(#100) Param {name} must be one of {{{choices}}} - got "{got}".'
    return GraphError(400, 100, "OAuthException", message)


def unsupported_upload_type(mime_type: str) -> GraphError:
    """What Meta answers to an upload whose type is not a supported media type."""
    message = (
        "(#100) Param file must be a file with one of the following types: "
        f"{', '.join(UPLOAD_TYPES)}. Received file of type '{mime_type}'."
    )
    return GraphError(400, 100, "OAuthException", message)


def nonexisting_field(field: str, node_type: str) -> GraphError:
    """What Meta answers to `?fields=` naming a field the node type does not have."""
    return GraphError(
        400,
        100,
        "OAuthException",
        f"(#100) Tried accessing nonexisting field ({field}) on node type ({node_type})",
    )


BY_CODE: dict[int, GraphError] = {
    e.code: e
    for e in (
        INVALID_TOKEN,
        MISSING_TOKEN,
        NO_SUCH_OBJECT,
        APP_RATE_LIMIT,
        WABA_RATE_LIMIT,
        THROUGHPUT_LIMIT,
        PAIR_RATE_LIMIT,
        SERVICE_UNAVAILABLE,
    )
}


def fbtrace_id() -> str:
    """An opaque request id like Meta's."""
    return secrets.token_urlsafe(20)[:27]


def error_response(error: GraphError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error response for `error`."""
    body: dict[str, object] = {
        "message": error.message,
        "type": error.type,
        "code": error.code,
        "fbtrace_id": fbtrace_id(),
    }
    if error.subcode is not None:
        body["error_subcode"] = error.subcode
    if error.transient:
        body["is_transient"] = True
    if error.code in (130429, 80007):
        body["error_data"] = {"messaging_product": "whatsapp", "details": error.message}
    return JSONResponse({"error": body}, status_code=error.http_status, headers=headers)


def usage_header(business_id: str, used: int, limit: int, regain_minutes: int) -> str:
    """The `X-Business-Use-Case-Usage` value for `used` of `limit` calls in the window."""
    pct = 0 if limit <= 0 else min(100, round(100 * used / limit))
    entry = {
        "type": "whatsapp_business_management",
        "call_count": pct,
        "total_cputime": max(1, pct // 4),
        "total_time": max(1, pct // 3),
        "estimated_time_to_regain_access": regain_minutes,
    }
    return orjson.dumps({business_id: [entry]}).decode()


def app_usage_header(used: int, limit: int) -> str:
    """The `X-App-Usage` value for `used` of `limit` calls in the window (percent)."""
    pct = 0 if limit <= 0 else min(100, round(100 * used / limit))
    return orjson.dumps(
        {"call_count": pct, "total_cputime": max(1, pct // 4), "total_time": max(1, pct // 3)}
    ).decode()
