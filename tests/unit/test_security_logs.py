"""Safe logs: the redaction processor, and a full conformance run whose log holds no secret
and no clear phone number."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog

from cluster.logging import configure_logging
from cluster.redaction import Redactor
from ingress.signature import sign
from tests.support.app import SECRET, VERIFY
from tests.support.security import ADMIN_TOKEN, OTHER_SECRET, security_stack
from tests.support.security_cases import body, post, post_signed

PAYLOADS = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "payloads"
FILES = sorted((PAYLOADS / "meta-docs").glob("*.json"))
_PHONE_KEYS = {"wa_id", "from", "recipient_id", "display_phone_number", "phone_number", "phone"}


def test_redactor_hides_credentials_phones_and_names() -> None:
    """By key: credentials redacted, phones and names hashed; in text: secrets and E.164."""
    redact = Redactor(["super-secret-value"])
    out = redact(
        None,
        "info",
        {
            "event": "failed for +16505551234 with super-secret-value",
            "app_secret": "abc",
            "authorization": "Bearer x",
            "x_hub_signature_256": "sha256=00",
            "wa_id": "16505551234",
            "contact": {"profile": {"name": "Sheena Nelson"}, "wa_id": "447700900123"},
            "items": ["call 447700900123"],
            "timestamp": "1750000000",
            "count": 3,
        },
    )
    text = orjson.dumps(dict(out)).decode()
    for clear in ("16505551234", "447700900123", "Sheena", "super-secret-value", "Bearer x"):
        assert clear not in text
    assert out["app_secret"] == out["authorization"] == "[redacted]"
    assert out["wa_id"].startswith("h:")
    assert out["timestamp"] == "1750000000"  # 10 digits: a timestamp, kept
    assert out["count"] == 3


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """structlog configured as in production (DEBUG, redacting) into a buffer."""
    buffer = io.StringIO()
    configure_logging("DEBUG", [SECRET, OTHER_SECRET, VERIFY, ADMIN_TOKEN], file=buffer)
    yield buffer
    structlog.reset_defaults()


def _phones(node: Any, key: str = "") -> set[str]:
    if isinstance(node, dict):
        return set().union(*(_phones(v, k) for k, v in node.items())) if node else set()
    if isinstance(node, list):
        return set().union(*(_phones(v, key) for v in node)) if node else set()
    if key in _PHONE_KEYS and isinstance(node, str | int) and len(str(node)) >= 8:
        return {str(node)}
    return set()


@pytest.mark.skipif(not FILES, reason=f"{PAYLOADS / 'meta-docs'} is absent")
async def test_a_conformance_run_logs_no_secret_and_no_clear_phone_number(
    tmp_path: Path, captured_logs: io.StringIO
) -> None:
    """Every documented payload through ingress and shards, plus forged and duplicate
    requests; the log (DEBUG) has lines, and none of them holds a secret or a number."""
    phones: set[str] = set()
    async with security_stack(tmp_path, "embedded", limits=(10**6, 10**6)) as stack:
        for path in FILES:
            raw = path.read_bytes()
            phones |= _phones(orjson.loads(raw))
            headers = {"Content-Type": "application/json"}
            accepted = await post(
                stack, raw, {**headers, "X-Hub-Signature-256": sign(SECRET.encode(), raw)}
            )
            assert accepted.status_code == 200, (path.name, accepted.text)
            forged = await post(stack, raw, {**headers, "X-Hub-Signature-256": sign(b"x", raw)})
            assert forged.status_code == 403
        again = await post_signed(stack, body())
        assert (await post_signed(stack, body())).json()["status"] == "duplicate"
        assert again.status_code == 200
        assert (await post_signed(stack, body(), peer="198.51.100.1")).status_code == 403
        await stack.drain()
        assert len(stack.events()) > len(FILES) // 2  # Meta's examples share ids: deduplicated
    log = captured_logs.getvalue()
    assert log.count("\n") > 2 * len(FILES)
    for secret in (SECRET, OTHER_SECRET, VERIFY, ADMIN_TOKEN):
        assert secret not in log
    assert phones, "the payloads name customers: the check below must have work to do"
    leaked = sorted(p for p in phones if re.search(rf"(?<!\d){re.escape(p)}(?!\d)", log))
    assert leaked == []
    assert "198.51.100.0/24" in log  # the rejected source, masked
    assert "198.51.100.1" not in log
