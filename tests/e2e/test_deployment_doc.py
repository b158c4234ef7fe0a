"""docs/deployment.md is the truth: two nodes started exactly as its shell block says (the same
TOKENWARD_* variables and nothing else, the same commands; only addresses made local) accept each
other's tokens and refuse each other's revocations."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.e2e.cluster import TOKENWARD, wait_healthy
from tests.e2e.live import free_port, stop_processes
from tests.store.conftest import PG_URL, require_postgres
from tests.store.redis_server import need_shared_redis
from tokenward.store.sql import create_engine
from tokenward.tokens.sealing import generate_master_key

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"


def documented() -> tuple[list[str], list[list[str]]]:
    """The variables the block exports, and its tokenward commands."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S)
    [block] = [b for b in blocks if "tokenward serve" in b and "export " in b]
    names, commands = [], []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "export":
            names.append(words[1].split("=", 1)[0])
        else:
            assert words[0] == "tokenward", line
            commands.append(words)
    return names, commands


def table_settings() -> set[str]:
    section = DOC.read_text().split("Every node needs the same settings", 1)[1]
    return set(re.findall(r"^\| `(TOKENWARD_[A-Z_]+)` \|", section.split("\n\n", 2)[1], re.M))


def test_the_block_exports_every_setting_of_the_table() -> None:
    names, commands = documented()
    assert set(names) == table_settings()
    assert [command[:2] for command in commands] == [
        ["tokenward", "init"],
        ["tokenward", "serve"],
    ]


async def _drop(schema: str) -> None:
    engine = create_engine(PG_URL)
    async with engine.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await engine.dispose()


@pytest.fixture
def deployment_env() -> Iterator[dict[str, str]]:
    """The documented variables with this machine's values; the schema does not exist yet."""
    require_postgres()
    schema = "tw_" + secrets.token_hex(6)
    local = {
        "TOKENWARD_ISSUER": f"http://127.0.0.1:{free_port()}",  # the balancer's address
        "TOKENWARD_MASTER_KEY": generate_master_key(),
        "TOKENWARD_DATABASE_URL": PG_URL,
        "TOKENWARD_DATABASE_SCHEMA": schema,
        "TOKENWARD_REDIS_URL": need_shared_redis(),
        "TOKENWARD_TRUSTED_PROXIES": "127.0.0.0/8",  # the test's client plays the balancer
    }
    names, _ = documented()
    assert set(names) <= set(local), "a documented setting this test does not know"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    try:
        yield {**clean, **{name: local[name] for name in names}}
    finally:
        asyncio.run(_drop(schema))


def localised(command: list[str], port: int) -> list[str]:
    """The documented command with a local bind address and a free port, nothing else changed."""
    args = list(command)
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        if flag in args:
            args[args.index(flag) + 1] = value
    return [TOKENWARD, *args[1:]]


def test_two_nodes_started_as_documented_share_tokens_and_revocations(
    deployment_env: dict[str, str], tmp_path: Path
) -> None:
    _, commands = documented()
    init, serve = commands

    def run(*args: str) -> str:
        done = subprocess.run(
            [TOKENWARD, *args],
            env=deployment_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    run(*init[1:])  # creates the schema, the tables and the keys
    created = json.loads(
        run(
            "client",
            "create",
            "--client-id",
            "svc",
            "--grant-type",
            "client_credentials",
            "--scope",
            "read",
        )
    )
    service = ("svc", created["client_secret"])
    processes, nodes = [], []
    try:
        for _ in range(2):
            port = free_port()
            processes.append(
                subprocess.Popen(
                    localised(serve, port),
                    env=deployment_env,
                    cwd=tmp_path,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            nodes.append(f"http://127.0.0.1:{port}")
            wait_healthy(nodes[-1], processes[-1])
        a, b = nodes
        issuer = deployment_env["TOKENWARD_ISSUER"]
        for node in nodes:
            discovery = httpx.get(f"{node}/.well-known/openid-configuration").json()
            assert discovery["issuer"] == issuer
        token = httpx.post(
            f"{a}/token", data={"grant_type": "client_credentials"}, auth=service
        ).json()["access_token"]
        headers = {"authorization": f"Bearer {token}"}
        with httpx.Client() as http:
            assert http.get(f"{b}/api/hello", headers=headers).status_code == 200
            introspected = http.post(f"{b}/introspect", data={"token": token}, auth=service)
            assert introspected.json()["active"] is True
            http.post(f"{a}/revoke", data={"token": token}, auth=service)
            deadline = time.monotonic() + 5
            while http.get(f"{b}/api/hello", headers=headers).status_code == 200:
                assert time.monotonic() < deadline, "node B still accepts the token revoked at A"
                time.sleep(0.01)
    finally:
        stop_processes(processes)
