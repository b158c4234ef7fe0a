"""TokenAuth's retry and renewal rules, exactly: once for invalid_token, once for a nonce, never
more; renewal ahead of expiry with the configured skew; rotation kept straight through a store."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import httpx
import pytest

from tests.client.fake import API, ISSUER, FakeServers, challenge, proof_claims, source
from tests.conftest import FrozenClock
from tokenward.client import (
    DeviceCodeLogin,
    DpopKey,
    Http,
    InsecureTransportError,
    LoginRequired,
    MemoryStore,
    OAuthResponseError,
    StepUpRequired,
    TokenAuth,
    TokenSet,
)
from tokenward.tokens.dpop import access_token_hash


def api_client(servers: FakeServers, auth: TokenAuth) -> httpx.Client:
    return httpx.Client(auth=auth, transport=httpx.MockTransport(servers))


def test_invalid_token_renews_once_and_retries_once(clock: FrozenClock) -> None:
    servers = FakeServers(resource_script=[lambda _r: challenge("invalid_token")] * 5)
    token_source, client = source(servers, clock)
    with client, api_client(servers, TokenAuth(token_source)) as api:
        response = api.get(API)
    assert response.status_code == 401  # the second refusal is the caller's to see
    assert len(servers.resource_requests) == 2
    assert servers.grants() == ["client_credentials", "client_credentials"]
    first, second = (r.headers["authorization"] for r in servers.resource_requests)
    assert (first, second) == ("Bearer at-1", "Bearer at-2")


@pytest.mark.parametrize(
    "refusal",
    [
        lambda _r: httpx.Response(401),  # no error code: no credentials seen, renewal won't help
        lambda _r: challenge("invalid_request"),
        lambda _r: challenge("insufficient_scope"),
        lambda _r: challenge("use_dpop_nonce", "DPoP", **{"dpop-nonce": "n1"}),  # Bearer token
    ],
)
def test_other_refusals_are_not_retried(clock: FrozenClock, refusal: object) -> None:
    servers = FakeServers(resource_script=[refusal])  # type: ignore[list-item]
    token_source, client = source(servers, clock)
    with client, api_client(servers, TokenAuth(token_source)) as api:
        assert api.get(API).status_code == 401
    assert len(servers.resource_requests) == 1
    assert servers.grants() == ["client_credentials"]


def test_resource_nonce_challenge_gets_one_retry(clock: FrozenClock) -> None:
    servers = FakeServers(
        resource_script=[lambda _r: challenge("use_dpop_nonce", "DPoP", **{"dpop-nonce": "n-1"})]
    )
    token_source, client = source(servers, clock, dpop=DpopKey(clock=clock))
    with client, api_client(servers, TokenAuth(token_source)) as api:
        assert api.post(API, content=b"payload").status_code == 200
    first, second = servers.resource_requests
    assert "nonce" not in proof_claims(first)
    assert proof_claims(second)["nonce"] == "n-1"
    assert proof_claims(second)["ath"] == access_token_hash("at-1")
    assert second.content == b"payload"  # the body went again
    assert second.headers["authorization"] == "DPoP at-1"


def test_a_nonce_is_asked_for_once_only(clock: FrozenClock) -> None:
    def nonce_challenge(_r: httpx.Request, i: int) -> httpx.Response:
        return challenge("use_dpop_nonce", "DPoP", **{"dpop-nonce": f"n-{i}"})

    servers = FakeServers(resource_script=[partial(nonce_challenge, i=i) for i in range(5)])
    token_source, client = source(servers, clock, dpop=DpopKey(clock=clock))
    with client, api_client(servers, TokenAuth(token_source)) as api:
        assert api.get(API).status_code == 401
    assert len(servers.resource_requests) == 2


def test_nonce_then_invalid_token_is_three_tries_at_most(clock: FrozenClock) -> None:
    servers = FakeServers(
        resource_script=[
            lambda _r: challenge("use_dpop_nonce", "DPoP", **{"dpop-nonce": "n-1"}),
            lambda _r: challenge("invalid_token", "DPoP"),
            lambda _r: challenge("invalid_token", "DPoP"),
        ]
    )
    token_source, client = source(servers, clock, dpop=DpopKey(clock=clock))
    with client, api_client(servers, TokenAuth(token_source)) as api:
        assert api.get(API).status_code == 401
    assert len(servers.resource_requests) == 3
    assert proof_claims(servers.resource_requests[2])["nonce"] == "n-1"  # remembered


def test_the_token_endpoint_nonce_is_retried_once(clock: FrozenClock) -> None:
    def wants_nonce(_request: httpx.Request) -> httpx.Response:
        body = {"error": "use_dpop_nonce"}
        return httpx.Response(400, json=body, headers={"dpop-nonce": "again"})

    servers = FakeServers(token_script=[wants_nonce] * 3)
    token_source, client = source(servers, clock, dpop=DpopKey(clock=clock))
    with client, pytest.raises(OAuthResponseError) as caught:
        token_source.fetch()
    assert caught.value.error == "use_dpop_nonce"
    assert len(servers.token_forms) == 2


@pytest.mark.parametrize(("remaining", "renewed"), [(29.0, True), (31.0, False)])
def test_renewal_ahead_of_expiry(clock: FrozenClock, remaining: float, renewed: bool) -> None:
    servers = FakeServers(lifetime=300)
    token_source, client = source(servers, clock)
    with client, api_client(servers, TokenAuth(token_source, skew=30.0)) as api:
        api.get(API)
        clock.advance(300 - remaining)
        api.get(API)
    assert len(servers.token_forms) == (2 if renewed else 1)


def test_a_passing_renewal_failure_keeps_a_live_token(clock: FrozenClock) -> None:
    servers = FakeServers(lifetime=300)
    token_source, client = source(servers, clock)
    with client, api_client(servers, TokenAuth(token_source)) as api:
        api.get(API)
        servers.token_script = [lambda _r: httpx.Response(503, json={"error": "unavailable"})] * 2
        clock.advance(290)  # inside the skew, not yet expired
        assert api.get(API).status_code == 200
        clock.advance(20)  # expired now: nothing to fall back on
        with pytest.raises(OAuthResponseError) as caught:
            api.get(API)
    assert caught.value.status_code == 503


def test_plain_http_only_on_this_machine(clock: FrozenClock) -> None:
    servers = FakeServers()
    token_source, client = source(servers, clock)
    with client:
        with api_client(servers, TokenAuth(token_source)) as api:
            with pytest.raises(InsecureTransportError):
                api.get("http://api.example/data")
            assert api.get("http://127.0.0.1:9/data").status_code == 200
        with api_client(servers, TokenAuth(token_source, allow_insecure_http=True)) as api:
            assert api.get("http://api.example/data").status_code == 200
    assert [r.url.host for r in servers.resource_requests] == ["127.0.0.1", "api.example"]


def test_interactive_source_without_tokens_asks_for_login(clock: FrozenClock) -> None:
    login = DeviceCodeLogin(ISSUER, "cli", clock=clock)
    with api_client(FakeServers(), TokenAuth(login)) as api, pytest.raises(LoginRequired):
        api.get(API)


def test_a_server_that_does_not_rotate_leaves_the_refresh_token(clock: FrozenClock) -> None:
    servers = FakeServers(rotate=False)
    token_source, client = source(servers, clock)
    start = TokenSet("at-0", "Bearer", clock() + 300, refresh_token="rt-0")
    with client:
        renewed = token_source.refresh(start)
    assert renewed.refresh_token == "rt-0"
    assert renewed.access_token == "at-1"


def test_two_processes_share_rotation_through_the_store(clock: FrozenClock) -> None:
    """Process B holds the set A has since renewed: B must take A's successor from the store,
    never present the spent refresh token."""
    servers = FakeServers()
    store = MemoryStore()
    token_source, client = source(servers, clock)
    start = TokenSet("at-0", "Bearer", clock() + 300, refresh_token="rt-0")
    with client:
        process_a = TokenAuth(token_source, store=store, tokens=start)
        process_b = TokenAuth(token_source, store=store)
        assert process_b.token().refresh_token == "rt-0"  # B has read the set
        clock.advance(290)
        assert process_a.token().refresh_token == "rt-1"  # A renewed
        assert process_b.token().refresh_token == "rt-1"  # B adopted A's without renewing
        clock.advance(290)
        assert process_b.token().refresh_token == "rt-2"
    sent = [form.get("refresh_token") for form in servers.token_forms]
    assert sent == ["rt-0", "rt-1"]


def test_refused_grant_drops_tokens_but_never_newer_ones(clock: FrozenClock) -> None:
    servers = FakeServers(
        token_script=[lambda _r: httpx.Response(400, json={"error": "invalid_grant"})]
    )
    store = MemoryStore()
    token_source, client = source(servers, clock)
    old = TokenSet("at-0", "Bearer", clock() - 1, refresh_token="rt-0")
    with client:
        auth = TokenAuth(token_source, store=store, tokens=old)
        with pytest.raises(LoginRequired):
            auth.token()
        assert store.load(token_source.store_key) is None
        # Had another process stored newer tokens meanwhile, they would stay.
        newer = replace(old, refresh_token="rt-9", access_token="at-9")
        store.save(token_source.store_key, newer)
        auth._forget(old)  # what a refusal of the old set does
        assert store.load(token_source.store_key) == newer


@pytest.mark.anyio
async def test_async_retry_rules_match(clock: FrozenClock) -> None:
    servers = FakeServers(resource_script=[lambda _r: challenge("invalid_token")])
    client = httpx.AsyncClient(transport=httpx.MockTransport(servers))
    from tokenward.client import ClientCredentials

    token_source = ClientCredentials(
        ISSUER, "svc", "s3cret-value", http=Http(async_client=client), clock=clock
    )
    async with (
        client,
        httpx.AsyncClient(
            auth=TokenAuth(token_source), transport=httpx.MockTransport(servers)
        ) as api,
    ):
        assert (await api.get(API)).status_code == 200
    assert len(servers.resource_requests) == 2
    assert servers.grants() == ["client_credentials", "client_credentials"]


def test_a_step_up_challenge_raises_step_up_required(clock: FrozenClock) -> None:
    """RFC 9470: no renewal (a refresh keeps the old sign-in), the acr_values and max_age the
    API asked for handed to the caller, for AuthorizationCodePKCE.login(...)."""
    header = (
        'Bearer error="insufficient_user_authentication", '
        'error_description="a passkey is needed", '
        'acr_values="urn:tokenward:acr:phr", max_age="300"'
    )
    refusal = httpx.Response(401, headers={"www-authenticate": header})
    servers = FakeServers(resource_script=[lambda _r: refusal] * 3)
    token_source, client = source(servers, clock)
    with (
        client,
        api_client(servers, TokenAuth(token_source)) as api,
        pytest.raises(StepUpRequired) as raised,
    ):
        api.get(API)
    assert (raised.value.acr_values, raised.value.max_age) == ("urn:tokenward:acr:phr", 300)
    assert raised.value.description == "a passkey is needed"
    assert len(servers.resource_requests) == 1
    assert servers.grants() == ["client_credentials"]
