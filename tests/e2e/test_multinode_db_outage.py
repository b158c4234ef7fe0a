"""PostgreSQL unreachable for a moment, across processes over real HTTP on loopback.

Two authorization servers reach PostgreSQL only through a TCP relay the tests cut (every open
connection reset, new ones refused) and restore; the shared PostgreSQL is never stopped. While
it is cut, every endpoint that needs the database answers 503 `temporarily_unavailable` with
Retry-After, within milliseconds, never a 500 (docs/deployment.md, Failure behaviour); a JWT
already issued is served from the revocation mirror until `max_staleness`, then refused with 503
too. Once the relay is back the nodes recover by themselves, and the refresh token whose
rotation was refused during the outage rotates exactly once: the failed attempt consumed nothing
and left nothing behind in the grant family (read back from the database), and its reuse
afterwards revokes the family and every access token it minted.

The relay can also cut itself the moment a given statement goes out, which lands the outage at
chosen instants of one refresh's transaction (while the successor is written; while the access
token it answers with is recorded, the last statement before the COMMIT), and can stop
answering instead of refusing (a black-holed database): a request then waits a bounded few
seconds for its 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.e2e.cluster import Cluster, cluster
from tests.e2e.test_multinode_faults import TcpRelay
from tests.server.flows import Pkce, hidden_interaction, query_of
from tests.store.conftest import PG_HOST, PG_PORT, PG_URL, require_postgres
from tokenward.oauth.refresh import refresh_digest
from tokenward.store.cached_clients import DEFAULT_TTL as CLIENT_CACHE_TTL
from tokenward.store.sql.engine import PG_COMMAND_TIMEOUT, PG_CONNECT_TIMEOUT

CALLBACK = "https://app.example/cb"
PASSWORD = "erin's password"
RESYNC = 0.5  # every server re-reads the revocation log this often
STALENESS = 3.0  # past this without a sync, the servers' validators answer 503
MARGIN = 1.5  # scheduling slack: a small CI machine running other tests alongside
FAIL_FAST = 2.0  # a request that needs the unreachable database is answered within this
RECOVERY = 10.0  # /token serves again within this of the database's return
# ... and within this when the database stops answering instead of refusing: the pre-ping
# statement times out, then the reconnect does (store/sql/engine.py), plus slack.
STALL_BOUND = PG_COMMAND_TIMEOUT + PG_CONNECT_TIMEOUT + 1.5
ENDPOINTS = {"client_credentials", "refresh_token", "revoke", "introspect", "userinfo", "hello"}


class FaultyRelay(TcpRelay):
    """The fault tests' relay to PostgreSQL (`cut`, `restore`), which can also be armed to cut
    itself the moment the client sends some bytes (a statement's text: that message is not
    forwarded), or stall: accept and hold everything, answer nothing, as a black-holed database
    does. `cut` ends a stall (whatever waits on it fails at once), `restore` reopens."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._stalled = False
        self._pattern: bytes | None = None
        self.fired = threading.Event()
        super().__init__(target)  # starts accepting: everything above must exist by then

    def arm(self, pattern: bytes | None) -> None:
        """Cut at the first message carrying `pattern` (None: never)."""
        self.fired.clear()
        self._pattern = pattern

    def stall(self) -> None:
        self._stalled = True

    def cut(self) -> None:
        super().cut()  # refuses new connections first, then resets every open one
        self._stalled = False  # what a stall held goes nowhere: its sockets are closed

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:  # a cut either sees this socket, or refuses it here
                keep = self._open
                if keep:
                    self._sockets.append(client)
            if not keep:
                _reset(client)
                continue
            if self._stalled:
                continue  # accepted, and never a byte in answer: the connect waits
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.append(upstream)
            for source, sink, watch in ((client, upstream, True), (upstream, client, False)):
                thread = threading.Thread(
                    target=self._pump, args=(source, sink, watch), daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket, watch: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                while self._stalled:
                    time.sleep(0.01)  # held, not dropped: the peer just waits
                pattern = self._pattern
                if watch and pattern is not None and pattern in data:
                    self._pattern = None
                    self.fired.set()  # before the cut: the 503 it causes may come back first
                    self.cut()
                    return
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv on it
    sock.close()


@dataclass(frozen=True)
class Answer:
    what: str
    status: int  # 0: no HTTP answer within the client's timeout
    seconds: float
    body: dict[str, Any]
    retry_after: str | None
    text: str
    sent: float = 0.0  # monotonic instant the request went out


def _call(what: str, send: Callable[[], httpx.Response]) -> Answer:
    start = time.monotonic()
    try:
        response = send()
    except httpx.TimeoutException as exc:
        return Answer(what, 0, time.monotonic() - start, {}, None, type(exc).__name__, start)
    seconds = time.monotonic() - start
    try:
        body = response.json()
    except ValueError:
        body = {}
    return Answer(
        what,
        response.status_code,
        seconds,
        body if isinstance(body, dict) else {},
        response.headers.get("retry-after"),
        response.text,
        start,
    )


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _until(condition: Callable[[], bool], within: float, what: str) -> float:
    """Poll `condition` until true; the monotonic instant it was, or AssertionError."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        time.sleep(0.02)
    return time.monotonic()


def _clients(group: Cluster) -> tuple[tuple[str, str], tuple[str, str]]:
    """A service client (client_credentials), a web client (code + refresh), and a user."""
    web = json.loads(
        group.cli(
            "client",
            "create",
            "--client-id",
            "web",
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--scope",
            "openid read",
            "--redirect-uri",
            CALLBACK,
            "--skip-consent",
        )
    )
    group.cli("user", "create", "--username", "erin", "--password-stdin", stdin=PASSWORD + "\n")
    return group.service_client(), ("web", web["client_secret"])


def _sign_in(node: str, web: tuple[str, str]) -> dict[str, Any]:
    """Authorization code + PKCE for erin: the token response (access and refresh token)."""
    pkce = Pkce.new()
    with httpx.Client() as browser:
        page = browser.get(
            f"{node}/authorize",
            params={
                "response_type": "code",
                "client_id": "web",
                "redirect_uri": CALLBACK,
                "scope": "openid read",
                "code_challenge": pkce.challenge,
                "code_challenge_method": "S256",
            },
        )
        assert page.status_code == 200, page.text[:300]
        done = browser.post(
            f"{node}/login",
            data={
                "interaction": hidden_interaction(page.text),
                "username": "erin",
                "password": PASSWORD,
            },
        )
    assert done.status_code == 302, done.text[:300]
    response = httpx.post(
        f"{node}/token",
        auth=web,
        data={
            "grant_type": "authorization_code",
            "code": query_of(done.headers["location"])["code"],
            "redirect_uri": CALLBACK,
            "code_verifier": pkce.verifier,
        },
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    assert tokens["refresh_token"]
    return tokens


def _refresh(http: httpx.Client, node: str, web: tuple[str, str], value: str) -> httpx.Response:
    return http.post(
        f"{node}/token", auth=web, data={"grant_type": "refresh_token", "refresh_token": value}
    )


def _client_credentials(http: httpx.Client, node: str, svc: tuple[str, str]) -> httpx.Response:
    return http.post(f"{node}/token", auth=svc, data={"grant_type": "client_credentials"})


def _serving(http: httpx.Client, deployment: Deployment) -> bool:
    return all(
        _client_credentials(http, node, deployment.svc).status_code == 200
        for node in deployment.group.nodes
    )


FAMILY_OF = "SELECT family_id FROM @refresh_tokens WHERE digest = :key"
FAMILY = "SELECT * FROM @grant_families WHERE family_id = :key"
REFRESH_TOKENS = "SELECT * FROM @refresh_tokens WHERE family_id = :key ORDER BY created_at"
MINTED = "SELECT jti FROM @minted_tokens WHERE family_id = :key"


def _family_rows(schema: str, value: str) -> dict[str, Any]:
    """The grant family of refresh token `value` as the database holds it (read directly, not
    through any relay): its row, its refresh tokens in order, how many minted access tokens it
    keeps."""

    async def read() -> dict[str, Any]:
        engine = create_async_engine(PG_URL)
        try:
            async with engine.connect() as db:

                async def rows(sql: str, key: str) -> list[dict[str, Any]]:
                    result = await db.execute(text(sql.replace("@", f'"{schema}".')), {"key": key})
                    return [dict(row) for row in result.mappings()]

                (token,) = await rows(FAMILY_OF, refresh_digest(value))
                family_id = token["family_id"]
                (family,) = await rows(FAMILY, family_id)
                return {
                    "family": family,
                    "tokens": await rows(REFRESH_TOKENS, family_id),
                    "minted": len(await rows(MINTED, family_id)),
                }
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _check_chain(rows: dict[str, Any], values: list[str]) -> None:
    """The family holds exactly the refresh tokens `values`, in rotation order: each rotated
    once into the next, the last one live. No stray row, no dangling successor."""
    tokens = rows["tokens"]
    assert [t["digest"] for t in tokens] == [refresh_digest(v) for v in values], tokens
    for token, following in itertools.pairwise(tokens):
        assert token["rotated_at"] is not None, token
        assert token["successor_digest"] == following["digest"], (token, following)
    assert tokens[-1]["rotated_at"] is None, tokens[-1]
    assert tokens[-1]["successor_digest"] is None, tokens[-1]


@contextmanager
def _setting_up() -> Iterator[None]:
    """A failed step here is a broken test, not the bug a strict xfail expects (an
    AssertionError): report it as a failure of its own."""
    try:
        yield
    except AssertionError as exc:
        pytest.fail(f"setup, not the expected outcome: {exc}")


def _from_the_client_cache(answer: Answer, cut: float) -> bool:
    """client_credentials needs nothing from the database but the client's record, which each
    node keeps for CLIENT_CACHE_TTL (store/cached_clients.py): a token issued within that of the
    cut is the documented staleness bound, not a failure to fail closed. Past it: 503."""
    return (
        answer.what.endswith("client_credentials")
        and answer.status == 200
        and answer.sent - cut < CLIENT_CACHE_TTL
    )


def _check_unavailable(answer: Answer) -> None:
    """The documented fail-closed answer: 503 temporarily_unavailable, Retry-After, no trace."""
    assert answer.status == 503, answer
    assert answer.body.get("error") == "temporarily_unavailable", answer
    assert set(answer.body) <= {"error", "error_description"}, answer
    assert answer.retry_after is not None, answer
    assert answer.retry_after.isdigit(), answer
    assert "Traceback" not in answer.text, answer
    assert "asyncpg" not in answer.text.lower(), answer


@dataclass
class Deployment:
    group: Cluster
    relay: FaultyRelay
    svc: tuple[str, str]  # a service client: client_credentials, scope read
    web: tuple[str, str]  # a web client: code + PKCE and refresh_token, scope openid read
    logs: list[Path]
    _seen: list[int] = field(default_factory=list)

    def logs_from_here(self) -> None:
        self._seen = [log.stat().st_size for log in self.logs]

    def check_logs(self) -> None:
        """No unhandled error (a 500), no stack trace, since `logs_from_here`."""
        for log, seen in zip(self.logs, self._seen, strict=True):
            with log.open("rb") as file:
                file.seek(seen)
                output = file.read().decode(errors="replace")
            assert "unhandled_error" not in output, output[-3000:]
            assert "Traceback" not in output, output[-3000:]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Two servers reaching PostgreSQL only through one relay; each test leaves it restored."""
    require_postgres()
    tmp = tmp_path_factory.mktemp("db_outage")
    (tmp / "cluster").mkdir()
    with ExitStack() as stack:
        relay = FaultyRelay((PG_HOST, PG_PORT))
        stack.callback(relay.close)
        relayed = PG_URL.replace(f"@{PG_HOST}:{PG_PORT}/", f"@127.0.0.1:{relay.port}/")
        assert relayed != PG_URL
        group = stack.enter_context(
            cluster(
                tmp / "cluster",
                nodes=2,
                log_dir=tmp,
                database_url=relayed,  # the init and the CLI too: all before any cut
                revocation_resync_seconds=str(RESYNC),
                revocation_max_staleness=str(STALENESS),
                refresh_reuse_grace="0",  # every repeat of a rotated refresh token is reuse
            )
        )
        svc, web = _clients(group)
        logs = [tmp / f"server{index}.log" for index in range(len(group.nodes))]
        yield Deployment(group, relay, svc, web, logs)


@pytest.fixture
def outage(deployment: Deployment) -> Iterator[Deployment]:
    """The deployment with the database reachable and both nodes serving; restored after."""
    deployment.relay.restore()
    with httpx.Client(timeout=30) as http:
        _until(lambda: _serving(http, deployment), RECOVERY, "serving before the test")
        probe = _client_credentials(http, deployment.group.nodes[0], deployment.svc)
        for node in deployment.group.nodes:  # and each mirror fresh (a previous test's outage)

            def fresh(node: str = node) -> bool:
                return _hello(http, node, probe.json()["access_token"]) == 200

            _until(fresh, RECOVERY, "the mirror fresh before the test")
    deployment.logs_from_here()
    try:
        yield deployment
    finally:
        deployment.relay.arm(None)
        deployment.relay.cut()  # ends a stall, if any
        deployment.relay.restore()
    deployment.check_logs()


@dataclass
class Tokens:
    svc: tuple[str, str]
    web: tuple[str, str]
    refresh: str  # the family's current refresh token
    access: str  # a user's access token (openid read), from that family
    service: str  # a client_credentials access token


def _round(http: httpx.Client, node: str, name: str, tokens: Tokens) -> list[Answer]:
    """Everything a client asks of one node, once each; the last answer is the API's."""
    user = _bearer(tokens.access)
    return [
        _call(f"{name} client_credentials", lambda: _client_credentials(http, node, tokens.svc)),
        _call(f"{name} refresh_token", lambda: _refresh(http, node, tokens.web, tokens.refresh)),
        _call(
            f"{name} revoke",
            lambda: http.post(f"{node}/revoke", auth=tokens.svc, data={"token": tokens.service}),
        ),
        _call(
            f"{name} introspect",
            lambda: http.post(
                f"{node}/introspect", auth=tokens.svc, data={"token": tokens.refresh}
            ),
        ),
        _call(f"{name} userinfo", lambda: http.get(f"{node}/userinfo", headers=user)),
        _call(f"{name} hello", lambda: http.get(f"{node}/api/hello", headers=user)),
    ]


def _ride_out(
    http: httpx.Client, nodes: dict[str, str], tokens: Tokens, cut: float
) -> tuple[list[Answer], dict[str, float]]:
    """Ask every node everything, over and over, until each node's mirror has gone stale (and a
    little after). The 503s, and when each node's API first answered 503."""
    answers: list[Answer] = []
    stale: dict[str, float] = {}
    while len(stale) < len(nodes) or time.monotonic() < max(stale.values()) + 0.5:
        assert time.monotonic() < cut + STALENESS + MARGIN + 5, f"never stale: {stale}"
        for name, node in nodes.items():
            *others, hello = _round(http, node, name, tokens)
            answers += others
            if hello.status == 200:  # served from the mirror while it is fresh
                assert name not in stale, "served again on a stale mirror"
            else:
                stale.setdefault(name, time.monotonic())
                answers.append(hello)
        time.sleep(0.05)
    return answers, stale


def _hello(http: httpx.Client, node: str, token: str) -> int:
    return http.get(f"{node}/api/hello", headers=_bearer(token)).status_code


def test_database_unreachable_then_back_fails_closed_and_keeps_the_grant_whole(
    outage: Deployment,
) -> None:
    relay, schema, (a, b) = outage.relay, outage.group.schema, outage.group.nodes
    svc, web = outage.svc, outage.web
    with httpx.Client(timeout=30) as http:
        # Before the cut: a refresh family going (code + PKCE at A, one rotation at B), and a
        # client_credentials token; both work everywhere.
        first = _sign_in(a, web)
        rotated = _refresh(http, b, web, first["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        service = _client_credentials(http, a, svc)
        assert service.status_code == 200, service.text
        tokens = Tokens(
            svc,
            web,
            rotated.json()["refresh_token"],
            rotated.json()["access_token"],
            service.json()["access_token"],
        )
        for node in (a, b):
            assert _hello(http, node, tokens.access) == 200
            assert _hello(http, node, tokens.service) == 200
            assert http.get(f"{node}/userinfo", headers=_bearer(tokens.access)).status_code == 200
        held = tokens.refresh  # its rotation is refused during the outage
        _check_chain(_family_rows(schema, held), [first["refresh_token"], held])

        relay.cut()
        cut = time.monotonic()
        # An access token already issued is served from the mirror meanwhile: no database.
        mirror = _hello(http, b, tokens.access)
        answers, stale = _ride_out(http, {"A": a, "B": b}, tokens, cut)
        relay.restore()
        restored = time.monotonic()
        recovered = _until(lambda: _serving(http, outage), RECOVERY, "/token after the cut")

        # The refresh token refused during the outage rotates now, once.
        after = _refresh(http, a, web, held)
        assert after.status_code == 200, after.text
        renewed = after.json()
        rows = _family_rows(schema, held)
        _check_chain(rows, [first["refresh_token"], held, renewed["refresh_token"]])
        assert rows["family"]["revoked_at"] is None
        assert rows["minted"] == 3  # the code's, one per rotation: the 503s minted nothing
        # The new one works, at B, and the family grows by exactly one.
        latest = _refresh(http, b, web, renewed["refresh_token"])
        assert latest.status_code == 200, latest.text
        newest = latest.json()
        chain = [first["refresh_token"], held, renewed["refresh_token"], newest["refresh_token"]]
        _check_chain(_family_rows(schema, held), chain)
        for node in (a, b):

            def fresh(node: str = node) -> bool:
                return _hello(http, node, newest["access_token"]) == 200

            _until(fresh, RESYNC + MARGIN, "the mirror fresh again")
            assert _hello(http, node, tokens.service) == 200  # the 503 /revoke revoked nothing

        # The token used during the outage, presented again, is reuse: refused, and the family
        # is revoked with every access token it minted (RefreshTokenGrant._revoke_family).
        for node, value in ((a, held), (b, newest["refresh_token"])):
            refused = _refresh(http, node, web, value)
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"] == "invalid_grant"
        rows = _family_rows(schema, held)
        assert rows["family"]["revoked_at"] is not None
        _check_chain(rows, chain)  # the reuse rotated nothing
        assert _hello(http, a, newest["access_token"]) == 401
        _until(
            lambda: _hello(http, b, newest["access_token"]) == 401,
            RESYNC + MARGIN,
            "the family's access token refused at B",
        )

    latencies = sorted(answer.seconds for answer in answers)
    slowest = max(answers, key=lambda answer: answer.seconds)
    print(
        f"\nwhile cut: {len(answers)} answers; latency median "
        f"{latencies[len(latencies) // 2] * 1000:.0f}ms, max {slowest.seconds * 1000:.0f}ms "
        f"({slowest.what}); API 503 after "
        + ", ".join(f"{name} {at - cut:.2f}s" for name, at in sorted(stale.items()))
        + f" (max_staleness {STALENESS}s, resync {RESYNC}s); "
        f"/token served again {recovered - restored:.2f}s after the database came back"
    )
    assert mirror == 200  # the mirror served while it was fresh
    for answer in answers:
        if _from_the_client_cache(answer, cut):
            continue
        _check_unavailable(answer)
    assert any(  # past the client cache's bound, client_credentials fails closed too
        answer.what.endswith("client_credentials") and answer.status == 503 for answer in answers
    )
    assert {answer.what.split()[1] for answer in answers} == ENDPOINTS
    assert slowest.seconds <= FAIL_FAST, slowest
    for name, at in stale.items():
        assert STALENESS - RESYNC - 0.25 <= at - cut <= STALENESS + MARGIN, (name, at - cut)
    assert recovered - restored <= RECOVERY


# The statement (its text goes out when first prepared on a connection) at which the relay cuts.
INSIDE_THE_ROTATION = b"INSERT INTO refresh_tokens"  # the successor, before the COMMIT
RECORDING_THE_TOKEN = b"minted_tokens"  # the access token answered with, in the same transaction


@pytest.mark.parametrize(
    "statement",
    [
        # The access token a refresh answers with is recorded in the rotation's own
        # transaction: a cut at either statement leaves neither the successor nor the token.
        pytest.param(INSIDE_THE_ROTATION, id="inside-the-rotation"),
        pytest.param(RECORDING_THE_TOKEN, id="recording-the-access-token"),
    ],
)
def test_refresh_cut_off_mid_flight_is_all_or_nothing(outage: Deployment, statement: bytes) -> None:
    """A refresh answered 503 has not happened: the token is not rotated, no successor row
    exists, and the same token rotates once the database is back."""
    relay, schema, (a, _b) = outage.relay, outage.group.schema, outage.group.nodes
    with httpx.Client(timeout=30) as http, _setting_up():
        held = _sign_in(a, outage.web)["refresh_token"]
        # Renew every pooled connection, so that each statement goes out as text once more.
        relay.cut()
        relay.restore()
        _until(lambda: _serving(http, outage), RECOVERY, "/token after renewing the pools")
        relay.arm(statement)
        answer = _call("refresh", lambda: _refresh(http, a, outage.web, held))
        assert relay.fired.is_set(), ("the relay did not cut", answer)
        _check_unavailable(answer)
        relay.restore()
        _until(lambda: _serving(http, outage), RECOVERY, "/token after the cut")

    with httpx.Client(timeout=30) as http:
        rows = _family_rows(schema, held)
        _check_chain(rows, [held])  # not rotated: no successor row, nothing half-written
        assert rows["minted"] == 1  # the code's only: the undelivered one was never recorded
        again = _refresh(http, a, outage.web, held)
        assert again.status_code == 200, again.text  # the same token, retried: rotates once
        successor = again.json()["refresh_token"]
        rows = _family_rows(schema, held)
        _check_chain(rows, [held, successor])
        assert rows["family"]["revoked_at"] is None
        assert rows["minted"] == 2
        reuse = _refresh(http, a, outage.web, held)
        assert reuse.status_code == 400, reuse.text
        assert reuse.json()["error"] == "invalid_grant"


def test_database_that_stops_answering_is_refused_quickly(outage: Deployment) -> None:
    relay, (a, _b) = outage.relay, outage.group.nodes
    with httpx.Client(timeout=STALL_BOUND + 1) as http, _setting_up():
        relay.stall()
        # An opaque token is looked up in the database (the client's record is cached: a
        # client_credentials grant would not reach it). It has our prefix and was never seen
        # before: a value without the prefix, or one refused before, needs no lookup.
        unseen = "twa_" + secrets.token_urlsafe(32)
        stalled = _call(
            "introspect",
            lambda: http.post(f"{a}/introspect", auth=outage.svc, data={"token": unseen}),
        )
        relay.cut()  # what waits on the stalled relay fails now
        relay.restore()
        restored = time.monotonic()
        recovered = _until(lambda: _serving(http, outage), RECOVERY, "/token after the stall")
    print(
        f"\ndatabase stalled: /introspect answered {stalled.status or 'nothing'} after "
        f"{stalled.seconds:.2f}s; served again {recovered - restored:.2f}s after the relay reset"
    )
    assert stalled.seconds <= STALL_BOUND, stalled
    _check_unavailable(stalled)
