"""Every public call of the SDK raises only ClientError subclasses: a dead server, a server
answering HTML or nonsense, a timeout, a broken token file. The CLI prints one line for each."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tokenward import client_cli
from tokenward.client import (
    AuthorizationCodePKCE,
    AuthorizationError,
    ClientCredentials,
    ClientError,
    DeviceCodeLogin,
    DiscoveryError,
    FileStore,
    Http,
    OAuthResponseError,
    RefreshToken,
    ServerUnreachable,
    StoreError,
    TokenAuth,
    TokenSet,
)
from tokenward.deploy.cli import app

pytestmark = pytest.mark.anyio
SECRET = "client-secret-Ab12"
Handler = Callable[[httpx.Request], httpx.Response]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts connections, never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def raising(error: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


ISSUER = "https://as.example"
METADATA = {
    "issuer": ISSUER,
    "token_endpoint": ISSUER + "/token",
    "device_authorization_endpoint": ISSUER + "/device_authorization",
    "authorization_endpoint": ISSUER + "/authorize",
}


def metadata_then(answer: Handler) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/.well-known/"):
            return httpx.Response(200, json=METADATA)
        return answer(request)

    return handler


def html(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text="<html><body>Welcome to nginx!</body></html>")


HANDLERS: dict[str, tuple[Handler, type[ClientError]]] = {
    "connect_error": (raising(httpx.ConnectError("refused")), ServerUnreachable),
    "read_timeout": (raising(httpx.ReadTimeout("slow")), ServerUnreachable),
    "protocol_error": (raising(httpx.RemoteProtocolError("eof")), ServerUnreachable),
    "html_discovery": (html, DiscoveryError),
    "json_list_discovery": (lambda r: httpx.Response(200, json=[1, 2]), DiscoveryError),
    "token_endpoint_down": (
        metadata_then(raising(httpx.ConnectError("refused"))),
        ServerUnreachable,
    ),
    "html_token_endpoint": (metadata_then(html), OAuthResponseError),
    "html_error_page": (
        metadata_then(lambda r: httpx.Response(502, text="<h1>Bad Gateway</h1>")),
        OAuthResponseError,
    ),
    "json_nonsense": (metadata_then(lambda r: httpx.Response(200, json="ok")), OAuthResponseError),
}


def http_for(handler: Handler) -> Http:
    return Http(
        httpx.Client(transport=httpx.MockTransport(handler)),
        httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        sleep=lambda _s: None,
    )


CALLS: dict[str, Callable[[Http], object]] = {
    "client_credentials": lambda http: ClientCredentials(ISSUER, "svc", SECRET, http=http).fetch(),
    "refresh_token": lambda http: RefreshToken(ISSUER, "app", "rt-Zx9", http=http).fetch(),
    "device_login": lambda http: DeviceCodeLogin(
        ISSUER, "tv", prompt=lambda _a: None, http=http
    ).login(),
    "loopback_login": lambda http: AuthorizationCodePKCE(
        ISSUER, "desk", open_browser=lambda _u: None, timeout=0.05, http=http
    ).login(),
    "token_auth": lambda http: TokenAuth(
        ClientCredentials(ISSUER, "svc", SECRET, http=http)
    ).token(),
}


# Past discovery, a loopback sign-in waits for the browser: here it times out before any token
# request is made.
PAST_DISCOVERY = {"token_endpoint_down", "html_token_endpoint", "html_error_page", "json_nonsense"}


@pytest.mark.parametrize("failure", sorted(HANDLERS))
@pytest.mark.parametrize("call", sorted(CALLS))
def test_sync_calls_raise_client_errors(call: str, failure: str) -> None:
    handler, expected = HANDLERS[failure]
    if call == "loopback_login" and failure in PAST_DISCOVERY:
        expected = AuthorizationError
    with pytest.raises(expected) as caught:
        CALLS[call](http_for(handler))
    assert SECRET not in str(caught.value)
    if isinstance(caught.value, ServerUnreachable):
        assert isinstance(caught.value.__cause__, httpx.HTTPError)
        assert str(caught.value).startswith("cannot reach https://as.example:")


@pytest.mark.parametrize("failure", sorted(HANDLERS))
async def test_async_calls_raise_client_errors(failure: str) -> None:
    handler, expected = HANDLERS[failure]
    source = ClientCredentials(ISSUER, "svc", SECRET, http=http_for(handler))
    with pytest.raises(expected):
        await source.afetch()
    with pytest.raises(expected):
        await TokenAuth(source).atoken()
    with pytest.raises(expected):
        await DeviceCodeLogin(ISSUER, "tv", http=http_for(handler), prompt=print).alogin()


def test_a_closed_port_is_unreachable_with_its_cause() -> None:
    issuer = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(ServerUnreachable, match="connection failed") as caught:
        ClientCredentials(issuer, "svc", SECRET).fetch()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert caught.value.origin == issuer


def test_a_stalled_server_times_out(silent_port: int) -> None:
    http = Http(httpx.Client(timeout=0.2))
    with pytest.raises(ServerUnreachable, match="timed out") as caught:
        ClientCredentials(f"http://127.0.0.1:{silent_port}", "svc", SECRET, http=http).fetch()
    assert isinstance(caught.value.__cause__, httpx.TimeoutException)


def test_loopback_port_in_use_is_a_client_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = int(taken.getsockname()[1])
        login = AuthorizationCodePKCE(ISSUER, "desk", port=port, http=http_for(metadata_then(html)))
        with pytest.raises(ClientError, match="cannot listen"):
            login.login()


def test_token_file_errors_are_store_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    store = FileStore(blocker / "tokens.json", passphrase="pw")
    tokens = TokenSet("at-value", "Bearer", None)
    with pytest.raises(StoreError) as caught:
        store.save("default", tokens)
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(StoreError):
        store.delete("default")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(StoreError):
        FileStore(tmp_path / "dir.json", passphrase="pw").load("default")


def test_cli_call_with_a_dead_server_prints_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(client_cli.STORE_ENV, str(tmp_path / "tokens.json"))
    monkeypatch.setenv(client_cli.PASSPHRASE_ENV, "pw")
    dead = f"http://127.0.0.1:{closed_port()}"
    stored = TokenSet(  # expired: the call renews it first, at the dead server
        "at-value", "Bearer", 0.0, refresh_token="rt-value", issuer=dead, client_id="cli"
    )
    FileStore(tmp_path / "tokens.json", passphrase="pw").save("default", stored)
    result = CliRunner().invoke(app, ["call", f"{dead}/api/hello"])
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot reach {dead}: connection failed\n"
    assert "Traceback" not in result.output
    assert "rt-value" not in result.output

    fresh = TokenSet("at-value", "Bearer", None, issuer=dead, client_id="cli")
    FileStore(tmp_path / "tokens.json", passphrase="pw").save("default", fresh)
    result = CliRunner().invoke(app, ["call", f"{dead}/api/hello"])  # the API itself is down
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot reach {dead}: connection failed\n"


def test_cli_login_with_a_dead_server_prints_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(client_cli.STORE_ENV, str(tmp_path / "tokens.json"))
    monkeypatch.setenv(client_cli.PASSPHRASE_ENV, "pw")
    dead = f"http://127.0.0.1:{closed_port()}"
    result = CliRunner().invoke(app, ["login", "--issuer", dead, "--client-id", "cli"])
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot reach {dead}: connection failed\n"
