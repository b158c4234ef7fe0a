"""The servers P4/P5 compare, each started as its users start it.

- tokenward: `tokenward init`, `tokenward client create`, `tokenward serve` on a fresh data dir
  (the default SQLite database in it), or with TOKENWARD_DATABASE_URL on a fresh PostgreSQL
  database (and Redis when it runs several workers);
- oidc-provider: the pinned version under bench/oidc-provider (`npm ci` there), one process or
  a node:cluster of workers, configured for the same tokens (bench/oidc-provider/provider.mjs);
- floor: bench/floor_app.py, a bare ASGI callable on uvicorn that only signs the token: the
  least any CPython server on tokenward's stack spends on a client_credentials request.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parents[1]
PEER_DIR = ROOT / "bench" / "oidc-provider"
SECRET = "bench-secret-" + "x" * 40
RESOURCE = "https://api.bench"
REDIRECT_URI = "http://127.0.0.1/cb"
CODE_VERIFIER = "v" * 43
# The console script a user runs, from the interpreter running the bench.
TOKENWARD = str(Path(sys.executable).with_name("tokenward"))
PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/"
REDIS = "redis://127.0.0.1:6379/0"


class PeerMissing(RuntimeError):
    """oidc-provider cannot run here (no Node, or `npm ci` failed): the message says why."""


@dataclass
class Contender:
    name: str
    base: str
    token_path: str
    introspect_path: str
    pids: list[int]
    # Form fields each endpoint needs beside the grant (oidc-provider: which resource).
    jwt_extra: str = ""
    opaque_extra: str = ""
    opaque_client: str = "bench"
    env: dict[str, str] = field(default_factory=dict)
    mint: object = None  # (kind, count, file) -> None

    def authorization(self, client_id: str = "bench") -> str:
        return "Basic " + base64.b64encode(f"{client_id}:{SECRET}".encode()).decode()

    def token(self, body: dict[str, str], client_id: str = "bench") -> dict[str, object]:
        response = httpx.post(
            self.base + self.token_path,
            data=body,
            headers={"authorization": self.authorization(client_id)},
        )
        response.raise_for_status()
        answer: dict[str, object] = response.json()
        return answer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_http(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
        except httpx.HTTPError:
            time.sleep(0.1)
        else:
            return
    raise RuntimeError(f"{url} did not answer in {seconds} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tokenward(env: dict[str, str], *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [TOKENWARD, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if done.returncode:
        raise RuntimeError(f"tokenward {' '.join(args)}: {done.stderr}")
    return done.stdout


@contextmanager
def tokenward(*, postgres: bool = False, workers: int = 1) -> Iterator[Contender]:
    """`tokenward serve` on a fresh data dir (SQLite), or on a fresh PostgreSQL database."""
    with tempfile.TemporaryDirectory(prefix="tw-bench-") as data_dir:
        port = _free_port()
        env = {**os.environ, "TOKENWARD_DATA_DIR": data_dir}
        env.pop("TOKENWARD_DATABASE_URL", None)
        env.pop("TOKENWARD_REDIS_URL", None)
        database = f"bench_{secrets.token_hex(6)}" if postgres else None
        if database is not None:
            _psql(f"CREATE DATABASE {database}")
            env["TOKENWARD_DATABASE_URL"] = PG + database
            if workers > 1:
                env["TOKENWARD_REDIS_URL"] = REDIS
                env["TOKENWARD_REDIS_NAMESPACE"] = database
        try:
            _tokenward(env, "init")
            _tokenward(
                env,
                *("client", "create", "--client-id", "bench", "--secret", SECRET),
                *("--grant-type", "client_credentials", "--grant-type", "refresh_token"),
                *("--grant-type", "authorization_code", "--redirect-uri", REDIRECT_URI),
                *("--scope", "openid offline_access read write", "--skip-consent"),
                # As the peer is configured: ES256 ID tokens (the server's default is RS256).
                *("--id-token-alg", "ES256"),
            )
            _tokenward(
                env,
                *("client", "create", "--client-id", "bench-opaque", "--secret", SECRET),
                *("--grant-type", "client_credentials", "--scope", "read write"),
                *("--token-format", "opaque"),
            )
            _tokenward(env, "user", "create", "--username", "bench", stdin="bench-password-1\n")
            args = ["serve", "--port", str(port)]
            if workers > 1:
                args += ["--workers", str(workers)]
            process = subprocess.Popen(
                [TOKENWARD, *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(Path(data_dir) / "serve.log").open("wb"),
                cwd=ROOT,
            )
            base = f"http://127.0.0.1:{port}"
            try:
                _wait_http(base + "/healthz", process)
                name = ("tokenward-pg" if postgres else "tokenward") + (
                    f"×{workers}" if workers > 1 else ""
                )
                yield Contender(
                    name,
                    base,
                    "/token",
                    "/introspect",
                    [process.pid],
                    opaque_client="bench-opaque",
                    env=env,
                    mint=lambda kind, count, file: _mint_tokenward(env, kind, count, file),
                )
            finally:
                _stop(process)
        finally:
            if database is not None:
                _psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def _mint_tokenward(env: dict[str, str], kind: str, count: int, file: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "bench.mint", kind, str(count), str(file)],
        env=env,
        check=True,
        cwd=ROOT,
    )


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", sql],
        check=True,
        capture_output=True,
    )


@contextmanager
def floor() -> Iterator[Contender]:
    """bench/floor_app.py under uvicorn (httptools, uvloop), as `tokenward serve` runs it."""
    port = _free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "bench.floor_app:app"),
            *("--loop", "uvloop", "--http", "httptools", "--no-access-log"),
            *("--log-level", "warning", "--host", "127.0.0.1", "--port", str(port)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base + "/", process)
        yield Contender(
            "floor", base, "/token", "/introspect", [process.pid], opaque_client="bench-opaque"
        )
    finally:
        _stop(process)


def peer_ready() -> None:
    """Install the pinned oidc-provider once (`npm ci`), or raise PeerMissing saying why."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise PeerMissing("Node.js (node, npm) is not installed: oidc-provider cannot run")
    if (PEER_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"],
        cwd=PEER_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise PeerMissing(f"npm ci in {PEER_DIR} failed: {done.stderr.strip()[-400:]}")


def _answer(stdout: IO[str], *starts: str) -> str:
    """The next line that is an answer: oidc-provider prints its notices on stdout too."""
    for line in stdout:
        if line.startswith(starts):
            return line.strip()
    raise RuntimeError("oidc-provider exited")


@contextmanager
def oidc_provider(workers: int = 1) -> Iterator[Contender]:
    peer_ready()
    port = _free_port()
    process = subprocess.Popen(
        ["node", "provider.mjs", str(port), str(workers)],
        cwd=PEER_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdin is not None
    stdin, stdout = process.stdin, process.stdout
    info = json.loads(_answer(stdout, "{"))

    def mint(kind: str, count: int, file: Path) -> None:
        stdin.write(f"{kind} {count} {file}\n")
        stdin.flush()
        answer = _answer(stdout, "ok", "error")
        if answer != "ok":
            raise RuntimeError(f"oidc-provider could not mint {kind}: {answer}")

    try:
        yield Contender(
            "oidc-provider" + (f"×{workers}" if workers > 1 else ""),
            f"http://127.0.0.1:{port}",
            "/token",
            "/token/introspection",
            [process.pid],
            jwt_extra="&resource=" + RESOURCE,
            opaque_extra="&resource=" + info["opaque_resource"],
            mint=mint,
        )
    finally:
        stdin.close()
        _stop(process)  # type: ignore[arg-type]
        stdout.close()
