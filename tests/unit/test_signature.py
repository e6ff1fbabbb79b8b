"""X-Hub-Signature-256 parsing and matching."""

from __future__ import annotations

import pytest

from ingress.signature import SignatureMissing, matching_secrets, parse_signature, sign

BODY = b'{"object":"whatsapp_business_account"}'

# RFC 4231 section 4, HMAC-SHA256 (test case 5 truncates the output, so it is left out):
# (key, data, digest), the digest as Meta's header carries it, after "sha256=".
RFC_4231 = [
    pytest.param(
        b"\x0b" * 20,
        b"Hi There",
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        id="case-1",
    ),
    pytest.param(
        b"Jefe",
        b"what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        id="case-2",
    ),
    pytest.param(
        b"\xaa" * 20,
        b"\xdd" * 50,
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        id="case-3",
    ),
    pytest.param(
        bytes(range(1, 26)),
        b"\xcd" * 50,
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        id="case-4",
    ),
    pytest.param(
        b"\xaa" * 131,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        id="case-6",
    ),
    pytest.param(
        b"\xaa" * 131,
        b"This is a test using a larger than block-size key and a larger than block-size data."
        b" The key needs to be hashed before being used by the HMAC algorithm.",
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        id="case-7",
    ),
]

# A Meta-shaped delivery (one text message; Meta escapes non-ASCII as \uXXXX, so the raw
# bytes differ from a re-serialized body) and its header, computed once offline with
# `openssl dgst -sha256 -hmac meta-app-secret-0123` over exactly these 502 bytes.
META_SECRET = b"meta-app-secret-0123"
META_BODY = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":'
    b'{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881",'
    b'"phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Jos\\u00e9 Nelson"},'
    b'"wa_id":"16505551234"}],"messages":[{"from":"16505551234",'
    b'"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",'
    b'"timestamp":"1749416383","type":"text","text":{"body":"Does it come in another color?"}}]},'
    b'"field":"messages"}]}]}'
)
META_HEADER = "sha256=cad96a4a5ea5464946ec41126b5f9bdb44b147686448fa05719d203767cba7f2"


@pytest.mark.parametrize(("key", "data", "digest"), RFC_4231)
def test_sign_matches_the_rfc_4231_vectors(key: bytes, data: bytes, digest: str) -> None:
    """The header is 'sha256=' + hex HMAC-SHA256(secret, body), as Meta documents."""
    assert sign(key, data) == f"sha256={digest}"


@pytest.mark.parametrize(("key", "data", "digest"), RFC_4231)
def test_a_known_header_verifies_with_its_key_only(key: bytes, data: bytes, digest: str) -> None:
    """Verification accepts the RFC's digest for its key and no other key."""
    parsed = parse_signature(f"sha256={digest}")
    assert matching_secrets(parsed, data, [key, key + b"x"]) == {key}


def test_a_meta_shaped_delivery_has_the_header_meta_would_send() -> None:
    """The header over a real-shaped body, pinned: signing and verifying both agree with it."""
    assert len(META_BODY) == 502
    assert sign(META_SECRET, META_BODY) == META_HEADER
    assert matching_secrets(parse_signature(META_HEADER), META_BODY, [META_SECRET]) == {META_SECRET}


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
