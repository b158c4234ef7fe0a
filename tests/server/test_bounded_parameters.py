"""Every request parameter is bounded in length and count, and loopback redirect URIs carry a
real port (RFC 8252 §7.3): bad input is a clear invalid_request, never a 500 or a stored blob."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from tests.server.conftest import Server
from tests.server.flows import REDIRECT_URI, Pkce, authorize_params, query_of
from tokenward.oauth.authorize import DEFAULT_MAX, LIMITS, MAX_PARAMS

pytestmark = pytest.mark.anyio
FORM_TYPE = ("content-type", "application/x-www-form-urlencoded")


async def _loopback_client(server: Server) -> None:
    record = await server.services.stores.clients.get("web")
    assert record is not None
    await server.services.stores.clients.put(
        replace(record, redirect_uris=("http://127.0.0.1/cb", "http://[::1]/cb"))
    )


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:0/cb",
        "http://127.0.0.1:65536/cb",
        "http://127.0.0.1:99999/cb",
        "http://127.0.0.1:123456/cb",
        "http://127.0.0.1:abc/cb",
        "http://127.0.0.1:+80/cb",
        "http://127.0.0.1:-1/cb",
        "http://127.0.0.1:08080/cb",
        "http://127.0.0.1:/cb",
        "http://127.0.0.1:80:81/cb",
        "http://127.0.0.1: 80/cb",
        "http://user@127.0.0.1:8080/cb",
        "http://:pw@127.0.0.1:8080/cb",
        "http://[::1]:0/cb",
        "http://[::1]:70000/cb",
        "http://[::1]:x/cb",
    ],
)
async def test_loopback_redirect_ports_must_be_1_to_65535(server: Server, uri: str) -> None:
    await _loopback_client(server)
    refused = await server.http.get(
        "/authorize", params=authorize_params(Pkce.new(), redirect_uri=uri)
    )
    assert refused.status_code == 400
    assert "not registered" in refused.text
    assert "location" not in refused.headers


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1/cb",
        "http://127.0.0.1:1/cb",
        "http://127.0.0.1:65535/cb",
        "http://[::1]:8080/cb",
    ],
)
async def test_loopback_redirect_with_a_valid_port(server: Server, uri: str) -> None:
    await _loopback_client(server)
    page = await server.http.get(
        "/authorize", params=authorize_params(Pkce.new(), redirect_uri=uri)
    )
    assert page.status_code == 200
    assert 'action="/login"' in page.text


async def test_a_long_state_is_refused_without_echoing_it(server: Server) -> None:
    state = "s" * (LIMITS["state"] + 1)
    response = await server.http.get("/authorize", params=authorize_params(Pkce.new(), state=state))
    assert response.status_code == 302
    query = query_of(response.headers["location"])
    assert query["error"] == "invalid_request"
    assert "state" in query["error_description"]
    assert "state" not in query  # never reflected
    assert response.headers["location"].startswith(REDIRECT_URI)


@pytest.mark.parametrize(
    ("name", "limit"),
    [
        *(
            (name, limit)
            for name, limit in LIMITS.items()
            if name not in ("client_id", "redirect_uri")
        ),
        ("an_extension", DEFAULT_MAX),
        ("id_token_hint", DEFAULT_MAX),
    ],
)
async def test_every_parameter_is_bounded(server: Server, name: str, limit: int) -> None:
    params = authorize_params(Pkce.new(), **{name: "a" * (limit + 1)})
    response = await server.http.get("/authorize", params=params)
    assert response.status_code == 302, response.text[:300]
    query = query_of(response.headers["location"])
    assert query["error"] == "invalid_request", query
    assert f"{name} is too long" in query["error_description"]
    assert "a" * (limit + 1) not in response.headers["location"]


@pytest.mark.parametrize("name", ["client_id", "redirect_uri"])
async def test_long_client_or_redirect_is_our_own_page(server: Server, name: str) -> None:
    params = authorize_params(Pkce.new(), **{name: "x" * (LIMITS[name] + 1)})
    response = await server.http.get("/authorize", params=params)
    assert response.status_code == 400
    assert "too long" in response.text
    assert "x" * 100 not in response.text


async def test_long_parameter_names_and_many_resources(server: Server) -> None:
    named = await server.http.get(
        "/authorize", params=authorize_params(Pkce.new(), **{"n" * 65: "1"})
    )
    assert query_of(named.headers["location"])["error"] == "invalid_request"
    resources = [("resource", f"https://api.example/{i}") for i in range(17)]
    many = await server.http.get(
        "/authorize", params=[*authorize_params(Pkce.new()).items(), *resources]
    )
    assert query_of(many.headers["location"])["error_description"] == "too many resource parameters"


@pytest.mark.parametrize("count", [MAX_PARAMS + 1, 500])
async def test_too_many_parameters_is_a_400_page_not_a_500(server: Server, count: int) -> None:
    extra = [(f"x{i}", "1") for i in range(count - len(authorize_params(Pkce.new())))]
    response = await server.http.get(
        "/authorize", params=[*authorize_params(Pkce.new()).items(), *extra]
    )
    assert response.status_code == 400
    assert "too many parameters" in response.text


@pytest.mark.parametrize(
    ("name", "length"),
    [
        ("scope", 2049),
        ("client_id", 257),
        ("grant_type", 257),
        ("code", 1025),
        ("refresh_token", 1025),
        ("token_type_hint", 65),
        ("n" * 65, 16),
    ],
)
@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke", "/device_authorization"])
async def test_form_endpoints_bound_known_parameters(
    server: Server, path: str, name: str, length: int
) -> None:
    response = await server.http.post(
        path,
        data={"grant_type": "client_credentials", name: "a" * length},
        auth=("service", server.secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "too long" in response.json()["error_description"]
    assert "a" * length not in response.text


@pytest.mark.parametrize("header", ["authorization", "dpop"])
@pytest.mark.parametrize("path", ["/token", "/introspect"])
async def test_a_repeated_credential_header_is_invalid_request(
    server: Server, path: str, header: str
) -> None:
    """RFC 6749 §3.1 and RFC 9449 §4.3: one Authorization, one DPoP header, never two."""
    basic = "Basic " + base64.b64encode(f"service:{server.secret}".encode()).decode()
    repeated = (
        [(header, basic), (header, basic)]
        if header == "authorization"
        else [("authorization", basic), (header, "x"), (header, "y")]
    )
    response = await server.http.post(
        path, content=b"grant_type=client_credentials&token=x", headers=[*repeated, FORM_TYPE]
    )
    if path == "/introspect" and header == "dpop":
        assert response.status_code == 200  # introspection reads no DPoP header
        return
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert f"the {header} header is repeated" in response.json()["error_description"]


@pytest.mark.parametrize("path", ["/token", "/introspect"])
async def test_a_body_in_many_chunks_is_read_whole(server: Server, path: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"grant_type=client", b"_credentials&tok", b"en=abc"):
            yield part

    response = await server.http.post(
        path,
        content=chunks(),
        headers=[FORM_TYPE],
        auth=("service", server.secret),
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("declared", [True, False])
@pytest.mark.parametrize("path", ["/token", "/introspect"])
async def test_a_body_over_the_limit_is_refused_unread(
    server: Server, path: str, declared: bool
) -> None:
    """Declared too long, or streamed (no Content-Length) past the limit: a 400 either way."""
    limit = server.services.settings.max_body_bytes
    body = b"token=" + b"a" * limit

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = await server.http.post(
        path,
        content=body if declared else chunks(),
        headers=[FORM_TYPE],
        auth=("service", server.secret),
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "the request body is too large",
    }
