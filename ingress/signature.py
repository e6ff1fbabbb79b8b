"""Meta's `X-Hub-Signature-256`: HMAC-SHA256 of the raw body with the app secret."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from ingress.rejection import SignatureMissing

__all__ = ["SignatureMissing", "matching_secrets", "parse_signature", "sign"]

_PREFIX = "sha256="
_HEX = frozenset("0123456789abcdef")


def parse_signature(header: str | None) -> bytes:
    """The 32-byte digest from the header value, or SignatureMissing (answered 401)."""
    if not header:
        raise SignatureMissing("missing X-Hub-Signature-256")
    value = header.strip()
    if not value.startswith(_PREFIX):
        raise SignatureMissing("X-Hub-Signature-256 must start with 'sha256='")
    hex_digest = value[len(_PREFIX) :].lower()
    if len(hex_digest) != 64 or not set(hex_digest) <= _HEX:
        raise SignatureMissing("X-Hub-Signature-256 must carry 64 hex digits")
    return bytes.fromhex(hex_digest)


def sign(secret: bytes, body: bytes) -> str:
    """The header value Meta would send for this body (used by the simulator and tests)."""
    return _PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def matching_secrets(digest: bytes, body: bytes, secrets: Iterable[bytes]) -> set[bytes]:
    """The secrets whose HMAC of the body equals the digest, compared in constant time.

    Every candidate is computed and compared, whether or not an earlier one matched, so
    the time taken does not tell which secret (if any) was right.
    """
    matched: set[bytes] = set()
    for secret in secrets:
        expected = hmac.new(secret, body, hashlib.sha256).digest()
        if hmac.compare_digest(expected, digest):
            matched.add(secret)
    return matched
