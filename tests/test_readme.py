"""The README's ten-line example runs as printed and answers as the README says."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cluster import TOKENWARD, wait_healthy
from tests.e2e.live import free_port, serve_in_thread, stop_process

README = Path(__file__).resolve().parents[1] / "README.md"
README_ISSUER = "https://auth.example.com"


def protect_an_api_example() -> str:
    blocks: list[str] = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    return next(block for block in blocks if "require_scopes" in block)


def run_example(issuer: str = README_ISSUER) -> dict[str, Any]:
    """The example exec'd as printed, its authorization server moved to `issuer`."""
    example = protect_an_api_example().replace(README_ISSUER, issuer)
    namespace: dict[str, Any] = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    return namespace


@pytest.mark.anyio
async def test_protect_an_api_example() -> None:
    assert len(protect_an_api_example().strip().splitlines()) <= 12
    namespace = run_example()
    transport = httpx.ASGITransport(app=namespace["app"])
    async with httpx.AsyncClient(transport=transport, base_url="https://api.example.com") as http:
        missing = await http.get("/orders")
        malformed = await http.get("/orders", headers={"authorization": "Bearer not-a-jwt"})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="tokenward"'
    assert malformed.status_code == 401
    assert 'error="invalid_token"' in malformed.headers["www-authenticate"]


@pytest.fixture
def authorization_server(tmp_path: Path) -> Iterator[tuple[str, Path, tuple[str, str]]]:
    """`tokenward serve` as a first-time user runs it: a process on its default SQLite data
    dir, with one client_credentials client for the example's API. (issuer, data dir, client)"""
    data_dir = tmp_path / "var"

    def cli(*args: str) -> str:
        command = [TOKENWARD, "--data-dir", str(data_dir), *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout

    cli("init")
    created = cli(
        "client", "create", "--client-id", "svc", "--grant-type", "client_credentials",
        "--scope", "orders:read", "--audience", "https://api.example.com",
    )  # fmt: skip
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [
                TOKENWARD,
                "--data-dir",
                str(data_dir),
                "serve",
                "--port",
                str(port),
                "--issuer",
                issuer,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_healthy(issuer, process)
            yield issuer, data_dir, ("svc", json.loads(created)["client_secret"])
        finally:
            stop_process(process)


def refused_within(api: httpx.Client, headers: dict[str, str], bound: float) -> float:
    """Seconds until the example's API refuses the token (401), polled; fails past `bound`."""
    started = time.monotonic()
    while (status := api.get("/orders", headers=headers).status_code) == 200:
        assert time.monotonic() - started < bound, "the example still accepts a revoked token"
        time.sleep(0.01)
    assert status == 401
    return time.monotonic() - started


def test_the_example_refuses_tokens_revoked_at_a_real_server(
    authorization_server: tuple[str, Path, tuple[str, str]],
) -> None:
    """The README example as a user runs it against `tokenward serve`: a client_credentials
    token works, and stops working once revoked, by /revoke and by `tokenward revoke`."""
    issuer, data_dir, client = authorization_server
    namespace = run_example(issuer)
    with serve_in_thread(namespace["app"], free_port()) as base, httpx.Client(base_url=base) as api:

        def token() -> str:
            response = httpx.post(
                f"{issuer}/token", data={"grant_type": "client_credentials"}, auth=client
            )
            return str(response.json()["access_token"])

        first = token()
        headers = {"authorization": f"Bearer {first}"}
        answer = api.get("/orders", headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"subject": "svc", "scopes": ["orders:read"]}

        httpx.post(f"{issuer}/revoke", data={"token": first}, auth=client).raise_for_status()
        by_endpoint = refused_within(api, headers, bound=2.0)

        second = token()
        headers = {"authorization": f"Bearer {second}"}
        assert api.get("/orders", headers=headers).status_code == 200
        subprocess.run(
            [TOKENWARD, "--data-dir", str(data_dir), "revoke", "--token", second],
            capture_output=True,
            check=True,
        )
        # The CLI writes the log directly; the server reads it back within its 2 s resync.
        by_cli = refused_within(api, headers, bound=3.0)
        print(f"revoked → refused by the example: /revoke {by_endpoint:.3f} s, CLI {by_cli:.3f} s")


def test_the_readme_admin_commands_run_as_written_on_a_fresh_data_dir(tmp_path: Path) -> None:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    [commands] = [block for block in blocks if "tokenward keys rotate" in block]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    done = subprocess.run(
        ["/bin/sh", "-e", "-c", commands],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"revoked"' in done.stdout
