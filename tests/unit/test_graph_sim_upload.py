"""The simulator's media upload (`POST /{version}/{phone-number-id}/media`), over
httpx.ASGITransport: what is uploaded is what the lookup reports and the link serves;
every refusal is the error body Meta documents."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest

from loadtest.graph_sim import GraphSim, GraphSimConfig, create_graph_app
from loadtest.tenants import generate_tenants

TENANTS = generate_tenants(2, seed=5)
ACME, OTHER = TENANTS
NUMBER = ACME.numbers[1].phone_number_id  # the second number, in the tenant's second WABA
# Not a real JPEG: the simulator stores what it is given (the service checks the bytes).
CONTENT = bytes(range(256)) * 41


@pytest.fixture
def sim() -> GraphSim:
    return GraphSim(GraphSimConfig(TENANTS))


@pytest.fixture
async def graph(sim: GraphSim) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_graph_app(sim))
    async with httpx.AsyncClient(transport=transport, base_url="http://graph.test") as client:
        yield client


def _auth(token: str = ACME.access_token) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _upload(
    graph: httpx.AsyncClient,
    *,
    number: str = NUMBER,
    token: str = ACME.access_token,
    data: dict[str, str] | None = None,
    file: tuple[str, bytes, str] | None = ("photo.jpg", CONTENT, "image/jpeg"),
) -> httpx.Response:
    fields = {"messaging_product": "whatsapp", "type": "image/jpeg"} if data is None else data
    files = {"file": file} if file is not None else None
    if files is None:  # still multipart, as a client that forgot the file sends it
        files = {"other": ("x.txt", b"x", "text/plain")}
    return await graph.post(
        f"/v23.0/{number}/media", data=fields, files=files, headers=_auth(token)
    )


def _error(response: httpx.Response, status: int, code: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert {"message", "type", "fbtrace_id"} <= error.keys()
    return dict(error)


async def test_an_upload_is_served_by_the_lookup_and_its_link(
    graph: httpx.AsyncClient, sim: GraphSim
) -> None:
    """The answer is `{"id"}` alone; GET /{id} reports the bytes' sha256 (hex), size and
    type; the link serves the same bytes; the media is owned by the number's tenant."""
    response = await _upload(graph)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"id"}
    media_id = response.json()["id"]
    assert media_id.isdigit()
    assert len(media_id) == 16
    assert sim.media[media_id].owner == ACME.id

    meta = (await graph.get(f"/v23.0/{media_id}", headers=_auth())).json()
    assert meta["sha256"] == hashlib.sha256(CONTENT).hexdigest()
    assert (meta["file_size"], meta["mime_type"], meta["id"]) == (
        len(CONTENT),
        "image/jpeg",
        media_id,
    )
    download = await graph.get(meta["url"], headers=_auth())
    assert download.status_code == 200
    assert download.content == CONTENT
    assert download.headers["content-type"].startswith("image/jpeg")
    # Another tenant cannot see it, as on Meta.
    _error(await graph.get(f"/v23.0/{media_id}", headers=_auth(OTHER.access_token)), 400, 100)


async def test_two_uploads_get_two_ids(graph: httpx.AsyncClient) -> None:
    """Each upload is a new media object, even of the same bytes."""
    first, second = (await _upload(graph)).json()["id"], (await _upload(graph)).json()["id"]
    assert first != second


async def test_the_file_parts_type_stands_in_for_a_missing_type_field(
    graph: httpx.AsyncClient,
) -> None:
    """Meta's own example sends `-F 'file=@x.mp4;type=video/mp4'` without `type`; the
    `type` field wins over the part's when both are given."""
    answer = await _upload(
        graph, data={"messaging_product": "whatsapp"}, file=("v.mp4", CONTENT, "video/mp4")
    )
    meta = (await graph.get(f"/v23.0/{answer.json()['id']}", headers=_auth())).json()
    assert meta["mime_type"] == "video/mp4"
    answer = await _upload(
        graph,
        data={"messaging_product": "whatsapp", "type": "audio/ogg; codecs=opus"},
        file=("v.ogg", CONTENT, "application/octet-stream"),
    )
    meta = (await graph.get(f"/v23.0/{answer.json()['id']}", headers=_auth())).json()
    assert meta["mime_type"] == "audio/ogg; codecs=opus"


async def test_a_number_of_another_tenant_or_none_is_code_100_subcode_33(
    graph: httpx.AsyncClient, sim: GraphSim
) -> None:
    """Uploading on someone else's number (or an unknown one) registers nothing."""
    for number in (OTHER.numbers[0].phone_number_id, "999999999999999"):
        error = _error(await _upload(graph, number=number), 400, 100)
        assert error["error_subcode"] == 33
    assert sim.media == {}


async def test_bad_or_revoked_tokens_are_code_190(graph: httpx.AsyncClient, sim: GraphSim) -> None:
    """An unknown token, then a revoked one (subcode 460)."""
    _error(await _upload(graph, token="EAAbogus"), 401, 190)
    sim.revoke(ACME.id)
    error = _error(await _upload(graph), 401, 190)
    assert error["error_subcode"] == 460
    assert sim.media == {}


@pytest.mark.parametrize(
    ("data", "file", "names"),
    [
        ({"messaging_product": "whatsapp", "type": "image/jpeg"}, None, "file"),
        ({"type": "image/jpeg"}, ("p.jpg", CONTENT, "image/jpeg"), "messaging_product"),
        ({"messaging_product": "whatsapp"}, ("p.bin", CONTENT, ""), "type"),
    ],
)
async def test_a_missing_parameter_is_code_100_naming_it(
    graph: httpx.AsyncClient,
    sim: GraphSim,
    data: dict[str, str],
    file: tuple[str, bytes, str] | None,
    names: str,
) -> None:
    """file, messaging_product and type (field or part) are required."""
    error = _error(await _upload(graph, data=data, file=file), 400, 100)
    assert error["message"] == f"(#100) The parameter {names} is required"
    assert sim.media == {}


async def test_wrong_product_and_unsupported_type_are_code_100(graph: httpx.AsyncClient) -> None:
    """messaging_product must be whatsapp; the type one of Meta's supported media types."""
    error = _error(
        await _upload(graph, data={"messaging_product": "sms", "type": "image/jpeg"}), 400, 100
    )
    assert "messaging_product" in str(error["message"])
    error = _error(
        await _upload(graph, data={"messaging_product": "whatsapp", "type": "image/gif"}), 400, 100
    )
    assert "Received file of type 'image/gif'" in str(error["message"])


async def test_a_json_body_has_no_file(graph: httpx.AsyncClient) -> None:
    """Not multipart at all: Meta finds no parameters (the first it asks for is named)."""
    response = await graph.post(
        f"/v23.0/{NUMBER}/media", json={"messaging_product": "whatsapp"}, headers=_auth()
    )
    _error(response, 400, 100)
