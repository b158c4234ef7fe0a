"""No token or secret in any SDK object's repr or str, in any error the SDK raises (message,
args, traceback), or in any log line, through a whole life against the real server."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.client.conftest import AuthServer, DeviceUser
from tokenward.client import (
    AuthorizationCodePKCE,
    ClientCredentials,
    ClientError,
    DeviceCodeLogin,
    Discovery,
    DpopKey,
    FileStore,
    Http,
    MemoryStore,
    RefreshToken,
    TokenAuth,
)
from tokenward.client.keys import FileKey
from tokenward.client.loopback import LoopbackReceiver
from tokenward.client.nonces import NonceCache

PASSPHRASE = "the store passphrase"


class Secrets:
    def __init__(self) -> None:
        self.values: set[str] = {PASSPHRASE}

    def add(self, *values: str | None) -> None:
        self.values.update(v for v in values if v)

    def assert_absent(self, text: str, what: object) -> None:
        for value in self.values:
            assert value not in text, f"a secret shows in {what!r}"


def raised(action: Callable[[], object]) -> BaseException:
    try:
        action()
    except ClientError as exc:
        return exc
    raise AssertionError("no error was raised")


def error_texts(exc: BaseException) -> Iterator[str]:
    yield str(exc)
    yield repr(exc)
    yield repr(exc.args)
    yield "".join(traceback.format_exception(exc))
    if exc.__cause__ is not None:
        yield from error_texts(exc.__cause__)
    if exc.__context__ is not None and not exc.__suppress_context__:
        yield from error_texts(exc.__context__)


def test_nothing_secret_shows_anywhere(
    auth_server: AuthServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    as_client: httpx.Client,
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = Secrets()
    secrets.add(auth_server.service_secret)
    user = DeviceUser(auth_server)
    key = DpopKey(clock=auth_server.clock)
    store = FileStore(tmp_path / "tokens.json", passphrase=PASSPHRASE, scrypt_n=2**10)
    login = DeviceCodeLogin(
        auth_server.issuer,
        "cli",
        scope="read",
        dpop=key,
        prompt=user.prompt,
        http=Http(as_client, sleep=user.sleep),
        clock=auth_server.clock,
    )
    service = ClientCredentials(
        auth_server.issuer,
        "service",
        auth_server.service_secret,
        clock=auth_server.clock,
        http=Http(as_client),
    )
    authorization = login.start()
    login._prompt(authorization)
    secrets.add(authorization.device_code)
    tokens = login.poll(authorization)
    secrets.add(tokens.access_token, tokens.refresh_token, tokens.id_token)
    auth = TokenAuth(login, store=store, tokens=tokens)
    with httpx.Client(auth=auth, base_url=auth_server.base, timeout=10) as api:
        api.get("/api/hello")
        auth_server.clock.advance(900)
        api.get("/api/hello")
        renewed = auth.token()
        secrets.add(renewed.access_token, renewed.refresh_token)
        assert renewed.refresh_token is not None
        auth_server.revoke(renewed.refresh_token)
        auth_server.clock.advance(900)
        errors = [raised(lambda: api.get("/api/hello"))]  # LoginRequired

    wrong = ClientCredentials(
        auth_server.issuer,
        "service",
        "not-the-secret-" + "x" * 30,
        clock=auth_server.clock,
        http=Http(as_client),
    )
    secrets.add("not-the-secret-" + "x" * 30)
    stale = "twr_" + "stale-refresh"  # a variable: the traceback quotes this file's lines
    secrets.add(stale)
    errors += [
        raised(wrong.fetch),  # invalid_client
        raised(
            lambda: RefreshToken(auth_server.issuer, "cli", stale, http=Http(as_client)).fetch()
        ),
        raised(lambda: FileStore(tmp_path / "tokens.json", passphrase="wrong!").load("x")),
        raised(lambda: httpx.get("http://api.example/", auth=TokenAuth(service))),
        raised(lambda: Discovery("http://as.example")),
    ]
    (tmp_path / "tokens.json").chmod(0o644)
    errors.append(raised(lambda: store.load("x")))

    objects: list[object] = [
        tokens,
        renewed,
        login,
        service,
        wrong,
        auth,
        store,
        MemoryStore(),
        authorization,
        login.http,
        login.discovery,
        login.discovery.cached(),
        key,
        NonceCache(),
        FileKey(b"k" * 32, {"kdf": "scrypt"}),
        AuthorizationCodePKCE(auth_server.issuer, "desktop", "a-client-secret-" + "y" * 20),
    ]
    secrets.add("a-client-secret-" + "y" * 20)
    for thing in objects:
        secrets.assert_absent(repr(thing), type(thing).__name__)
        secrets.assert_absent(str(thing), type(thing).__name__)
    for error in errors:
        for text in error_texts(error):
            secrets.assert_absent(text, type(error).__name__)
    secrets.assert_absent(caplog.text, "the log")
    assert "tokens renewed" in caplog.text  # the SDK did log, just nothing secret


def test_the_loopback_listener_logs_no_request_line(caplog: pytest.LogCaptureFixture) -> None:
    receiver = LoopbackReceiver()
    try:
        httpx.get(f"{receiver.redirect_uri}?code=the-code&state=s", timeout=5)
        assert receiver.wait(5) == {"code": "the-code", "state": "s"}
    finally:
        receiver.close()
    assert "the-code" not in caplog.text
