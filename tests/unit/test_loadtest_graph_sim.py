"""The simulated Graph API over httpx.ASGITransport: auth, shapes, expiry, throttling."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from loadtest.graph_sim import GraphSim, GraphSimConfig, create_graph_app
from loadtest.tenants import generate_tenants

TENANTS = generate_tenants(2, seed=3)
ACME, OTHER = TENANTS
MEDIA_ID = "1234567890123456"


class Clock:
    """A hand-driven clock for link expiry and call windows."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _client(sim: GraphSim) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_graph_app(sim))
    return httpx.AsyncClient(transport=transport, base_url="http://graph.test")


@pytest.fixture
async def graph(clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    sim = GraphSim(GraphSimConfig(TENANTS, url_ttl_s=300), clock=clock)
    async with _client(sim) as client:
        yield client


def _auth(token: str = ACME.access_token) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_meta_error(response: httpx.Response, status: int, code: int) -> dict[str, object]:
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert {"message", "type", "code", "fbtrace_id"} <= error.keys()
    assert isinstance(error["fbtrace_id"], str)
    return dict(error)


async def test_missing_and_invalid_tokens_get_meta_errors(graph: httpx.AsyncClient) -> None:
    """No token: 400 code 2500; an unknown token: 401 code 190 (OAuthException)."""
    _assert_meta_error(await graph.get(f"/v21.0/{MEDIA_ID}"), 400, 2500)
    error = _assert_meta_error(
        await graph.get(f"/v21.0/{MEDIA_ID}", headers=_auth("EAAbogus")), 401, 190
    )
    assert error["type"] == "OAuthException"


async def test_media_lookup_has_metas_fields_and_a_working_link(graph: httpx.AsyncClient) -> None:
    """The lookup returns url/mime_type/sha256/file_size/id; the URL serves those bytes."""
    response = await graph.get(f"/v21.0/{MEDIA_ID}", headers=_auth())
    assert response.status_code == 200
    meta = response.json()
    assert set(meta) == {"messaging_product", "url", "mime_type", "sha256", "file_size", "id"}
    assert (meta["messaging_product"], meta["id"]) == ("whatsapp", MEDIA_ID)
    download = await graph.get(meta["url"], headers=_auth())
    assert download.status_code == 200
    assert download.headers["content-type"].startswith(meta["mime_type"].split(";")[0])
    assert len(download.content) == meta["file_size"]
    assert hashlib.sha256(download.content).hexdigest() == meta["sha256"]


async def test_download_needs_the_bearer_token(graph: httpx.AsyncClient) -> None:
    """The media URL alone is not enough: without a token it is refused."""
    url = (await graph.get(f"/v21.0/{MEDIA_ID}", headers=_auth())).json()["url"]
    _assert_meta_error(await graph.get(url), 400, 2500)


async def test_media_links_expire(graph: httpx.AsyncClient, clock: Clock) -> None:
    """A link works until url_ttl_s has passed, then answers 404 with a Graph error."""
    url = (await graph.get(f"/v21.0/{MEDIA_ID}", headers=_auth())).json()["url"]
    clock.now += 299
    assert (await graph.get(url, headers=_auth())).status_code == 200
    clock.now += 2
    _assert_meta_error(await graph.get(url, headers=_auth()), 404, 100)


async def test_tampered_link_is_refused(graph: httpx.AsyncClient) -> None:
    """Changing the media id of a link breaks its hash."""
    url = (await graph.get(f"/v21.0/{MEDIA_ID}", headers=_auth())).json()["url"]
    forged = url.replace(f"mid={MEDIA_ID}", "mid=6543210987654321")
    _assert_meta_error(await graph.get(forged, headers=_auth()), 404, 100)


async def test_unknown_object_is_metas_code_100_subcode_33(graph: httpx.AsyncClient) -> None:
    """An id that is neither a number of the caller nor a media id."""
    error = _assert_meta_error(await graph.get("/v21.0/not-an-id", headers=_auth()), 400, 100)
    assert error["error_subcode"] == 33


async def test_phone_number_info_only_for_the_owner(graph: httpx.AsyncClient) -> None:
    """GET /{phone-number-id} answers the owning tenant; another tenant's token gets 100."""
    number = ACME.numbers[0]
    info = (await graph.get(f"/v21.0/{number.phone_number_id}", headers=_auth())).json()
    assert info["id"] == number.phone_number_id
    assert info["display_phone_number"] == number.display_phone_number
    assert {"verified_name", "quality_rating", "code_verification_status"} <= info.keys()
    other = await graph.get(f"/v21.0/{number.phone_number_id}", headers=_auth(OTHER.access_token))
    _assert_meta_error(other, 400, 100)


async def test_templates_are_paged_with_cursors(graph: httpx.AsyncClient) -> None:
    """limit/after walk every template once; the last page has no `next`."""
    waba = ACME.waba_ids[0]
    names: list[str] = []
    after = ""
    for _ in range(10):
        page = (
            await graph.get(
                f"/v21.0/{waba}/message_templates",
                params={"limit": 25, "after": after},
                headers=_auth(),
            )
        ).json()
        names += [t["name"] for t in page["data"]]
        assert {"name", "status", "category", "language", "components", "id"} <= set(
            page["data"][0]
        )
        after = page["paging"]["cursors"]["after"]
        if "next" not in page["paging"]:
            break
    assert len(names) == len(set(names)) == 60
    foreign = await graph.get(f"/v21.0/{OTHER.waba_ids[0]}/message_templates", headers=_auth())
    _assert_meta_error(foreign, 400, 100)


async def test_throttling_reports_usage_and_meta_codes(clock: Clock) -> None:
    """Past the allowance: 429 with code 80007 on WABA calls, 4 on media; the usage header
    counts up to 100 % and names the time to regain access; the window then recovers."""
    sim = GraphSim(GraphSimConfig(TENANTS, calls_per_window=4, window_s=120), clock=clock)
    waba = ACME.waba_ids[0]
    async with _client(sim) as graph:
        usages = []
        for _ in range(4):
            response = await graph.get(f"/v21.0/{waba}/message_templates", headers=_auth())
            assert response.status_code == 200
            usages.append(orjson.loads(response.headers["x-business-use-case-usage"]))
        assert [u[waba][0]["call_count"] for u in usages] == [25, 50, 75, 100]
        throttled = await graph.get(f"/v21.0/{waba}/message_templates", headers=_auth())
        error = _assert_meta_error(throttled, 429, 80007)
        assert error["is_transient"] is True
        usage = orjson.loads(throttled.headers["x-business-use-case-usage"])[waba][0]
        assert usage["estimated_time_to_regain_access"] == 2
        _assert_meta_error(await graph.get(f"/v21.0/{MEDIA_ID}", headers=_auth()), 429, 4)
        clock.now += 121
        assert (await graph.get(f"/v21.0/{MEDIA_ID}", headers=_auth())).status_code == 200


async def test_any_documented_error_can_be_forced(graph: httpx.AsyncClient) -> None:
    """X-Sim-Error: 130429 answers the throughput error with its subcode."""
    response = await graph.get(f"/v21.0/{MEDIA_ID}", headers={**_auth(), "X-Sim-Error": "130429"})
    error = _assert_meta_error(response, 429, 130429)
    assert error["error_subcode"] == 2494055
