"""What of an event travels outside its body: routing-key segments and AMQP short strings.

A routing key, `message_id`, `type` and every header name are AMQP short strings (at
most 255 bytes), and several are built from values Meta sent (a message type, a status,
a wamid). A value that is already safe is used unchanged, so a well-formed event's key
and properties are exactly what they always were; any other is bounded, with a digest of
the full value so that two different values never share a key. The body always keeps the
full value.
"""

from __future__ import annotations

import hashlib
import re

SHORT_STRING_BYTES = 255
"""AMQP's limit for a short string (routing key, message_id, type, header names)."""

SEGMENT_CHARS = 64
"""At most this many characters per routing-key segment: three fit in 255 bytes."""

_SEGMENT = re.compile(rf"[a-z0-9_-]{{1,{SEGMENT_CHARS}}}")
_NOT_SEGMENT = re.compile(r"[^a-z0-9_-]+")
_KEPT_CHARS = 40  # of a sanitized segment, before its digest
_SEGMENT_DIGEST_HEX = 16


def _hex_digest(value: str) -> str:
    # surrogatepass: a str holding a lone surrogate (which strict UTF-8 refuses) still has
    # a digest; nothing here may raise for any str.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def routing_segment(value: str) -> str:
    """`value` if it is a safe segment (1-64 of [a-z0-9_-]), else a bounded one.

    The bounded form is the value lower-cased with every other run of characters as `_`
    (so no dot, `#` or `*` from the body adds a segment or a wildcard), cut to 40
    characters, then `_` and 16 hex of the full value's SHA-256: at most 57 characters.
    """
    if _SEGMENT.fullmatch(value):
        return value
    kept = _NOT_SEGMENT.sub("_", value.lower()).strip("_")[:_KEPT_CHARS] or "x"
    return f"{kept}_{_hex_digest(value)[:_SEGMENT_DIGEST_HEX]}"


def routing_key(*segments: str) -> str:
    """The segments, each made safe, joined by dots (three segments: at most 194 bytes)."""
    return ".".join(routing_segment(segment) for segment in segments)


def short_string(value: str) -> str:
    """`value` if it is valid UTF-8 within 255 bytes, else `sha256:` and its 64 hex digits.

    For ids that consumers may match on (message_id, the event_id header): the short form
    is stable, and the body holds the full value.
    """
    try:
        if len(value.encode()) <= SHORT_STRING_BYTES:
            return value
    except UnicodeEncodeError:  # a lone surrogate: not UTF-8, so not a short string
        pass
    return "sha256:" + _hex_digest(value)
