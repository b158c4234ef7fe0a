"""`tokenward serve --workers 2` as real processes: on a fresh default (SQLite) data directory,
and on PostgreSQL + Redis. What one worker decides, the other knows (docs/deployment.md
"Workers"): revocations, single-use codes and refresh tokens, DPoP proof `jti`s, the sign-in
throttle, keys rotated by the CLI; SIGTERM to the parent stops every worker.

Which worker served a request is read from the server's own access log, whose lines carry the
worker's index and the client's address: a request is sent on a kept-alive connection after a
`GET /healthz` on it showed where the kernel put that connection.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import re
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.e2e.cluster import _schema
from tests.e2e.live import free_port, stop_process
from tests.server.flows import Pkce, hidden_interaction, query_of
from tests.store.conftest import PG_URL, require_postgres
from tests.store.redis_server import need_shared_redis
from tokenward.client.dpop import DpopKey
from tokenward.tokens.sealing import generate_master_key

TOKENWARD = str(Path(sys.executable).parent / "tokenward")
CALLBACK = "https://app.example/cb"
PASSWORD = "fern's long password"
# TOKENWARD_REVOCATION_RESYNC_SECONDS, set long here: a revocation that reaches the other
# worker well within it came by the push (the local fan-out on SQLite, Redis on PostgreSQL).
RESYNC = 10.0
PUSHED = 1.5  # seconds within which the other worker refuses a revoked token
PAIR_LIMIT = 5  # failures of one username from one address (core/throttle.py SignInLimits)


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: dict[str, Any]


@dataclass
class Served:
    base: str
    port: int
    data_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    secrets: dict[str, str] = field(default_factory=dict)
    opened: list[http.client.HTTPConnection] = field(default_factory=list)

    def cli(self, *args: str, stdin: str | None = None) -> Any:
        result = subprocess.run(
            [TOKENWARD, "--data-dir", str(self.data_dir), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            check=True,
            timeout=120,
        )
        return json.loads(result.stdout)

    def worker_of(self, local_port: int, within: float = 10.0) -> int:
        """The worker whose access log line shows a request from 127.0.0.1:`local_port`."""
        pattern = re.compile(rf"\[worker (\d+)\] 127\.0\.0\.1:{local_port} - ")
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = pattern.search(self.log.read_text(errors="replace"))
            if found:
                return int(found.group(1))
            time.sleep(0.02)
        raise AssertionError(f"no access log line for port {local_port}")

    def on(self, worker: int) -> http.client.HTTPConnection:
        """A kept-alive connection that the kernel gave to `worker`, and gives it again if the
        server closed it while it sat idle (uvicorn does after 5 s: finding the other worker's
        connection can take that long on a loaded machine)."""
        connection = Pinned(self, worker)
        connection.pin()
        self.opened.append(connection)  # closed after the test
        return connection


class Pinned(http.client.HTTPConnection):
    """An HTTP/1.1 connection to one worker of `served`."""

    def __init__(self, served: Served, worker: int) -> None:
        super().__init__("127.0.0.1", served.port, timeout=30)
        self._served, self._worker = served, worker

    def pin(self) -> None:
        for _ in range(200):
            self.close()
            super().request("GET", "/healthz")
            self.getresponse().read()
            assert self.sock is not None
            if self._served.worker_of(self.sock.getsockname()[1]) == self._worker:
                return
        raise AssertionError(f"200 connections and none reached worker {self._worker}")

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None and _closed_by_server(self.sock):
            self.pin()  # nothing was sent on it since it was last answered
        super().request(*args, **kwargs)


def _closed_by_server(sock: socket.socket) -> bool:
    """An idle HTTP connection that reads as at its end: the server has closed it."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""


def call(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
) -> Answer:
    sent = dict(headers or {})
    body = None
    if form is not None:
        body = urlencode(form)
        sent["content-type"] = "application/x-www-form-urlencoded"
    if auth is not None:
        sent["authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    connection.request(method, path, body=body, headers=sent)
    response = connection.getresponse()
    raw = response.read()
    parsed = json.loads(raw) if raw and raw.startswith(b"{") else {"text": raw.decode()}
    return Answer(response.status, response.headers, parsed)


def _environment(kind: str, data_dir: Path, port: int, stack: ExitStack) -> dict[str, str]:
    env = {
        **os.environ,
        "TOKENWARD_DATA_DIR": str(data_dir),
        "TOKENWARD_ISSUER": f"http://127.0.0.1:{port}",
        "TOKENWARD_KEY_SCHEDULE_SECONDS": "1",  # a CLI rotation is picked up within a second
        "TOKENWARD_REFRESH_REUSE_GRACE": "0",
        "TOKENWARD_REVOCATION_RESYNC_SECONDS": str(RESYNC),
    }
    for name in list(env):
        if name.startswith("TOKENWARD_") and name not in (
            "TOKENWARD_DATA_DIR",
            "TOKENWARD_ISSUER",
            "TOKENWARD_KEY_SCHEDULE_SECONDS",
            "TOKENWARD_REFRESH_REUSE_GRACE",
            "TOKENWARD_REVOCATION_RESYNC_SECONDS",
        ):
            del env[name]
    if kind == "postgres":
        require_postgres()
        schema = "tw_" + secrets.token_hex(6)
        asyncio.run(_schema(schema, create=True))
        stack.callback(lambda: asyncio.run(_schema(schema, create=False)))
        env |= {
            "TOKENWARD_DATABASE_URL": PG_URL,
            "TOKENWARD_DATABASE_SCHEMA": schema,
            "TOKENWARD_REDIS_URL": need_shared_redis(),
            "TOKENWARD_REDIS_NAMESPACE": f"tw-test-{secrets.token_hex(6)}",
            "TOKENWARD_MASTER_KEY": generate_master_key(),
        }
    return env


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp(f"workers-{request.param}")
    port = free_port()
    with ExitStack() as stack:
        env = _environment(request.param, tmp / "var", port, stack)
        subprocess.run([TOKENWARD, "init"], env=env, check=True, capture_output=True, timeout=120)
        log = tmp / "serve.log"
        handle = stack.enter_context(log.open("wb"))
        process = subprocess.Popen(
            [TOKENWARD, "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        stack.callback(lambda: stop_process(process))
        deadline = time.monotonic() + 120
        while "listening on" not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
        group = Served(f"http://127.0.0.1:{port}", port, tmp / "var", env, process, log)
        _clients(group)
        yield group


@pytest.fixture(autouse=True)
def _close_connections(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "served" in request.fixturenames:
        served: Served = request.getfixturevalue("served")
        for connection in served.opened:
            connection.close()
        served.opened.clear()


def _clients(group: Served) -> None:
    group.secrets["svc"] = group.cli(
        "client",
        "create",
        "--client-id",
        "svc",
        "--grant-type",
        "client_credentials",
        "--scope",
        "read",
    )["client_secret"]
    group.secrets["web"] = group.cli(
        "client",
        "create",
        "--client-id",
        "web",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--scope",
        "openid read offline_access",
        "--redirect-uri",
        CALLBACK,
        "--skip-consent",
    )["client_secret"]
    group.cli("user", "create", "--username", "fern", "--password-stdin", stdin=PASSWORD + "\n")
    group.cli("user", "create", "--username", "gus", "--password-stdin", stdin=PASSWORD + "\n")


def service_token(connection: http.client.HTTPConnection, group: Served) -> str:
    answer = call(
        connection,
        "POST",
        "/token",
        {"grant_type": "client_credentials"},
        auth=("svc", group.secrets["svc"]),
    )
    assert answer.status == 200, answer.body
    return str(answer.body["access_token"])


def introspect(connection: http.client.HTTPConnection, group: Served, token: str) -> dict[str, Any]:
    answer = call(
        connection, "POST", "/introspect", {"token": token}, auth=("svc", group.secrets["svc"])
    )
    assert answer.status == 200, answer.body
    return answer.body


def sign_in(connection: http.client.HTTPConnection, username: str, password: str) -> Answer:
    """GET /authorize then POST /login on one connection; the answer of the login."""
    pkce = Pkce.new()
    params = {
        "response_type": "code",
        "client_id": "web",
        "redirect_uri": CALLBACK,
        "scope": "openid read offline_access",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    page = call(connection, "GET", "/authorize?" + urlencode(params))
    assert page.status == 200, page.body
    form = {
        "interaction": hidden_interaction(page.body["text"]),
        "username": username,
        "password": password,
    }
    # The page's cookies (CSRF) go back with the form, as a browser sends them.
    cookies = "; ".join(
        value.split(";", 1)[0] for value in page.headers.get_all("set-cookie") or ()
    )
    answer = call(connection, "POST", "/login", form, {"cookie": cookies})
    answer.body["verifier"] = pkce.verifier
    return answer


def test_both_workers_answer_from_their_own_processes(served: Served) -> None:
    seen: dict[int, int] = {}
    while len(seen) < 2:
        connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200
        assert connection.sock is not None
        worker = served.worker_of(connection.sock.getsockname()[1])
        seen[worker] = seen.get(worker, 0) + 1
        connection.close()
        assert sum(seen.values()) < 200, seen
    assert set(seen) == {0, 1}
    started = re.findall(
        r"\[worker (\d)\] Started server process \[(\d+)\]", served.log.read_text()
    )
    pids = {int(pid) for _worker, pid in started}
    assert len(pids) == 2
    assert served.process.pid not in pids
    for pid in pids:  # children of the supervising `tokenward serve`
        stat = Path(f"/proc/{pid}/stat").read_text()
        assert int(stat.rsplit(")", 1)[1].split()[1]) == served.process.pid


def test_a_revocation_at_one_worker_is_refused_by_the_other_within_the_bound(
    served: Served,
) -> None:
    zero, one = served.on(0), served.on(1)
    token = service_token(zero, served)
    assert introspect(one, served, token)["active"] is True

    answer = call(zero, "POST", "/revoke", {"token": token}, auth=("svc", served.secrets["svc"]))
    assert answer.status == 200
    revoked_at = time.monotonic()

    assert introspect(zero, served, token)["active"] is False  # at once where it was revoked
    while introspect(one, served, token)["active"]:
        assert time.monotonic() - revoked_at < PUSHED, "worker 1 still accepts it"
        time.sleep(0.02)


def test_a_code_and_a_refresh_token_replayed_at_the_other_worker_are_refused(
    served: Served,
) -> None:
    zero, one = served.on(0), served.on(1)
    login = sign_in(zero, "fern", PASSWORD)
    assert login.status in (302, 303), login.body
    code = query_of(login.headers["location"])["code"]
    redeem = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": login.body["verifier"],
    }
    web = ("web", served.secrets["web"])
    tokens = call(zero, "POST", "/token", redeem, auth=web)
    assert tokens.status == 200, tokens.body

    replayed = call(one, "POST", "/token", redeem, auth=web)
    assert replayed.status == 400
    assert replayed.body["error"] == "invalid_grant"
    # RFC 9700 §4.5: the replay revokes what the code minted, on every worker.
    deadline = time.monotonic() + PUSHED
    while introspect(zero, served, tokens.body["access_token"])["active"]:
        assert time.monotonic() < deadline, "the replayed code's token is still active"
        time.sleep(0.02)

    fresh = sign_in(one, "fern", PASSWORD)
    redeem |= {
        "code": query_of(fresh.headers["location"])["code"],
        "code_verifier": fresh.body["verifier"],
    }
    family = call(one, "POST", "/token", redeem, auth=web).body
    refresh = {"grant_type": "refresh_token", "refresh_token": family["refresh_token"]}
    rotated = call(one, "POST", "/token", refresh, auth=web)
    assert rotated.status == 200, rotated.body

    reused = call(zero, "POST", "/token", refresh, auth=web)
    assert reused.status == 400
    assert reused.body["error"] == "invalid_grant"


def test_a_dpop_proof_replayed_at_the_other_worker_is_refused(served: Served) -> None:
    zero, one = served.on(0), served.on(1)
    key = DpopKey()
    url = served.base + "/token"
    svc = ("svc", served.secrets["svc"])
    form = {"grant_type": "client_credentials"}
    first = call(zero, "POST", "/token", form, {"dpop": key.proof("POST", url)}, auth=svc)
    assert first.body["error"] == "use_dpop_nonce"
    # Nonces are stateless: one worker's is good at the other.
    proof = key.proof("POST", url, nonce=first.headers["dpop-nonce"])

    accepted = call(one, "POST", "/token", form, {"dpop": proof}, auth=svc)
    assert accepted.status == 200, accepted.body
    replayed = call(zero, "POST", "/token", form, {"dpop": proof}, auth=svc)
    assert replayed.status == 400
    assert replayed.body["error"] == "invalid_dpop_proof"


def test_the_sign_in_throttle_counts_failures_at_both_workers(served: Served) -> None:
    workers = (served.on(0), served.on(1))
    for attempt in range(PAIR_LIMIT):
        assert sign_in(workers[attempt % 2], "gus", "a wrong guess").status == 401
    for connection in workers:
        assert sign_in(connection, "gus", PASSWORD).status == 429  # even the right one, now


def _kid(token: str) -> str:
    head = token.split(".", 1)[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


def test_a_key_rotated_by_the_cli_signs_and_verifies_at_every_worker(served: Served) -> None:
    before = _kid(service_token(served.on(0), served))

    rotated = served.cli("keys", "rotate", "--force")
    active = {key["kid"] for key in rotated if key["state"] == "active"}
    assert before not in active
    # Connected after the CLI returned: an idle kept-alive connection is closed after 5 s.
    zero, one = served.on(0), served.on(1)

    for connection in (zero, one):  # each worker's schedule reloads within a second
        deadline = time.monotonic() + 10
        while (kid := _kid(token := service_token(connection, served))) not in active:
            assert time.monotonic() < deadline, f"still signing with {kid}"
            time.sleep(0.05)
        for other in (zero, one):
            assert introspect(other, served, token)["active"] is True
    jwks = {key["kid"] for key in call(one, "GET", "/jwks").body["keys"]}
    assert active <= jwks
    assert before in jwks  # retiring: it still verifies what it signed


def test_a_worker_that_dies_is_started_again(served: Served) -> None:
    started = re.findall(r"\[worker 1\] Started server process \[(\d+)\]", served.log.read_text())
    os.kill(int(started[-1]), signal.SIGKILL)

    deadline = time.monotonic() + 60
    pattern = r"\[worker 1\] Application startup complete"
    while len(re.findall(pattern, served.log.read_text())) < len(started) + 1:
        assert time.monotonic() < deadline, "worker 1 was not started again"
        time.sleep(0.05)
    assert "worker 1 exited (signal 9); starting it again" in served.log.read_text()
    token = service_token(served.on(0), served)
    assert introspect(served.on(1), served, token)["active"] is True


def test_sigterm_stops_every_worker_after_its_requests_in_flight(served: Served) -> None:
    # Last in this module: it stops the fixture's server.
    text = served.log.read_text()
    pids = {int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", text)}
    body = urlencode({"token": "not-a-token"}).encode()
    secret = base64.b64encode(f"svc:{served.secrets['svc']}".encode()).decode()
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        head = (
            f"POST /introspect HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {secret}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nExpect: 100-continue\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 100 ")  # the worker is reading the body

        served.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _accepts(served.port):  # every worker stops accepting first
            assert time.monotonic() < deadline, "still accepting after SIGTERM"
            time.sleep(0.02)
        sock.sendall(body)
        answer = b""
        while b'"active"' not in answer and (chunk := sock.recv(4096)):
            answer += chunk
    stop_process(served.process)

    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]  # finished, not cut off
    assert served.process.returncode == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the supervisor"


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_a_busy_port_is_one_line_and_exit_2_before_any_worker_starts(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy, ExitStack() as stack:
        env = _environment("sqlite", tmp_path / "var", busy.getsockname()[1], stack)
        subprocess.run([TOKENWARD, "init"], env=env, check=True, capture_output=True, timeout=120)
        result = subprocess.run(
            [TOKENWARD, "serve", "--port", str(busy.getsockname()[1]), "--workers", "2"],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot listen on 127.0.0.1:")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Started server process" not in result.stdout + result.stderr
