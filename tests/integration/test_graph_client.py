"""The Graph client (adapters/graph.py) against the Graph simulator on a real loopback port:
lookups, downloads, the SSRF guard, retries, throttling, usage headers, accounts."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from adapters.errors import (
    GraphError,
    GraphThrottled,
    MediaRejected,
    MediaUnavailable,
    TransientError,
    UrlExpired,
)
from adapters.graph import GraphClient
from adapters.graph_usage import GraphUsage
from adapters.ports import MediaInfo
from loadtest.graph_errors import APP_RATE_LIMIT, THROUGHPUT_LIMIT
from loadtest.graph_sim import GraphSim, GraphSimConfig
from loadtest.tenants import generate_tenants
from tests.support.graph_sim_server import SimClock, serve_graph_sim

TENANTS = generate_tenants(2, seed=7)
ACME, OTHER = TENANTS
TOKENS = {t.id: t.access_token for t in TENANTS}
MEDIA_ID = "900000000000001"
CONTENT = random.Random(1).randbytes(200_000)


@pytest.fixture
def clock() -> SimClock:
    return SimClock(time.time())


@pytest.fixture
def sim(clock: SimClock) -> GraphSim:
    sim = GraphSim(GraphSimConfig(TENANTS, url_ttl_s=300), clock=clock)
    sim.add_media(MEDIA_ID, CONTENT, "image/jpeg", owner=ACME.id)
    return sim


@pytest.fixture
async def port(sim: GraphSim) -> AsyncIterator[int]:
    async with serve_graph_sim(sim) as port:
        yield port


def make_client(port: int, **overrides: Any) -> GraphClient:
    """A client of the simulator that allows exactly 127.0.0.1 for media, fast retries."""
    settings: dict[str, Any] = {
        "base_url": f"http://127.0.0.1:{port}",
        "api_version": "v23.0",
        "allowed_hosts": ("127.0.0.1",),
        "max_retries": 2,
        "retry_base_s": 0.01,
        "connect_timeout_s": 2.0,
        "read_timeout_s": 5.0,
    }
    return GraphClient(TOKENS.get, **(settings | overrides))


@pytest.fixture
async def graph(port: int) -> AsyncIterator[GraphClient]:
    client = make_client(port)
    yield client
    await client.close()


def static_dns(table: dict[str, list[str]]) -> Any:
    """The test's own DNS: names it does not know fail as getaddrinfo does."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise OSError(f"no such host {host}")
        return table[host]

    return resolve


async def test_lookup_then_download_gives_metas_bytes(graph: GraphClient, tmp_path: Path) -> None:
    """The lookup reports Meta's mime type, sha256 and size; the download writes exactly
    the bytes, returns their count, and the lookup's sha256 is theirs."""
    info = await graph.media_info(ACME.id, MEDIA_ID)
    assert (info.media_id, info.mime_type, info.file_size) == (MEDIA_ID, "image/jpeg", 200_000)
    assert info.sha256 == hashlib.sha256(CONTENT).hexdigest()
    dest = tmp_path / "file"
    assert await graph.download(ACME.id, info, dest, max_bytes=1_000_000) == len(CONTENT)
    assert dest.read_bytes() == CONTENT


async def test_wrong_sha256_and_size_are_reported_as_meta_said(
    graph: GraphClient, sim: GraphSim, tmp_path: Path
) -> None:
    """The client reports what Meta announced, not the truth: verifying is the pipeline's."""
    sim.add_media(
        "900000000000002", b"abc", "image/png", announced_sha256="0" * 64, announced_size=10
    )
    info = await graph.media_info(ACME.id, "900000000000002")
    assert (info.sha256, info.file_size) == ("0" * 64, 10)
    assert await graph.download(ACME.id, info, tmp_path / "f", 1000) == 3


async def test_expired_url_is_url_expired_and_a_fresh_lookup_works(
    graph: GraphClient, clock: SimClock, tmp_path: Path
) -> None:
    """Past Meta's 5 minutes the link answers 404: UrlExpired (retryable), no file left;
    resolving again gives a link that works."""
    stale = await graph.media_info(ACME.id, MEDIA_ID)
    clock.now += 301
    with pytest.raises(UrlExpired) as caught:
        await graph.download(ACME.id, stale, tmp_path / "f", 1_000_000)
    assert caught.value.retryable
    assert not (tmp_path / "f").exists()
    fresh = await graph.media_info(ACME.id, MEDIA_ID)
    assert fresh.url != stale.url
    assert await graph.download(ACME.id, fresh, tmp_path / "f", 1_000_000) == len(CONTENT)


async def test_revoked_token_is_unauthorized_and_not_retryable(
    graph: GraphClient, sim: GraphSim, tmp_path: Path
) -> None:
    """Code 190 on the lookup and on the download: `unauthorized`, never retried."""
    info = await graph.media_info(ACME.id, MEDIA_ID)
    sim.revoke(ACME.id)
    for call in (
        graph.media_info(ACME.id, MEDIA_ID),
        graph.download(ACME.id, info, tmp_path / "f", 1_000_000),
    ):
        with pytest.raises(MediaUnavailable) as caught:
            await call
        assert (caught.value.reason, caught.value.retryable) == ("unauthorized", False)
        assert "code=190" in caught.value.detail


async def test_unknown_or_foreign_media_is_not_found(graph: GraphClient) -> None:
    """Code 100/33 (an id Meta does not know, or another tenant's): `not_found`, final."""
    for tenant, media_id in ((ACME.id, "12345"), (OTHER.id, MEDIA_ID)):
        with pytest.raises(MediaUnavailable) as caught:
            await graph.media_info(tenant, media_id)
        assert (caught.value.reason, caught.value.retryable) == ("not_found", False)


async def test_tenant_without_token_is_no_token(graph: GraphClient, sim: GraphSim) -> None:
    """No call is made for a tenant without a token."""
    with pytest.raises(MediaUnavailable) as caught:
        await graph.media_info("nobody", MEDIA_ID)
    assert (caught.value.reason, caught.value.retryable) == ("no_token", False)
    with pytest.raises(GraphError):
        await graph.waba("nobody", ACME.waba_ids[0])


async def test_host_outside_the_allowlist_is_refused_before_any_request(
    port: int, sim: GraphSim, tmp_path: Path
) -> None:
    """Meta's default allowlist does not hold 127.0.0.1: refused, nothing downloaded."""
    client = make_client(port, allowed_hosts=("lookaside.fbsbx.com", "*.fbcdn.net"))
    try:
        info = await client.media_info(ACME.id, MEDIA_ID)
        with pytest.raises(MediaRejected) as caught:
            await client.download(ACME.id, info, tmp_path / "f", 1_000_000)
        assert caught.value.reason == "host_not_allowed"
        assert not sim.downloads
        assert not (tmp_path / "f").exists()
    finally:
        await client.close()


async def test_redirect_to_an_allowed_host_is_followed_without_the_token(
    port: int, sim: GraphSim, tmp_path: Path
) -> None:
    """A redirect to another allowed host is followed; the token stays with the first
    host (the second is served by the signed link alone, as a CDN is)."""
    sim.add_media("900000000000003", CONTENT, "video/mp4", redirect_to=f"http://localhost:{port}/")
    client = make_client(port, allowed_hosts=("127.0.0.1", "localhost"))
    try:
        info = await client.media_info(ACME.id, "900000000000003")
        assert await client.download(ACME.id, info, tmp_path / "f", 1_000_000) == len(CONTENT)
    finally:
        await client.close()
    assert (tmp_path / "f").read_bytes() == CONTENT
    hops = [(hit.host.split(":")[0], hit.path, hit.authorized) for hit in sim.downloads]
    assert hops == [
        ("127.0.0.1", "/whatsapp_business/attachments/", True),
        ("localhost", "/whatsapp_business/cdn/", False),
    ]


@pytest.mark.parametrize("target", ["http://localhost:{port}/", "http://169.254.169.254/"])
async def test_redirect_to_a_host_not_allowed_is_refused(
    graph: GraphClient, sim: GraphSim, port: int, tmp_path: Path, target: str
) -> None:
    """A redirect leaving the allowlist (another name for loopback, the cloud metadata
    address) is refused before it is requested."""
    sim.add_media("900000000000004", CONTENT, "image/jpeg", redirect_to=target.format(port=port))
    info = await graph.media_info(ACME.id, "900000000000004")
    with pytest.raises(MediaRejected) as caught:
        await graph.download(ACME.id, info, tmp_path / "f", 1_000_000)
    assert caught.value.reason == "host_not_allowed"
    assert [hit.path for hit in sim.downloads] == ["/whatsapp_business/attachments/"]
    assert not (tmp_path / "f").exists()


async def test_loopback_is_refused_unless_the_host_is_listed_explicitly(
    port: int, sim: GraphSim, tmp_path: Path
) -> None:
    """A name matching a `*.suffix` pattern that resolves to loopback is refused; the same
    name listed exactly is allowed (how a test or a private mirror is configured)."""
    sim.config.media_base_url = f"http://media.sim.test:{port}/"
    dns = static_dns({"media.sim.test": ["127.0.0.1"]})
    by_pattern = make_client(port, allowed_hosts=("*.sim.test",), resolver=dns)
    listed = make_client(port, allowed_hosts=("media.sim.test",), resolver=dns)
    try:
        info = await by_pattern.media_info(ACME.id, MEDIA_ID)
        with pytest.raises(MediaRejected) as caught:
            await by_pattern.download(ACME.id, info, tmp_path / "f", 1_000_000)
        assert caught.value.reason == "host_not_allowed"
        assert "non-public" in caught.value.detail
        assert not sim.downloads
        assert await listed.download(ACME.id, info, tmp_path / "f", 1_000_000) == len(CONTENT)
        assert [hit.host for hit in sim.downloads] == [f"media.sim.test:{port}"]
    finally:
        await by_pattern.close()
        await listed.close()


@pytest.mark.parametrize("chunked", [False, True])
async def test_over_max_bytes_is_too_large_and_no_file_is_kept(
    graph: GraphClient, sim: GraphSim, tmp_path: Path, chunked: bool
) -> None:
    """Announced (Content-Length) or only counted while streaming: `too_large`, the file
    removed, and the download cut off rather than read whole."""
    sim.add_media("900000000000005", CONTENT * 5, "video/mp4", chunked=chunked)
    info = await graph.media_info(ACME.id, "900000000000005")
    with pytest.raises(MediaRejected) as caught:
        await graph.download(ACME.id, info, tmp_path / "f", max_bytes=100_000)
    assert caught.value.reason == "too_large"
    assert not (tmp_path / "f").exists()
    exact = await graph.download(ACME.id, info, tmp_path / "g", max_bytes=len(CONTENT) * 5)
    assert exact == len(CONTENT) * 5


async def test_5xx_twice_then_success_is_retried(
    graph: GraphClient, sim: GraphSim, tmp_path: Path
) -> None:
    """A lookup and a download that fail twice with 503 each succeed on the third try;
    each retry is logged with the tenant, never with the token or the link's signature."""
    sim.fail(MEDIA_ID, 2, on="lookup")
    sim.fail(MEDIA_ID, 2, on="download")
    with structlog.testing.capture_logs() as logs:
        info = await graph.media_info(ACME.id, MEDIA_ID)
        assert await graph.download(ACME.id, info, tmp_path / "f", 1_000_000) == len(CONTENT)
    assert len(sim.downloads) == 3
    retries = [e for e in logs if e["event"] == "graph call failed, retrying"]
    assert [e["tenant_id"] for e in retries] == [ACME.id] * 4
    signature = info.url.split("hash=")[1]
    assert ACME.access_token not in repr(logs)
    assert signature not in repr(logs)


async def test_5xx_beyond_the_retries_is_transient(
    graph: GraphClient, sim: GraphSim, tmp_path: Path
) -> None:
    """Three failures with max_retries=2: TransientError, the caller's budget decides."""
    sim.fail(MEDIA_ID, 3, on="lookup")
    with pytest.raises(TransientError):
        await graph.media_info(ACME.id, MEDIA_ID)
    info = await graph.media_info(ACME.id, MEDIA_ID)
    sim.fail(MEDIA_ID, 3, on="download")
    with pytest.raises(TransientError):
        await graph.download(ACME.id, info, tmp_path / "f", 1_000_000)
    assert not (tmp_path / "f").exists()


async def test_network_error_is_retried_then_transient() -> None:
    """Nobody listening: connection refused, retried, then TransientError."""
    client = make_client(1)  # port 1: nothing listens there
    try:
        with pytest.raises(TransientError) as caught:
            await client.media_info(ACME.id, MEDIA_ID)
        assert not isinstance(caught.value, GraphThrottled)
    finally:
        await client.close()


async def test_throttling_gives_metas_regain_time(graph: GraphClient, sim: GraphSim) -> None:
    """Code 4 with estimated_time_to_regain_access = 3 minutes: GraphThrottled after 180 s,
    not slept on (over max_retry_wait_s), and the usage snapshot says so too."""
    sim.fail(MEDIA_ID, 1, APP_RATE_LIMIT, regain_minutes=3)
    with pytest.raises(GraphThrottled) as caught:
        await graph.media_info(ACME.id, MEDIA_ID)
    assert (caught.value.code, caught.value.retry_after_s) == (4, 180.0)
    usage = graph.usage(ACME.id)
    assert usage is not None
    assert usage.regain_s == 180.0


async def test_short_throttling_is_retried_in_the_client(graph: GraphClient, sim: GraphSim) -> None:
    """130429 without a regain time: the backoff is short, so the client retries itself."""
    sim.fail(MEDIA_ID, 1, THROUGHPUT_LIMIT)
    info = await graph.media_info(ACME.id, MEDIA_ID)
    assert info.media_id == MEDIA_ID


async def test_usage_headers_are_parsed_per_tenant(port: int, clock: SimClock) -> None:
    """X-App-Usage and X-Business-Use-Case-Usage of each response reach `usage()` and the
    callback, per tenant (4 calls allowed per window: 2 calls are 50 %)."""
    sim = GraphSim(GraphSimConfig(TENANTS, calls_per_window=4), clock=clock)
    seen: list[tuple[str, GraphUsage]] = []
    async with serve_graph_sim(sim) as sim_port:
        client = make_client(sim_port, on_usage=lambda t, u: seen.append((t, u)))
        try:
            waba = ACME.waba_ids[0]
            await client.waba(ACME.id, waba)
            await client.waba(ACME.id, waba)
            assert client.usage(OTHER.id) is None
        finally:
            await client.close()
    usage = client.usage(ACME.id)
    assert usage is not None
    assert usage.app is not None
    assert usage.app.call_count == 50
    [business] = usage.business
    assert (business.business_id, business.type) == (waba, "whatsapp_business_management")
    assert (business.call_count, business.regain_s) == (50, 0.0)
    assert [t for t, _ in seen] == [ACME.id, ACME.id]
    assert seen[0][1].app is not None
    assert seen[0][1].app.call_count == 25


async def test_templates_follow_the_paging_cursors(graph: GraphClient, sim: GraphSim) -> None:
    """All 60 templates of the WABA, once each, over pages of 25, with the fields asked
    for (quality score, rejection reason) parsed."""
    sim.set_fields(str(10**15 + 59), status="PAUSED", quality_score={"score": "RED"})
    templates = await graph.templates(ACME.id, ACME.waba_ids[0], page_size=25)
    assert len(templates) == len({t.name for t in templates}) == 60
    states = {(t.status, t.category, t.quality_score, t.rejected_reason) for t in templates[:59]}
    assert states == {("APPROVED", "UTILITY", "GREEN", "NONE")}
    last = templates[59]
    assert (last.id, last.status, last.quality_score) == (str(10**15 + 59), "PAUSED", "RED")


async def test_phone_number_and_waba_fields(graph: GraphClient, sim: GraphSim) -> None:
    """The fields asked for come back parsed (overrides included); another tenant's WABA
    is Meta's code 100, a GraphError."""
    number = ACME.numbers[0]
    sim.set_fields(number.phone_number_id, quality_rating="RED")
    info = await graph.phone_number(ACME.id, number.phone_number_id)
    assert (info.id, info.display_phone_number) == (
        number.phone_number_id,
        number.display_phone_number,
    )
    assert (info.quality_rating, info.name_status, info.throughput_level) == (
        "RED",
        "APPROVED",
        "STANDARD",
    )
    assert info.messaging_limit == "TIER_2K"
    waba = await graph.waba(ACME.id, ACME.waba_ids[0])
    assert (waba.id, waba.account_review_status, waba.currency) == (
        ACME.waba_ids[0],
        "APPROVED",
        "USD",
    )
    with pytest.raises(GraphError) as caught:
        await graph.waba(ACME.id, OTHER.waba_ids[0])
    assert (caught.value.code, caught.value.subcode) == (100, 33)


async def test_plain_http_is_refused_for_a_pattern_host(
    port: int, sim: GraphSim, tmp_path: Path
) -> None:
    """A `*.suffix` host with a public address over http is refused before connecting:
    the token never travels in clear to a host the operator did not name."""
    sim.config.media_base_url = f"http://cdn.sim.test:{port}/"
    dns = static_dns({"cdn.sim.test": ["157.240.1.1"]})
    client = make_client(port, allowed_hosts=("*.sim.test",), resolver=dns)
    try:
        info = await client.media_info(ACME.id, MEDIA_ID)
        with pytest.raises(MediaRejected) as caught:
            await client.download(ACME.id, info, tmp_path / "f", 1_000_000)
        assert caught.value.reason == "host_not_allowed"
        assert "plain http" in caught.value.detail
    finally:
        await client.close()


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "http://[::1", "/relative/only"]
)
async def test_other_schemes_and_malformed_urls_are_refused(
    graph: GraphClient, tmp_path: Path, url: str
) -> None:
    """Only http(s) URLs with a host on the list are ever opened."""
    info = MediaInfo(MEDIA_ID, url, "image/jpeg", None, None)
    with pytest.raises(MediaRejected) as caught:
        await graph.download(ACME.id, info, tmp_path / "f", 1_000_000)
    assert caught.value.reason == "host_not_allowed"
