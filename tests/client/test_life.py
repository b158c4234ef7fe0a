"""The SDK's whole life against the real server over loopback: device login, calls, expiry,
refresh with rotation, a rejected token, revocation and the clean re-login error."""

from __future__ import annotations

import httpx
import pytest

from tests.client.conftest import DEVICE_GRANT, AuthServer, DeviceUser, Recorder
from tokenward.client import (
    ClientCredentials,
    DeviceCodeLogin,
    Http,
    LoginRequired,
    MemoryStore,
    RefreshToken,
    TokenAuth,
)

ACCESS_LIFETIME = 900.0


def device_source(
    server: AuthServer, user: DeviceUser, client: httpx.Client | None = None
) -> DeviceCodeLogin:
    return DeviceCodeLogin(
        server.issuer,
        "cli",
        scope="read",
        prompt=user.prompt,
        http=Http(client, sleep=user.sleep, async_sleep=user.asleep),
        clock=server.clock,
    )


def refresh_tokens_sent(recorder: Recorder) -> list[str]:
    return [
        e.refresh_token
        for e in recorder.exchanges
        if e.grant_type == "refresh_token" and e.refresh_token
    ]


def test_device_login_then_calls_refresh_rotation_and_revocation(
    auth_server: AuthServer, recorder: Recorder, as_client: httpx.Client
) -> None:
    user = DeviceUser(auth_server)
    source = device_source(auth_server, user, as_client)
    tokens = source.login()
    assert user.pauses == [5.0, 5.0]  # the server's interval, before every poll
    assert tokens.token_type == "Bearer"
    assert tokens.scope == "read"
    assert tokens.refresh_token
    first_refresh = tokens.refresh_token

    store = MemoryStore()
    auth = TokenAuth(source, store=store, tokens=tokens)
    with httpx.Client(auth=auth, base_url=auth_server.base, timeout=10) as api:
        hello = api.get("/api/hello")
        assert hello.status_code == 200, hello.text
        assert hello.json()["client_id"] == "cli"
        assert recorder.count("/token", "refresh_token") == 0

        auth_server.clock.advance(ACCESS_LIFETIME)  # expired, at the server too
        assert api.get("/api/hello").status_code == 200
        assert recorder.count("/token", "refresh_token") == 1
        rotated = store.load(source.store_key)
        assert rotated is not None
        assert rotated.refresh_token not in (None, first_refresh)

        auth_server.clock.advance(ACCESS_LIFETIME - 20)  # inside the 30 s skew: renewed ahead
        assert api.get("/api/hello").status_code == 200
        assert recorder.count("/token", "refresh_token") == 2
        sent = refresh_tokens_sent(recorder)
        assert len(set(sent)) == len(sent)  # no refresh token was ever presented twice

        newest = store.load(source.store_key)
        assert newest is not None
        assert newest.refresh_token is not None
        auth_server.revoke(newest.refresh_token)  # the user signs this device out
        auth_server.clock.advance(ACCESS_LIFETIME)
        with pytest.raises(LoginRequired) as caught:
            api.get("/api/hello")
    message = str(caught.value)
    assert (
        message
        == "login required: the refresh token was refused (revoked, expired or already used)"
    )
    assert caught.value.error == "invalid_grant"
    assert store.load(source.store_key) is None  # dead tokens are dropped
    assert recorder.count("/.well-known/openid-configuration") == 1  # discovery is cached


@pytest.mark.anyio
async def test_async_life_with_a_rejected_token(
    auth_server: AuthServer, recorder: Recorder
) -> None:
    user = DeviceUser(auth_server)
    async with recorder.async_client() as as_client:
        source = DeviceCodeLogin(
            auth_server.issuer,
            "cli",
            scope="read",
            prompt=user.prompt,
            http=Http(async_client=as_client, async_sleep=user.asleep),
            clock=auth_server.clock,
        )
        tokens = await source.alogin()
        auth = TokenAuth(source, tokens=tokens)
        api_recorder = Recorder()
        async with api_recorder.async_client(auth=auth, base_url=auth_server.base) as api:
            assert (await api.get("/api/hello")).status_code == 200
            auth_server.revoke(tokens.access_token)  # refused from now on: 401 invalid_token
            retried = await api.get("/api/hello")
            assert retried.status_code == 200
            assert recorder.count("/token", "refresh_token") == 1
            assert [e.status for e in api_recorder.exchanges] == [200, 401, 200]

            auth_server.clock.advance(ACCESS_LIFETIME)
            assert (await api.get("/api/hello")).status_code == 200
            assert recorder.count("/token", "refresh_token") == 2


def test_device_polling_follows_the_server(
    auth_server: AuthServer, recorder: Recorder, as_client: httpx.Client
) -> None:
    """Whatever the server answers each poll, the next pause is the interval, five seconds
    longer after each slow_down (RFC 8628 §3.5)."""
    user = DeviceUser(auth_server, approve_on=4, early_on=2)
    tokens = device_source(auth_server, user, as_client).login()
    assert tokens.access_token
    answers = [e.error for e in recorder.exchanges if e.grant_type == DEVICE_GRANT]
    assert answers[-1] is None
    assert len(answers) == len(user.pauses) == 4
    for pause, answer, following in zip(user.pauses, answers, user.pauses[1:], strict=False):
        assert answer in ("authorization_pending", "slow_down")
        assert following == pause + (5.0 if answer == "slow_down" else 0.0)


def test_device_login_declined(auth_server: AuthServer, as_client: httpx.Client) -> None:
    from tokenward.client import AuthorizationError

    user = DeviceUser(auth_server, approve_on=1, decision="deny")
    with pytest.raises(AuthorizationError) as caught:
        device_source(auth_server, user, as_client).login()
    assert caught.value.error == "access_denied"


def test_client_credentials_renews_with_a_new_grant(
    auth_server: AuthServer, recorder: Recorder, as_client: httpx.Client
) -> None:
    source = ClientCredentials(
        auth_server.issuer,
        "service",
        auth_server.service_secret,
        scope="read",
        http=Http(as_client),
        clock=auth_server.clock,
    )
    with httpx.Client(auth=TokenAuth(source), base_url=auth_server.base, timeout=10) as api:
        assert api.get("/api/hello").status_code == 200
        assert api.get("/api/hello").status_code == 200
        assert recorder.count("/token", "client_credentials") == 1
        auth_server.clock.advance(ACCESS_LIFETIME)
        assert api.get("/api/hello").status_code == 200
        assert recorder.count("/token", "client_credentials") == 2


def test_refresh_token_source_spends_its_token_once(
    auth_server: AuthServer, recorder: Recorder, as_client: httpx.Client
) -> None:
    user = DeviceUser(auth_server)
    login = device_source(auth_server, user, as_client).login()
    assert login.refresh_token is not None
    source = RefreshToken(
        auth_server.issuer,
        "cli",
        login.refresh_token,
        http=Http(as_client),
        clock=auth_server.clock,
    )
    store = MemoryStore()
    with httpx.Client(auth=TokenAuth(source, store=store), base_url=auth_server.base) as api:
        assert api.get("/api/hello").status_code == 200
    stored = store.load(source.store_key)
    assert stored is not None
    assert stored.refresh_token != login.refresh_token
    with pytest.raises(LoginRequired):
        source.fetch()  # the initial token is spent: only its stored successor may be used
    assert refresh_tokens_sent(recorder).count(login.refresh_token) == 1
