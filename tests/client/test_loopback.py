"""Authorization code + PKCE with a loopback redirect (RFC 8252), the browser played by a test
that signs in through the server's real pages and then follows the redirect to our listener."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.client.conftest import PASSWORD, AuthServer
from tests.server.flows import hidden_interaction
from tokenward.client import (
    AuthorizationCodePKCE,
    AuthorizationError,
    Discovery,
    DpopKey,
    Http,
    ServerMetadata,
)

Tamper = Callable[[dict[str, str]], dict[str, str]]


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def browser(
    server: AuthServer, tamper: Tamper = dict, decision: str = "approve", username: str = "alice"
) -> Callable[[str], None]:
    """Signs alice in, answers the consent page, and delivers the (tampered) redirect."""

    def open_url(url: str) -> None:
        with httpx.Client(timeout=10) as agent:
            page = agent.get(url)
            done = agent.post(
                f"{server.base}/login",
                data={
                    "interaction": hidden_interaction(page.text),
                    "username": username,
                    "password": PASSWORD,
                },
            )
            if done.status_code == 200 and 'action="/consent"' in done.text:
                done = agent.post(
                    f"{server.base}/consent",
                    data={"interaction": hidden_interaction(done.text), "decision": decision},
                )
            assert done.status_code == 302, done.text[:300]
            location = urlsplit(done.headers["location"])
            params = tamper(query(done.headers["location"]))
            landed = agent.get(
                f"{location.scheme}://{location.netloc}{location.path}?{urlencode(params)}"
            )
            assert landed.status_code == 200

    return open_url


def desktop(
    server: AuthServer, open_browser: Callable[[str], object], **options: object
) -> AuthorizationCodePKCE:
    return AuthorizationCodePKCE(
        server.issuer,
        "desktop",
        scope="openid read",
        open_browser=open_browser,
        port=server.loopback_port,  # tokenward matches redirect URIs exactly, port included
        timeout=10,
        clock=server.clock,
        **options,  # type: ignore[arg-type]
    )


def test_sign_in_through_the_browser(auth_server: AuthServer) -> None:
    with desktop(auth_server, browser(auth_server)) as source:
        tokens = source.login()
        assert tokens.token_type == "Bearer"
        assert set((tokens.scope or "").split()) == {"openid", "read"}
        assert tokens.id_token
        assert tokens.refresh_token
        renewed = source.refresh(tokens)
    assert renewed.refresh_token != tokens.refresh_token


def test_a_step_up_sign_in_sends_acr_values_and_max_age(auth_server: AuthServer) -> None:
    """What a StepUpRequired asked for goes to /authorize; a password-only user's token then
    says pwd, which the API that asked will judge (docs/second-factors.md)."""
    asked: list[dict[str, str]] = []
    sign_in = browser(auth_server)

    def open_url(url: str) -> None:
        asked.append(query(url))
        sign_in(url)

    with desktop(auth_server, open_url) as source:
        tokens = source.login(acr_values="urn:tokenward:acr:mfa", max_age=0)
    assert (asked[0]["acr_values"], asked[0]["max_age"]) == ("urn:tokenward:acr:mfa", "0")
    assert tokens.access_token


@pytest.mark.anyio
async def test_sign_in_async_with_dpop(auth_server: AuthServer) -> None:
    key = DpopKey(clock=auth_server.clock)
    async with desktop(auth_server, browser(auth_server), dpop=key) as source:
        tokens = await source.alogin()
    assert tokens.token_type == "DPoP"
    assert tokens.dpop_key is key


@pytest.mark.parametrize(
    ("tamper", "complaint"),
    [
        (lambda p: {**p, "state": "forged"}, "state"),
        (lambda p: {**p, "iss": "http://127.0.0.1:1"}, "another issuer"),
        (lambda p: {k: v for k, v in p.items() if k != "iss"}, "RFC 9207"),
        (lambda p: {k: v for k, v in p.items() if k != "code"}, "no code"),
    ],
)
def test_a_doubtful_response_is_refused(
    auth_server: AuthServer, tamper: Tamper, complaint: str
) -> None:
    with (
        desktop(auth_server, browser(auth_server, tamper)) as source,
        pytest.raises(AuthorizationError) as caught,
    ):
        source.login()
    assert complaint in str(caught.value)


def test_a_declined_consent_is_an_error(auth_server: AuthServer) -> None:
    # bob never approves anything, so he always sees the consent page
    source = desktop(auth_server, browser(auth_server, decision="deny", username="bob"))
    with source, pytest.raises(AuthorizationError) as caught:
        source.login()
    assert caught.value.error == "access_denied"


def test_no_answer_times_out(auth_server: AuthServer) -> None:
    source = AuthorizationCodePKCE(
        auth_server.issuer, "desktop", open_browser=lambda _url: None, port=0, timeout=0.2
    )
    with source, pytest.raises(AuthorizationError) as caught:
        source.login()
    assert caught.value.error == "timeout"


def test_ephemeral_port_and_pkce_s256() -> None:
    """RFC 8252 §7.3 servers accept any loopback port: the listener takes one from the system,
    and the exchange proves the verifier behind the S256 challenge (a stand-in server here,
    since tokenward matches registered redirect URIs exactly)."""
    issuer = "https://as.example"
    seen: dict[str, str] = {}

    def open_url(url: str) -> None:
        params = query(url)
        seen.update(params)
        redirect = urlsplit(params["redirect_uri"])
        assert redirect.hostname == "127.0.0.1"
        assert redirect.port not in (None, 0)
        answer = {"code": "the-code", "state": params["state"], "iss": issuer}
        httpx.get(f"{params['redirect_uri']}?{urlencode(answer)}", timeout=5)

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        digest = hashlib.sha256(form["code_verifier"].encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        assert challenge == seen["code_challenge"]
        assert form["redirect_uri"] == seen["redirect_uri"]
        assert form["code"] == "the-code"
        assert form["client_id"] == "app"
        return httpx.Response(200, json={"access_token": "at", "token_type": "Bearer"})

    metadata = ServerMetadata(
        issuer=issuer,
        token_endpoint=f"{issuer}/token",
        authorization_endpoint=f"{issuer}/authorize",
        iss_parameter_supported=True,
    )
    with httpx.Client(transport=httpx.MockTransport(token_endpoint)) as client:
        source = AuthorizationCodePKCE(
            issuer,
            "app",
            open_browser=open_url,
            timeout=5,
            http=Http(client),
            discovery=Discovery(issuer, metadata=metadata),
        )
        assert source.login().access_token == "at"
    assert seen["code_challenge_method"] == "S256"
