"""`tokenward serve` as a real process: a whole flow over HTTP, then nothing secret in anything
the process printed (access log, structlog, the monitor's audit lines, uvicorn's own).

Tokens travel in queries here on purpose (`?access_token=`, `id_token_hint=`, a code in a
callback), because that is how they reach access logs. The data directory it runs on is also
checked: 0700, and every file in it 0600.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.e2e.cluster import wait_healthy
from tests.e2e.live import free_port, stop_process
from tests.server.flows import Pkce, hidden_interaction, query_of

TOKENWARD = str(Path(sys.executable).parent / "tokenward")
CALLBACK = "https://app.example/callback"
PASSWORD = "a-long-password-never-logged"
STATE = "state-value-never-logged-4711"
NONCE = "nonce-value-never-logged-0815"


@dataclass
class Served:
    base: str
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    secrets: dict[str, str] = field(default_factory=dict)  # what must never be printed

    def cli(self, *args: str, stdin: str | None = None) -> dict[str, str]:
        result = subprocess.run(
            [TOKENWARD, "--data-dir", str(self.data_dir), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            check=True,
            timeout=120,
        )
        parsed: dict[str, str] = json.loads(result.stdout)
        return parsed

    def keep(self, name: str, value: object) -> str:
        assert isinstance(value, str), (name, value)
        assert len(value) >= 8, (name, value)
        self.secrets[name] = value
        return value

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")


def init_and_serve(
    data_dir: Path, port: int, env: dict[str, str], out: IO[bytes], err: IO[bytes] | int
) -> subprocess.Popen[bytes]:
    """`tokenward init`, then `tokenward serve` on that data dir, printing to `out`/`err`."""
    subprocess.run(
        [TOKENWARD, "--data-dir", str(data_dir), "init"], env=env, check=True, stdout=out
    )
    return subprocess.Popen(
        [TOKENWARD, "--data-dir", str(data_dir), "serve", "--port", str(port)],
        env=env,
        stdout=out,
        stderr=err,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve-logs")
    data_dir = tmp / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    env["TOKENWARD_REFRESH_REUSE_GRACE"] = "0"  # a replayed refresh token is an alert at once
    stdout, stderr = tmp / "stdout.log", tmp / "stderr.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = init_and_serve(data_dir, port, env, out, err)
    served = Served(f"http://127.0.0.1:{port}", data_dir, env, process, stdout, stderr)
    try:
        wait_healthy(served.base, process)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _setup(served: Served) -> tuple[str, str, str]:
    service = served.cli(
        "client", "create", "--client-id", "service", "--grant-type", "client_credentials",
        "--scope", "read",
    )  # fmt: skip
    web = served.cli(
        "client", "create", "--client-id", "web", "--grant-type", "authorization_code",
        "--grant-type", "refresh_token", "--redirect-uri", CALLBACK,
        "--scope", "openid profile read",
    )  # fmt: skip
    ops = served.cli(
        "client", "create", "--client-id", "ops", "--grant-type", "client_credentials",
        "--scope", "tokenward:admin",
    )  # fmt: skip
    served.cli("user", "create", "--username", "alice", stdin=PASSWORD + "\n")
    return (
        served.keep("service secret", service["client_secret"]),
        served.keep("web secret", web["client_secret"]),
        served.keep("ops secret", ops["client_secret"]),
    )


def _code_flow(served: Served, http: httpx.Client, web_secret: str) -> dict[str, str]:
    pkce = Pkce.new()
    served.keep("code_verifier", pkce.verifier)
    page = http.get(
        "/authorize",
        params={
            "response_type": "code",
            "client_id": "web",
            "redirect_uri": CALLBACK,
            "scope": "openid profile read",
            "state": STATE,
            "nonce": NONCE,
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
        },
    )
    assert page.status_code == 200, page.text[:300]
    served.keep("sign-in interaction", hidden_interaction(page.text))
    done = http.post(
        "/login",
        data={
            "interaction": hidden_interaction(page.text),
            "username": "alice",
            "password": PASSWORD,
        },
    )
    assert done.status_code == 200, done.text[:300]
    served.keep("consent interaction", hidden_interaction(done.text))
    done = http.post(
        "/consent", data={"interaction": hidden_interaction(done.text), "decision": "approve"}
    )
    assert done.status_code == 302, done.text[:300]
    redirect = query_of(done.headers["location"])
    assert redirect["state"] == STATE
    code = served.keep("code", redirect["code"])
    tokens = http.post(
        "/token",
        auth=("web", web_secret),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": pkce.verifier,
        },
    )
    assert tokens.status_code == 200, tokens.text
    body: dict[str, str] = tokens.json()
    for name in ("access_token", "refresh_token", "id_token"):
        served.keep(f"user {name}", body[name])
    return body


def _in_one_write(served: Served, requests: list[tuple[str, str, str]]) -> list[bytes]:
    """Each (path, Basic credentials, form body) sent as one write on one keep-alive
    connection, as wrk and most clients send a small POST: the express lane's case
    (serving/express.py). The answers, head and body."""
    port = int(served.base.rsplit(":", 1)[1])
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for path, credentials, body in requests:
            basic = base64.b64encode(credentials.encode()).decode()
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {basic}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
            )
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(65536)
            head = answer.split(b"\r\n\r\n", 1)[0]
            length = int(re.search(rb"content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
            while len(answer) < len(head) + 4 + length:
                answer += sock.recv(65536)
            answers.append(answer)
    return answers


def _whole_flow(served: Served) -> None:
    service_secret, web_secret, ops_secret = _setup(served)
    # Token and introspection requests that arrive whole, in the express lane.
    credentials = f"service:{service_secret}"
    issued_raw, _ = _in_one_write(
        served,
        [("/token", credentials, "grant_type=client_credentials"), ("/token", credentials, "")],
    )
    assert issued_raw.startswith(b"HTTP/1.1 200 OK\r\n"), issued_raw
    assert b"\r\ndate: " in issued_raw
    assert b"\r\ncache-control: no-store\r\n" in issued_raw
    lane_token = json.loads(issued_raw.split(b"\r\n\r\n", 1)[1])["access_token"]
    served.keep("express access_token", lane_token)
    (introspected_raw,) = _in_one_write(
        served, [("/introspect", credentials, f"token={lane_token}")]
    )
    assert json.loads(introspected_raw.split(b"\r\n\r\n", 1)[1])["active"] is True
    with httpx.Client(base_url=served.base, timeout=30) as http:
        # Client credentials; the token then sent where access logs see it: the query.
        issued = http.post(
            "/token", auth=("service", service_secret), data={"grant_type": "client_credentials"}
        )
        assert issued.status_code == 200, issued.text
        access = served.keep("service access_token", issued.json()["access_token"])
        assert http.get("/api/hello", params={"access_token": access}).status_code in (400, 401)
        assert http.get("/api/hello", headers={"authorization": f"Bearer {access}"}).is_success
        # Authorization code with state and nonce, then refresh (and a replay: an alert).
        tokens = _code_flow(served, http, web_secret)
        refreshed = http.post(
            "/token",
            auth=("web", web_secret),
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        )
        assert refreshed.status_code == 200, refreshed.text
        served.keep("rotated refresh_token", refreshed.json()["refresh_token"])
        served.keep("refreshed access_token", refreshed.json()["access_token"])
        replay = http.post(
            "/token",
            auth=("web", web_secret),
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        )
        assert replay.status_code == 400
        # Introspection and revocation.
        introspected = http.post(
            "/introspect", auth=("service", service_secret), data={"token": access}
        )
        assert introspected.json()["active"] is True
        revoked = http.post("/revoke", auth=("service", service_secret), data={"token": access})
        assert revoked.status_code == 200
        # The admin API hands out a new client secret.
        admin = http.post(
            "/token",
            auth=("ops", ops_secret),
            data={"grant_type": "client_credentials", "scope": "tokenward:admin"},
        ).json()["access_token"]
        served.keep("admin access_token", admin)
        created = http.post(
            "/admin/api/clients",
            json={"client_id": "made", "grant_types": ["client_credentials"], "scope": "read"},
            headers={"authorization": f"Bearer {admin}"},
        )
        assert created.status_code == 201, created.text
        served.keep("admin-created secret", created.json()["client_secret"])
        # Failed requests: a wrong secret, a forged token in the query, an unknown path.
        wrong = "wrong-secret-never-logged"
        assert (
            http.post(
                "/token", auth=("service", wrong), data={"grant_type": "client_credentials"}
            ).status_code
            == 401
        )
        forged = "eyJhbGciOiJFUzI1NiJ9.forged-token-never-logged.c2ln"
        assert http.get(f"/userinfo?access_token={forged}").status_code in (400, 401)
        assert http.get(f"/nowhere?refresh_token={tokens['refresh_token']}").status_code == 404
        for cookie in http.cookies.jar:  # the browser session and CSRF cookies
            served.keep(f"cookie {cookie.name}", cookie.value)
        # RP-initiated logout with id_token_hint in the query.
        logout = http.get("/logout", params={"id_token_hint": tokens["id_token"], "state": STATE})
        assert logout.status_code in (200, 302), logout.text[:300]
    served.secrets |= {"password": PASSWORD, "state": STATE, "nonce": NONCE, "wrong": wrong}
    served.secrets["forged"] = "forged-token-never-logged"


def _fragments(value: str) -> list[str]:
    """The value, and for a JWT each of its parts (a log may cut a token at its dots)."""
    parts = [value]
    if value.count(".") == 2:
        parts += [part for part in value.split(".") if len(part) >= 16]
    return parts


def test_nothing_secret_reaches_the_logs(served: Served) -> None:
    _whole_flow(served)
    time.sleep(1.0)  # the monitor drains every 0.2 s; its audit lines follow
    stop_process(served.process)
    printed = served.output()
    # The log is really there: one access line per request, path only.
    assert re.search(r'127\.0\.0\.1:\d+ - "GET /api/hello" 40\d \d+\.\dms', printed), printed
    assert '"POST /token" 200' in printed
    assert '"POST /token" 400' in printed  # the empty form, in the express lane
    assert '"GET /logout"' in printed
    assert "security_alert" in printed  # the refresh replay, as an audit line
    assert "?" not in "".join(re.findall(r'"(?:GET|POST|DELETE) [^"]*"', printed))
    for name, value in served.secrets.items():
        for fragment in _fragments(value):
            assert fragment not in printed, f"{name} appears in the server's output"
            encoded = base64.b64encode(fragment.encode()).decode()
            assert encoded not in printed, f"{name} appears base64-encoded"
    for word in ("access_token=", "id_token_hint=", "refresh_token=", '"client_secret"'):
        assert word not in printed, word


def test_the_data_directory_is_owner_only(served: Served) -> None:
    assert stat.S_IMODE(served.data_dir.stat().st_mode) == 0o700
    files = sorted(served.data_dir.iterdir())
    assert {f.name for f in files} >= {"master.key", "tokenward.db"}
    modes = {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
    assert set(modes.values()) == {"0o600"}, modes


def test_a_sigterm_right_after_a_request_still_writes_its_access_line(tmp_path: Path) -> None:
    """The access log is written every half second; uvicorn ends the process by re-raising
    the signal once its shutdown is done, so the last lines are written inside the shutdown."""
    data_dir, port = tmp_path / "data", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    stdout = tmp_path / "stdout.log"
    with stdout.open("wb") as out:
        process = init_and_serve(data_dir, port, env, out, subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        answers = [
            httpx.get(f"{base}/.well-known/openid-configuration", timeout=10) for _ in range(3)
        ]
        assert [answer.status_code for answer in answers] == [200, 200, 200]
    finally:
        stop_process(process)  # SIGTERM within the half second the lines wait
    assert stdout.read_text().count('"GET /.well-known/openid-configuration" 200') == 3
