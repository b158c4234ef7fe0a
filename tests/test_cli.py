"""The command line, against a real SQLite data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenward.cli import app

runner = CliRunner()


def run(data_dir: Path, *args: str, stdin: str | None = None) -> tuple[int, object]:
    result = runner.invoke(app, ["--data-dir", str(data_dir), *args], input=stdin)
    try:
        return result.exit_code, json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.exit_code, result.output


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    code, out = run(tmp_path, "init")
    assert code == 0, out
    return tmp_path


def test_init_creates_a_private_master_key_and_keys(data_dir: Path) -> None:
    key_file = data_dir / "master.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    code, keys = run(data_dir, "keys", "list")
    assert code == 0
    assert isinstance(keys, list)
    assert {key["alg"] for key in keys} == {"ES256", "RS256"}
    assert {key["state"] for key in keys} == {"active", "next"}


def test_client_user_and_revocation_commands(data_dir: Path) -> None:
    code, client = run(
        data_dir,
        "client",
        "create",
        "--client-id",
        "app",
        "--grant-type",
        "client_credentials",
        "--scope",
        "read",
    )
    assert code == 0
    assert isinstance(client, dict)
    assert len(client["client_secret"]) >= 43
    code, clients = run(data_dir, "client", "list")
    assert [c["client_id"] for c in clients] == ["app"]  # type: ignore[union-attr]
    assert "client_secret" not in clients[0]  # type: ignore[index]
    code, user = run(
        data_dir,
        "user",
        "create",
        "--username",
        "carol",
        "--password-stdin",
        stdin="long enough pw\n",
    )
    assert code == 0
    code, revoked = run(data_dir, "revoke", "--user", "carol")
    assert code == 0
    assert revoked["revoked"][0]["value"] == user["user_id"]  # type: ignore[index]
    code, changed = run(
        data_dir,
        "user",
        "set-password",
        "--username",
        "carol",
        "--password-stdin",
        stdin="another long pw\n",
    )
    assert code == 0
    assert "tokens_revoked_before" in changed  # type: ignore[operator]
    code, promoted = run(data_dir, "user", "admin", "--username", "carol")
    assert code == 0, promoted


def test_duplicate_client_is_a_clear_error(data_dir: Path) -> None:
    args = ("client", "create", "--client-id", "app", "--grant-type", "client_credentials")
    assert run(data_dir, *args)[0] == 0
    code, out = run(data_dir, *args)
    assert code == 1
    assert "exists already" in str(out)


def test_the_readme_rotation_works_on_a_fresh_install(data_dir: Path) -> None:
    code, rotated = run(data_dir, "keys", "rotate")
    assert code == 0, rotated
    assert {k["state"] for k in rotated} == {"retiring", "active", "next"}  # type: ignore[union-attr]


def test_a_second_rotation_needs_force_until_the_new_next_key_is_published(
    data_dir: Path,
) -> None:
    assert run(data_dir, "keys", "rotate")[0] == 0
    code, out = run(data_dir, "keys", "rotate")
    assert code == 1
    assert "--force" in str(out)
    code, rotated = run(data_dir, "keys", "rotate", "--force")
    assert code == 0
    assert {k["state"] for k in rotated} == {"retiring", "active", "next"}  # type: ignore[union-attr]
    _, keys = run(data_dir, "keys", "list")
    # The keys that signed live tokens still verify (retiring), so --force breaks none of them.
    assert sorted(k["state"] for k in keys if k["alg"] == "ES256") == [  # type: ignore[union-attr,index]
        "active",
        "next",
        "retiring",
        "retiring",
    ]


def test_wrong_master_key_fails_at_start_with_a_clear_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENWARD_MASTER_KEY", "A" * 43)
    code, out = run(data_dir, "keys", "list")
    assert code == 2  # tokenward cannot start as configured
    assert "wrong master key" in str(out)
    assert "Traceback" not in str(out)


def test_missing_master_key_is_a_clear_error(tmp_path: Path) -> None:
    code, out = run(tmp_path, "keys", "list")
    assert code == 2
    assert "no master key" in str(out)
