"""X-Hub-Signature-256 parsing and matching."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from ingress.signature import SignatureMissing, matching_secrets, parse_signature, sign

BODY = b'{"object":"whatsapp_business_account"}'


def test_sign_is_hmac_sha256_of_the_raw_body() -> None:
    """The header is 'sha256=' + hex HMAC-SHA256(secret, body), as Meta documents."""
    expected = hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()
    assert sign(b"s3cret", BODY) == f"sha256={expected}"


def test_parse_accepts_upper_case_hex() -> None:
    """Hex digits are case-insensitive."""
    header = sign(b"k", BODY)
    assert parse_signature(header.upper().replace("SHA256=", "sha256=")) == parse_signature(header)


@pytest.mark.parametrize(
    "header",
    [None, "", "sha1=abc", "sha256=", "sha256=xyz", "sha256=" + "a" * 63, "sha256=" + "g" * 64],
)
def test_parse_rejects_missing_or_malformed(header: str | None) -> None:
    """Anything but sha256=<64 hex> is 'missing' (answered 401)."""
    with pytest.raises(SignatureMissing):
        parse_signature(header)


def test_matching_secrets_finds_the_signing_secret_among_several() -> None:
    """Rotation: every configured secret is tried; only the right one matches."""
    digest = parse_signature(sign(b"new", BODY))
    assert matching_secrets(digest, BODY, [b"old", b"new", b"other"]) == {b"new"}


def test_one_changed_byte_breaks_the_signature() -> None:
    """The HMAC covers the raw bytes: re-serialized or altered bodies do not verify."""
    digest = parse_signature(sign(b"k", BODY))
    assert matching_secrets(digest, BODY.replace(b"whatsapp", b"whatsapq"), [b"k"]) == set()
