"""Token sources against a scripted server: device polling rules (RFC 8628 §3.5), discovery
checks (RFC 8414 §3.3), client authentication (RFC 6749 §2.3.1), token response checks."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.client.fake import ISSUER, FakeServers, source
from tests.conftest import FrozenClock
from tokenward.client import (
    AuthorizationError,
    DeviceCodeLogin,
    Discovery,
    DiscoveryError,
    Http,
    OAuthResponseError,
)


def oauth_error(code: str, status: int = 400, description: str = "") -> Any:
    body = {"error": code, "error_description": description}
    return lambda _request: httpx.Response(status, json=body)


def device(
    servers: FakeServers, clock: FrozenClock, pauses: list[float]
) -> tuple[DeviceCodeLogin, httpx.Client]:
    def pause(seconds: float) -> None:
        pauses.append(seconds)
        clock.advance(seconds)

    def device_endpoint(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/device_authorization":
            return httpx.Response(
                200,
                json={
                    "device_code": "dc-secret",
                    "user_code": "ABCD-EFGH",
                    "verification_uri": f"{ISSUER}/device",
                    "expires_in": 60,
                },
            )
        return servers(request)

    client = httpx.Client(transport=httpx.MockTransport(device_endpoint))
    login = DeviceCodeLogin(
        ISSUER, "tv", prompt=lambda _a: None, http=Http(client, sleep=pause), clock=clock
    )
    return login, client


def test_device_polling_honours_interval_and_slow_down(clock: FrozenClock) -> None:
    servers = FakeServers(
        token_script=[
            oauth_error("authorization_pending"),
            oauth_error("slow_down"),
            oauth_error("authorization_pending"),
        ]
    )
    pauses: list[float] = []
    login, client = device(servers, clock, pauses)
    with client:
        tokens = login.login()
    assert tokens.access_token == "at-1"
    assert pauses == [5.0, 5.0, 10.0, 10.0]  # default interval; +5 after slow_down, for good
    assert {f["device_code"] for f in servers.token_forms} == {"dc-secret"}
    assert all(f["client_id"] == "tv" for f in servers.token_forms)  # a public client


def test_device_code_expiry_ends_polling(clock: FrozenClock) -> None:
    servers = FakeServers(token_script=[oauth_error("authorization_pending")] * 100)
    pauses: list[float] = []
    login, client = device(servers, clock, pauses)
    with client, pytest.raises(AuthorizationError) as caught:
        login.login()
    assert caught.value.error == "expired_token"
    assert sum(pauses) <= 65  # stopped at the code's 60 s lifetime, not later


@pytest.mark.parametrize(
    ("code", "expected"), [("expired_token", "expired_token"), ("access_denied", "access_denied")]
)
def test_device_flow_endings(clock: FrozenClock, code: str, expected: str) -> None:
    servers = FakeServers(token_script=[oauth_error(code)])
    login, client = device(servers, clock, [])
    with client, pytest.raises(AuthorizationError) as caught:
        login.login()
    assert caught.value.error == expected


def test_client_secret_basic_form_encodes_both_halves(clock: FrozenClock) -> None:
    seen: list[str] = []

    def token(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={"access_token": "x", "token_type": "Bearer"})

    servers = FakeServers(token_script=[token])
    token_source, client = source(servers, clock)
    token_source._secret = "p@ss word:+"
    token_source.client_id = "my client"
    with client:
        token_source.fetch()
    decoded = base64.b64decode(seen[0].removeprefix("Basic ")).decode()
    assert decoded == "my+client:p%40ss+word%3A%2B"  # RFC 6749 §2.3.1


def test_discovery_is_cached_and_falls_back_to_rfc_8414(clock: FrozenClock) -> None:
    hits: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        hits.append(request.url.path)
        if request.url.path == "/.well-known/oauth-authorization-server/tenant":
            return httpx.Response(
                200, json={"issuer": f"{ISSUER}/tenant", "token_endpoint": f"{ISSUER}/t"}
            )
        return httpx.Response(404)

    with httpx.Client(transport=httpx.MockTransport(server)) as client:
        http = Http(client)
        discovery = Discovery(f"{ISSUER}/tenant")
        first = http.run(discovery.flow())
        second = http.run(discovery.flow())
    assert first is second
    assert first.token_endpoint == f"{ISSUER}/t"
    assert hits == [
        "/tenant/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server/tenant",
    ]


@pytest.mark.parametrize(
    "document",
    [
        {"issuer": "https://evil.example", "token_endpoint": "https://evil.example/token"},
        {"issuer": ISSUER + "/", "token_endpoint": f"{ISSUER}/token"},  # not the exact string
        {"issuer": ISSUER, "token_endpoint": "http://as.example/token"},  # plain http
        {"issuer": ISSUER},
        ["not", "an", "object"],
    ],
)
def test_doubtful_metadata_is_refused(document: object) -> None:
    def server(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=document)

    with (
        httpx.Client(transport=httpx.MockTransport(server)) as client,
        pytest.raises(DiscoveryError),
    ):
        Http(client).run(Discovery(ISSUER).flow())


def test_plain_http_issuers_only_on_this_machine() -> None:
    with pytest.raises(DiscoveryError):
        Discovery("http://as.example")
    Discovery("http://127.0.0.1:8000")
    Discovery("http://localhost:8000")


@pytest.mark.parametrize(
    "body",
    [
        {"token_type": "Bearer"},
        {"access_token": "x"},
        {"access_token": "x", "token_type": "mac"},
        {"access_token": "x", "token_type": "DPoP"},  # no key was proved: nobody asked
        "just text",
    ],
)
def test_malformed_token_responses_are_refused(clock: FrozenClock, body: object) -> None:
    servers = FakeServers(token_script=[lambda _r: httpx.Response(200, json=body)])
    token_source, client = source(servers, clock)
    with client, pytest.raises(OAuthResponseError) as caught:
        token_source.fetch()
    assert caught.value.error == "invalid_response"


def test_token_success_must_be_200(clock: FrozenClock) -> None:
    body = {"access_token": "x", "token_type": "Bearer"}
    servers = FakeServers(token_script=[lambda _r: httpx.Response(201, json=body)])
    token_source, client = source(servers, clock)
    with client, pytest.raises(OAuthResponseError):
        token_source.fetch()


def test_a_careless_servers_description_is_redacted(clock: FrozenClock) -> None:
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"
    servers = FakeServers(
        token_script=[oauth_error("invalid_client", 401, f"bad secret s3cret-value for {jwt}")]
    )
    token_source, client = source(servers, clock)
    with client, pytest.raises(OAuthResponseError) as caught:
        token_source.fetch()
    message = str(caught.value)
    assert "s3cret-value" not in message
    assert jwt not in message
    assert message.startswith("invalid_client (HTTP 401)")
