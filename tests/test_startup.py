"""Startup failures of the real `tokenward` process: one line on stderr naming the setting and the
fix, exit status 2, no traceback, no secret."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.e2e.live import free_port, stop_process
from tests.store.conftest import PG_URL, require_postgres
from tokenward.config import ENV_FILE
from tokenward.store.sql import create_engine
from tokenward.tokens.sealing import generate_master_key

TOKENWARD = str(Path(sys.executable).parent / "tokenward")


def tokenward(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    return subprocess.run(
        [TOKENWARD, *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line_failure(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The process failed with exit 2 and exactly one line on stderr holding every needle."""
    stderr = result.stderr.strip()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert stderr.count("\n") == 0, stderr
    assert stderr.startswith("error: "), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in stderr, (needle, stderr)
    return stderr


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    result = tokenward("--data-dir", str(tmp_path), "init")
    assert result.returncode == 0, result.stderr
    return tmp_path


def test_serving_on_all_interfaces_without_an_issuer_says_to_set_one(data_dir: Path) -> None:
    result = tokenward("--data-dir", str(data_dir), "serve", "--host", "0.0.0.0", "--port", "1")  # noqa: S104
    one_line_failure(result, "TOKENWARD_ISSUER", "https://")


def test_a_non_https_issuer_names_the_setting(data_dir: Path) -> None:
    env = {"TOKENWARD_ISSUER": "http://auth.example.com"}
    result = tokenward("--data-dir", str(data_dir), "serve", env=env)
    one_line_failure(result, "TOKENWARD_ISSUER", "https")


def test_a_malformed_setting_names_it_and_not_its_value(data_dir: Path) -> None:
    env = {"TOKENWARD_ACCESS_TOKEN_LIFETIME": "fifteen-minutes"}
    line = one_line_failure(
        tokenward("--data-dir", str(data_dir), "keys", "list", env=env),
        "TOKENWARD_ACCESS_TOKEN_LIFETIME",
    )
    assert "fifteen-minutes" not in line


def test_a_missing_master_key(tmp_path: Path) -> None:
    result = tokenward("--data-dir", str(tmp_path), "keys", "list")
    one_line_failure(result, "no master key", "TOKENWARD_MASTER_KEY", "tokenward init")


def test_a_malformed_master_key_is_not_echoed(data_dir: Path) -> None:
    key = secrets.token_urlsafe(20)
    result = tokenward(
        "--data-dir", str(data_dir), "keys", "list", env={"TOKENWARD_MASTER_KEY": key}
    )
    line = one_line_failure(result, "TOKENWARD_MASTER_KEY", "43 characters", "tokenward init")
    assert key not in line


def test_a_wrong_master_key(data_dir: Path) -> None:
    env = {"TOKENWARD_MASTER_KEY": "A" * 43}
    one_line_failure(tokenward("--data-dir", str(data_dir), "serve", env=env), "wrong master key")


def test_an_unusable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = tokenward("--data-dir", str(blocker / "data"), "init")
    one_line_failure(result, "data directory", "--data-dir")


def test_a_busy_port(data_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = tokenward("--data-dir", str(data_dir), "serve", "--port", str(port))
    one_line_failure(result, f"127.0.0.1:{port}", "--port")


def test_an_unreachable_database_hides_its_password(data_dir: Path) -> None:
    url = f"postgresql+asyncpg://tokenward:s3cret-pw@127.0.0.1:{free_port()}/tokenward"
    result = tokenward("--data-dir", str(data_dir), "serve", env={"TOKENWARD_DATABASE_URL": url})
    line = one_line_failure(result, "TOKENWARD_DATABASE_URL", "127.0.0.1")
    assert "s3cret-pw" not in line


def test_an_unreachable_redis(data_dir: Path) -> None:
    url = f"redis://:r3dis-pw@127.0.0.1:{free_port()}/0"
    result = tokenward("--data-dir", str(data_dir), "serve", env={"TOKENWARD_REDIS_URL": url})
    line = one_line_failure(result, "TOKENWARD_REDIS_URL")
    assert "r3dis-pw" not in line


async def _drop_schema(name: str) -> None:
    engine = create_engine(PG_URL)
    async with engine.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    await engine.dispose()


@pytest.fixture
def missing_schema() -> Iterator[str]:
    require_postgres()
    name = "tw_" + secrets.token_hex(6)
    try:
        yield name
    finally:
        asyncio.run(_drop_schema(name))


def test_a_missing_schema_says_how_to_create_it_and_init_does(
    tmp_path: Path, missing_schema: str
) -> None:
    env = {
        "TOKENWARD_DATABASE_URL": PG_URL,
        "TOKENWARD_DATABASE_SCHEMA": missing_schema,
        "TOKENWARD_MASTER_KEY": generate_master_key(),
    }
    result = tokenward("--data-dir", str(tmp_path), "serve", env=env)
    one_line_failure(result, "TOKENWARD_DATABASE_SCHEMA", missing_schema, "tokenward init")
    created = tokenward("--data-dir", str(tmp_path), "init", env=env)
    assert created.returncode == 0, created.stderr
    listed = tokenward("--data-dir", str(tmp_path), "keys", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 4


def test_serve_takes_the_issuer_from_the_env_file(data_dir: Path) -> None:
    (data_dir / ENV_FILE).write_text("TOKENWARD_ISSUER=https://auth.example.com\n")
    port = free_port()
    with subprocess.Popen(
        [TOKENWARD, "--data-dir", str(data_dir), "serve", "--port", str(port)],
        env={k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as process:
        try:
            metadata = _poll_json(f"http://127.0.0.1:{port}/.well-known/openid-configuration")
        finally:
            stop_process(process)
    assert metadata["issuer"] == "https://auth.example.com"


def _poll_json(url: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=1)
            if response.status_code == 200:
                document: dict[str, object] = response.json()
                return document
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer 200 in time")
