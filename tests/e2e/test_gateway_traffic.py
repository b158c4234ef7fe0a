"""Traffic management through a real `tokenward gateway` process and real loopback upstreams:
canary rules, health checks taking an upstream out and back, retries only for idempotent
requests, circuit breaking, connection limits (docs/gateway.md, "Traffic management")."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.live import free_port
from tests.gateway.processes import RunningGateway, gateway_process
from tokenward.gateway.traffic import subject_bucket
from tokenward.tokens.grant import TokenGrant
from tokenward.tokens.jwt_access import JwtAccessTokenStrategy
from tokenward.tokens.keyring import KeyPolicy, Keyring

ISSUER = "https://issuer.example"
AUDIENCE = "https://api.example"
WAIT = 20.0  # seconds any polled condition may take on a loaded machine


class Backend:
    """A loopback upstream that counts what reached it and answers as the test says. Every
    answer closes its connection, so stopping the server takes the upstream really down."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.status = 200
        self.health_status = 200
        self.hold = threading.Event()  # set: requests to /hold wait for `release`
        self.release = threading.Event()
        self.seen: list[tuple[str, str, str]] = []  # (method, path, x-request-id)
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def count(self, method: str | None = None, *, health: bool = False) -> int:
        with self.lock:
            return sum(
                1
                for m, path, _ in self.seen
                if (method is None or m == method) and (path == "/healthz") == health
            )

    def ids(self) -> list[str]:
        with self.lock:
            return [rid for _, _, rid in self.seen if rid]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                with backend.lock:
                    backend.seen.append(
                        (self.command, self.path, self.headers.get("x-request-id", ""))
                    )
                if self.path == "/healthz":
                    status = backend.health_status
                else:
                    if self.path.startswith("/api/hold") or self.path.startswith("/open/hold"):
                        backend.hold.set()
                        backend.release.wait(WAIT)  # bounded: the test releases it
                    status = backend.status
                body = json.dumps({"backend": backend.name}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


@contextmanager
def backends(*names: str) -> Iterator[list[Backend]]:
    started = [Backend(name) for name in names]
    for backend in started:
        backend.start()
    try:
        yield started
    finally:
        for backend in started:
            backend.release.set()
            backend.stop()


@pytest.fixture
def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}


@contextmanager
def gateway(tmp_path: Path, env: dict[str, str], routes: str, top: str = "") -> Iterator[Client]:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "listen: {port: 0}\nmetrics: {port: 0}\n"
        f"audit: {{path: {tmp_path / 'audit.jsonl'}}}\n" + top + "routes:\n" + routes
    )
    with gateway_process(config, env) as running, httpx.Client(timeout=30) as http:
        yield Client(running, http, tmp_path / "audit.jsonl")


class Client:
    def __init__(self, running: RunningGateway, http: httpx.Client, audit: Path) -> None:
        self.running = running
        self.http = http
        self.audit = audit

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, self.running.base + path, **kwargs)

    def metric(self, name: str, **labels: str) -> float | None:
        assert self.running.admin is not None
        text = self.http.get(self.running.admin + "/metrics").text
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return None

    def audit_reasons(self) -> list[str]:
        if not self.audit.exists():
            return []
        return [json.loads(line).get("reason", "") for line in self.audit.read_text().splitlines()]


def poll(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling interval, not a fixed wait


def answered_by(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    name: str = response.json()["backend"]
    return name


# --- canary ------------------------------------------------------------------------------


@pytest.fixture
def signer(tmp_path: Path) -> tuple[Path, Callable[[str], str]]:
    """A key set in a file the gateway trusts, and tokens signed with it for a subject."""
    ring = Keyring(KeyPolicy(algorithm="ES256"), time.time)
    ring.ensure_ready()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(ring.jwks()))
    strategy = JwtAccessTokenStrategy(ring, ISSUER, clock=time.time)

    def mint(subject: str) -> str:
        grant = TokenGrant(subject, "client-1", (AUDIENCE,), frozenset({"read"}))
        return strategy.mint_sync(grant).value

    return jwks, mint


def test_canary_by_header_subject_and_percentage(
    tmp_path: Path, env: dict[str, str], signer: tuple[Path, Callable[[str], str]]
) -> None:
    jwks, mint = signer
    with backends("stable", "canary") as (stable, canary):
        routes = f"""
  - name: api
    prefix: /api
    auth: bearer
    upstreams: [{stable.url}]
    rate_limit: off
    traffic:
      groups: {{canary: [{canary.url}]}}
      canary:
        - {{header: x-canary, value: "on", to: canary}}
        - {{subjects: 30, to: canary}}
  - name: open
    prefix: /open
    auth: none
    upstreams: [{stable.url}]
    traffic:
      groups: {{canary: [{canary.url}]}}
      canary: [{{percent: 25, to: canary}}]
"""
        top = f"trust: {{issuer: '{ISSUER}', audience: '{AUDIENCE}', jwks_file: {jwks}}}\n"
        with gateway(tmp_path, env, routes, top) as gw:
            # Header: the rule wins whatever the subject; another value does not match.
            subject = next(
                f"user-{i}" for i in range(100) if subject_bucket("canary", f"user-{i}") >= 3000
            )
            token = mint(subject)
            auth = {"authorization": f"Bearer {token}"}
            for _ in range(5):
                assert (
                    answered_by(gw.request("GET", "/api/x", headers={**auth, "x-canary": "on"}))
                    == "canary"
                )
                assert (
                    answered_by(gw.request("GET", "/api/x", headers={**auth, "x-canary": "off"}))
                    == "stable"
                )
            # Subjects: sticky per subject, the share of subjects close to 30 %.
            chosen: dict[str, str] = {}
            for i in range(200):
                subject = f"subject-{i}"
                auth = {"authorization": f"Bearer {mint(subject)}"}
                sides = {answered_by(gw.request("GET", "/api/x", headers=auth)) for _ in range(2)}
                assert len(sides) == 1, f"{subject} moved between {sides}"
                chosen[subject] = sides.pop()
                expected = "canary" if subject_bucket("canary", subject) < 3000 else "stable"
                assert chosen[subject] == expected
            share = Counter(chosen.values())["canary"] / len(chosen)
            assert 0.18 <= share <= 0.42, share  # 30 % of 200, beyond 3.5 standard deviations
            # Percentage: per request, about a quarter.
            answers = Counter(answered_by(gw.request("GET", "/open/x")) for _ in range(400))
            assert 60 <= answers["canary"] <= 140, answers  # 100 expected, sd 8.7


# --- health ------------------------------------------------------------------------------

HEALTH = """
  - name: open
    prefix: /open
    auth: none
    upstreams: [{a}, {b}]
    traffic:
      health:
        active:
          path: /healthz
          interval: 0.2
          timeout: 0.2
          healthy_threshold: 1
          unhealthy_threshold: 2
        passive: {{failures: 1, cooloff: 600}}
"""


def test_an_upstream_that_goes_down_is_taken_out_and_comes_back(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with (
        backends("a", "b") as (a, b),
        gateway(tmp_path, env, HEALTH.format(a=a.url, b=b.url)) as gw,
    ):
        poll(lambda: a.count(health=True) >= 2, "active checks reaching a")
        # Down: passive marks on refused connections and the active checks take it out;
        # every request is answered by b meanwhile (the refused one went on to b).
        a.stop()
        for _ in range(6):
            assert answered_by(gw.request("GET", "/open/x")) == "b"
        poll(
            lambda: gw.metric("tokenward_gateway_upstream_healthy", upstream=a.url) == 0,
            "a reported unhealthy",
        )
        # Back: the active checks see it healthy and requests reach it again, although
        # its passive mark (600 s) would still hold.
        a.start()
        poll(
            lambda: "a" in {answered_by(gw.request("GET", "/open/x")) for _ in range(4)},
            "a back",
        )
        # Unhealthy by its checks alone (it still answers requests): out, then back.
        a.health_status = 503
        poll(
            lambda: gw.metric("tokenward_gateway_upstream_healthy", upstream=a.url) == 0,
            "a failing its checks",
        )
        before = a.count("GET")
        assert {answered_by(gw.request("GET", "/open/x")) for _ in range(8)} == {"b"}
        assert a.count("GET") == before
        # Every upstream unhealthy: 503, JSON, named in the audit line.
        b.health_status = 503
        poll(lambda: gw.request("GET", "/open/x").status_code == 503, "both out")
        refused = gw.request("GET", "/open/x")
        assert refused.status_code == 503
        assert refused.json()["error"] == "temporarily_unavailable"
        assert refused.headers["retry-after"] == "1"
        poll(lambda: "no_healthy_upstream" in gw.audit_reasons(), "the audit line")
        a.health_status = b.health_status = 200
        poll(lambda: gw.request("GET", "/open/x").status_code == 200, "both back")


PASSIVE = """
  - name: open
    prefix: /open
    auth: none
    upstreams: [{a}, {b}]
    traffic:
      health:
        passive: {{failures: 2, cooloff: 3.0}}
"""


def test_failing_real_traffic_takes_an_upstream_out_for_a_cool_off(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with (
        backends("a", "b") as (a, b),
        gateway(tmp_path, env, PASSIVE.format(a=a.url, b=b.url)) as gw,
    ):
        a.status = 500
        statuses = Counter(gw.request("GET", "/open/x").status_code for _ in range(4))
        assert statuses == {500: 2, 200: 2}  # round robin: a failed twice, then it is out
        assert gw.metric("tokenward_gateway_upstream_healthy", upstream=a.url) == 0
        assert {answered_by(gw.request("GET", "/open/x")) for _ in range(6)} == {"b"}
        assert a.count("GET") == 2
        a.status = 200
        poll(
            lambda: "a" in {answered_by(gw.request("GET", "/open/x")) for _ in range(2)},
            "a back after its cool-off",
        )
        assert gw.metric("tokenward_gateway_upstream_healthy", upstream=a.url) == 1


# --- retries -----------------------------------------------------------------------------

RETRIES = """
  - name: open
    prefix: /open
    auth: none
    upstreams: [{a}, {b}]
    traffic:
      retries: {{attempts: 1, deadline: 5, statuses: [503]}}
"""


def test_a_get_is_retried_on_another_upstream_and_a_post_is_not(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with backends("a", "b") as (a, b):
        a.status = 503
        with gateway(tmp_path, env, RETRIES.format(a=a.url, b=b.url)) as gw:
            for _ in range(4):
                assert answered_by(gw.request("GET", "/open/x")) == "b"
            for _ in range(4):
                put = gw.request("PUT", "/open/x", content=b'{"v": 1}')
                assert answered_by(put) == "b"
            assert a.count("GET") >= 1  # round robin sent some to a first: retried on b
            assert a.count("PUT") >= 1
            statuses = []
            for _ in range(6):
                rid = uuid.uuid4().hex
                post = gw.request("POST", "/open/x", content=b"{}", headers={"x-request-id": rid})
                statuses.append(post.status_code)
                # Exactly one upstream saw this POST, exactly once.
                assert (a.ids() + b.ids()).count(rid) == 1
            assert statuses.count(503) == a.count("POST") >= 1
            assert statuses.count(200) == b.count("POST") >= 1
            retried = gw.metric("tokenward_gateway_upstream_retries_total", route="open")
            assert retried is not None
            assert retried >= 2


# --- weighted upstreams ------------------------------------------------------------------

WEIGHTED = """
  - name: open
    prefix: /open
    auth: none
    upstreams: [{{url: {a}, weight: 3}}, {b}]
  - name: grouped
    prefix: /grouped
    auth: none
    upstreams: [{a}]
    traffic:
      groups:
        heavy_b: [{{url: {a}, weight: 1}}, {{url: {b}, weight: 3}}]
      canary: [{{header: x-canary, to: heavy_b}}]
"""


def test_weighted_upstreams_get_exactly_their_share(tmp_path: Path, env: dict[str, str]) -> None:
    with (
        backends("a", "b") as (a, b),
        gateway(tmp_path, env, WEIGHTED.format(a=a.url, b=b.url)) as gw,
    ):
        answers = [answered_by(gw.request("GET", "/open/x")) for _ in range(400)]
        # Smooth weighted round robin: 3 and 1 in every 4, spread (a, a, b, a, ...).
        assert Counter(answers) == {"a": 300, "b": 100}
        assert all(Counter(answers[i : i + 4]) == {"a": 3, "b": 1} for i in range(0, 400, 4))
        assert (a.count("GET"), b.count("GET")) == (300, 100)
        canary = {"x-canary": "1"}
        grouped = [answered_by(gw.request("GET", "/grouped/x", headers=canary)) for _ in range(400)]
        assert Counter(grouped) == {"a": 100, "b": 300}
        assert (a.count("GET"), b.count("GET")) == (400, 400)


# --- circuit breaker ---------------------------------------------------------------------

BREAKER = """
  - name: open
    prefix: /open
    auth: none
    upstreams: [{a}]
    traffic:
      breaker: {{failures: 3, cooloff: 3.0}}
"""


def test_the_breaker_opens_and_half_opens(tmp_path: Path, env: dict[str, str]) -> None:
    with backends("a") as (a,), gateway(tmp_path, env, BREAKER.format(a=a.url)) as gw:
        a.status = 500
        for _ in range(3):
            assert gw.request("GET", "/open/x").status_code == 500
        opened = gw.request("GET", "/open/x")
        assert opened.status_code == 503
        assert opened.json()["error"] == "temporarily_unavailable"
        assert a.count("GET") == 3  # the open circuit kept it from the upstream
        labels = {"route": "open", "upstream": a.url}
        assert gw.metric("tokenward_gateway_upstream_breaker_state", **labels) == 1
        poll(lambda: "circuit_open" in gw.audit_reasons(), "the audit line")
        # Half-open after the cool-off: one probe goes through, a second request meanwhile
        # is refused; the probe's success closes the circuit.
        a.status = 200
        poll(
            lambda: gw.metric("tokenward_gateway_upstream_breaker_state", **labels) == 2,
            "half-open",
        )
        with ThreadPoolExecutor(1) as pool:
            probe: Future[httpx.Response] = pool.submit(gw.request, "GET", "/open/hold")
            assert a.hold.wait(WAIT)
            assert gw.request("GET", "/open/x").status_code == 503
            a.release.set()
            assert probe.result(WAIT).status_code == 200
        assert gw.request("GET", "/open/x").status_code == 200
        assert gw.metric("tokenward_gateway_upstream_breaker_state", **labels) == 0


# --- connection limits -------------------------------------------------------------------

LIMITS = """
  - name: open
    prefix: /open
    auth: none
    upstreams: [{a}]
    traffic:
      limits: {{max_connections: 1, max_pending: 0}}
"""


def test_a_connection_limit_answers_503(tmp_path: Path, env: dict[str, str]) -> None:
    with backends("a") as (a,), gateway(tmp_path, env, LIMITS.format(a=a.url)) as gw:
        with ThreadPoolExecutor(1) as pool:
            held: Future[httpx.Response] = pool.submit(gw.request, "GET", "/open/hold")
            assert a.hold.wait(WAIT)
            refused = gw.request("GET", "/open/x")
            assert refused.status_code == 503
            assert refused.json()["error"] == "temporarily_unavailable"
            assert "connection limit" in refused.json()["error_description"]
            assert a.count("GET") == 1
            a.release.set()
            assert held.result(WAIT).status_code == 200
        assert gw.request("GET", "/open/x").status_code == 200
        poll(lambda: "upstream_overloaded" in gw.audit_reasons(), "the audit line")
