"""`tokenward login`, `token show` and `call` against the real server, the user approving on
the device pages while the command polls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.client.conftest import AuthServer, DeviceUser
from tokenward import client_cli
from tokenward.client import DeviceAuthorization, FileStore
from tokenward.deploy.cli import app

runner = CliRunner()


@pytest.fixture
def store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auth_server: AuthServer) -> Path:
    path = tmp_path / "tokens.json"
    monkeypatch.setenv(client_cli.STORE_ENV, str(path))
    monkeypatch.setenv(client_cli.PASSPHRASE_ENV, "cli test passphrase")
    monkeypatch.setattr(client_cli, "clock", auth_server.clock)
    return path


@pytest.fixture
def user(auth_server: AuthServer, monkeypatch: pytest.MonkeyPatch) -> DeviceUser:
    """Reads the code the command prints, approves during the second pause."""
    person = DeviceUser(auth_server)
    shown = client_cli.show_code

    def show_and_read(authorization: DeviceAuthorization) -> None:
        shown(authorization)
        person.prompt(authorization)

    monkeypatch.setattr(client_cli, "show_code", show_and_read)
    monkeypatch.setattr(client_cli, "sleep", person.sleep)
    return person


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def login(auth_server: AuthServer, *extra: str) -> dict[str, object]:
    code, out, err = invoke(
        "login", "--issuer", auth_server.issuer, "--client-id", "cli", "--scope", "read", *extra
    )
    assert code == 0, err
    assert "enter the code" in err
    return dict(json.loads(out))


def test_login_show_and_call(auth_server: AuthServer, store_path: Path, user: DeviceUser) -> None:
    summary = login(auth_server)
    assert user.authorization is not None
    assert summary["signed_in"] is True
    assert summary["token_type"] == "Bearer"
    assert store_path.stat().st_mode & 0o777 == 0o600
    tokens = FileStore(store_path, passphrase="cli test passphrase").load("default")
    assert tokens is not None

    code, out, _ = invoke("token", "show")
    assert code == 0
    shown = json.loads(out)
    assert shown["claims"]["client_id"] == "cli"
    assert shown["claims"]["scope"] == "read"
    assert shown["expired"] is False
    assert tokens.access_token not in out
    assert str(tokens.refresh_token) not in out
    code, out, _ = invoke("token", "show", "--raw")
    assert json.loads(out)["access_token"] == tokens.access_token

    code, out, err = invoke("call", f"{auth_server.base}/api/hello")
    assert code == 0, err
    assert json.loads(out)["client_id"] == "cli"
    assert "HTTP 200" in err

    auth_server.clock.advance(900)  # expired: the call refreshes and stores the successor
    code, out, err = invoke("call", f"{auth_server.base}/api/hello", "-X", "GET")
    assert code == 0, err
    renewed = FileStore(store_path, passphrase="cli test passphrase").load("default")
    assert renewed is not None
    assert renewed.refresh_token != tokens.refresh_token

    assert renewed.refresh_token is not None
    auth_server.revoke(renewed.refresh_token)
    auth_server.clock.advance(900)
    code, out, err = invoke("call", f"{auth_server.base}/api/hello")
    assert code == 1
    assert "login required" in err
    assert "tokenward login" in err
    assert renewed.refresh_token not in err + out


def test_login_with_dpop(auth_server: AuthServer, store_path: Path, user: DeviceUser) -> None:
    summary = login(auth_server, "--dpop", "--profile", "bound")
    assert summary["token_type"] == "DPoP"
    code, out, _ = invoke("token", "show", "--profile", "bound")
    shown = json.loads(out)
    assert shown["claims"]["cnf"] == {"jkt": shown["dpop_jkt"]}
    auth_server.clock.advance(900)
    code, out, err = invoke("call", f"{auth_server.base}/api/hello", "--profile", "bound")
    assert code == 0, err  # renewed with the stored key, then called with a proof
    assert json.loads(out)["client_id"] == "cli"
    stored = FileStore(store_path, passphrase="cli test passphrase").load("bound")
    assert stored is not None
    assert stored.dpop_key is not None
    assert stored.dpop_key.thumbprint == shown["dpop_jkt"]


def test_commands_without_a_login(store_path: Path) -> None:
    code, _, err = invoke("token", "show")
    assert code == 1
    assert "not signed in" in err
    code, _, err = invoke("call", "http://127.0.0.1:9/x", "-H", "Authorization: Bearer x")
    assert code == 1


def test_a_store_without_a_key_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(client_cli.STORE_ENV, str(tmp_path / "t.json"))
    monkeypatch.delenv(client_cli.PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr(client_cli, "keyring_module", lambda: None)
    code, _, err = invoke("token", "show")
    assert code == 1
    assert client_cli.PASSPHRASE_ENV in err
