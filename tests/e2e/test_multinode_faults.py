"""Faults across processes, over real HTTP on loopback, under a steady load.

Two authorization servers and two gateways run as separate processes sharing PostgreSQL (the
truth) and a private redis-server (the fast path) that the test stops and restarts; the shared
Redis at 6379 is never touched. A revocation accepted while Redis is down reaches every node by
the periodic re-read of the log, no node fails closed while the database answers, a rate limit
kept in Redis fails closed meanwhile (once the leases granted before the outage have
expired), and once Redis is back every node re-subscribes and the
next revocation reaches them all by push, in milliseconds (PUSH_BOUND). Once refused at a
node, a token never passes again.

A gateway cut off from the database (through a TCP relay the test cuts: the shared PostgreSQL is
never stopped) serves on its mirror until `max_staleness`, then answers 503
`temporarily_unavailable` with Retry-After, and recovers by itself when the database is back,
catching up on the revocation it missed meanwhile.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from redis import Redis

from tests.e2e.cluster import Cluster, cluster, gateway_processes
from tests.store.conftest import PG_HOST, PG_PORT, PG_URL, require_postgres
from tests.store.redis_server import private_redis
from tokenward.deploy.gateway_feed import deployment_namespace
from tokenward.store.rate_leases import TTL as LEASE_TTL

RESYNC = 1.0  # every server and gateway re-reads the revocation log this often
STALENESS = 3.0  # past this without a sync, a validator answers 503
MARGIN = 1.0  # scheduling slack: five processes and the load share a small CI machine
BOUND = RESYNC + MARGIN  # a revocation reaches every node by the re-read within this
RECONNECT_BOUND = 2.0 + MARGIN  # re-subscribing: a backoff capped at 1 s, a 1 s connect timeout
# After a restart every pooled Redis connection is dead; the clients (store/redis_client.py)
# reconnect once on first use, so no command fails for it: the revocation published right after
# the restart goes by push (milliseconds), and the rate limit serves as soon as Redis answers.
PUSH_BOUND = RESYNC / 4  # well under the re-read: this one must have come by push

GW_RESYNC = 0.5  # the gateway cut off from the database
GW_STALENESS = 2.0


@dataclass(frozen=True)
class Sample:
    start: float
    end: float
    target: str
    token: str
    status: int  # 0: no HTTP answer at all
    error: str  # the body's "error", or the transport exception's name
    retry_after: str | None = None


def _error_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("error", "")) if isinstance(body, dict) else ""


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


class Load:
    """Threads calling every (target, token) pair in turn until stopped, recording each answer."""

    def __init__(self, targets: dict[str, str], tokens: dict[str, str], threads: int = 3) -> None:
        self.targets = targets
        self.tokens = tokens
        self.samples: list[Sample] = []
        self._pairs = [(target, token) for target in targets for token in tokens]
        self._threads = [
            threading.Thread(target=self._run, args=(offset,), daemon=True)
            for offset in range(threads)
        ]
        self._stop = threading.Event()

    def _run(self, offset: int) -> None:
        with httpx.Client(timeout=5) as http:
            index = offset * len(self._pairs) // len(self._threads)
            while not self._stop.is_set():
                target, token = self._pairs[index % len(self._pairs)]
                index += 1
                start = time.monotonic()
                try:
                    response = http.get(self.targets[target], headers=_bearer(self.tokens[token]))
                    status, error = response.status_code, _error_of(response)
                    retry_after = response.headers.get("retry-after")
                except httpx.HTTPError as exc:
                    status, error, retry_after = 0, type(exc).__name__, None
                self.samples.append(
                    Sample(start, time.monotonic(), target, token, status, error, retry_after)
                )
                time.sleep(0.002)  # a steady load, not a CPU hog on a two-core machine

    @contextmanager
    def running(self) -> Iterator[Load]:
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(10)

    def series(self, target: str, token: str) -> list[Sample]:
        return sorted(
            (s for s in self.samples if s.target == target and s.token == token),
            key=lambda s: s.start,
        )


@contextmanager
def gateways(
    group: Cluster,
    tmp: Path,
    count: int,
    *,
    redis_url: str | None,
    database_url: str = PG_URL,
    resync: float = RESYNC,
    staleness: float = STALENESS,
) -> Iterator[list[str]]:
    """`count` gateway processes in remote trust mode following the deployment's revocations,
    each proxying a bearer-protected /healthz to the last server without a rate limit (so
    it needs no Redis), and /limited/healthz to the same under a roomy rate limit, kept in
    the gateways' Redis when they have one."""
    redis_line = f'  redis_url: "{redis_url}"\n' if redis_url is not None else ""

    def config(port: int) -> str:
        return f"""
listen: {{host: 127.0.0.1, port: {port}}}
trust: {{issuer: "{group.issuer}", audience: "{group.issuer}/api"}}
revocations:
  database_url: "{database_url}"
  database_schema: {group.schema}
{redis_line}  resync_seconds: {resync}
  max_staleness: {staleness}
audit: {{enabled: false}}
rate_limits:
  roomy: {{requests: 1000000, per: 3600, key: token}}
routes:
  - name: api
    prefix: /healthz
    upstreams: ["{group.nodes[-1]}"]
    auth: bearer
    scopes: [read]
    rate_limit: off
  - name: limited
    prefix: /limited
    strip_prefix: true
    upstreams: ["{group.nodes[-1]}"]
    auth: bearer
    scopes: [read]
    rate_limit: roomy
"""

    with gateway_processes(group, tmp, count, config) as bases:
        yield bases


def _token(node: str, auth: tuple[str, str]) -> str:
    response = httpx.post(f"{node}/token", data={"grant_type": "client_credentials"}, auth=auth)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _revoke(node: str, token: str, auth: tuple[str, str]) -> tuple[float, float]:
    """RFC 7009 revocation: (when the request was sent, when it was answered)."""
    sent = time.monotonic()
    response = httpx.post(f"{node}/revoke", data={"token": token}, auth=auth, timeout=30)
    answered = time.monotonic()
    assert response.status_code == 200, response.text
    return sent, answered


class Watch:
    """Polls each URL with one token back to back, from before its revocation (each has
    answered 200 once, on a warm connection, when `started` yields) until its first 401."""

    def __init__(self, urls: dict[str, str], token: str, within: float) -> None:
        self.refused_at: dict[str, float] = {}  # name -> monotonic instant of the first 401
        self.errors: list[str] = []
        self._names = list(urls)
        self._token = token
        self._within = within
        self._ready = threading.Semaphore(0)
        self._threads = [
            threading.Thread(target=self._poll, args=(name, url), daemon=True)
            for name, url in urls.items()
        ]

    def _poll(self, name: str, url: str) -> None:
        try:
            with httpx.Client(timeout=5) as http:
                first = http.get(url, headers=_bearer(self._token)).status_code
                self._ready.release()
                status = first
                deadline = time.monotonic() + self._within
                while status == 200 and time.monotonic() < deadline:
                    status = http.get(url, headers=_bearer(self._token)).status_code
                if status == 401 and first == 200:
                    self.refused_at[name] = time.monotonic()
                elif status != 200 or first != 200:
                    self.errors.append(f"{name}: {first} then {status}")
        except httpx.HTTPError as exc:
            self.errors.append(f"{name}: {type(exc).__name__}")
            self._ready.release()

    @contextmanager
    def started(self) -> Iterator[Watch]:
        for thread in self._threads:
            thread.start()
        for _ in self._threads:
            assert self._ready.acquire(timeout=15)
        try:
            yield self
        finally:
            for thread in self._threads:
                thread.join(self._within + 10)

    def latencies(self, since: float) -> dict[str, float]:
        """Seconds from `since` to each first 401 (inf: none within the watch)."""
        assert not self.errors, self.errors
        return {name: self.refused_at.get(name, math.inf) - since for name in self._names}


def _until(condition: Callable[[], bool], within: float) -> float:
    """Poll `condition` until true; the monotonic instant it was, or AssertionError."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
    return time.monotonic()


def _subscribers(url: str, channel: str) -> int:
    with Redis.from_url(url) as client:
        answer: list[tuple[bytes, int]] = client.pubsub_numsub(channel)
        return int(answer[0][1])


def _figures(name: str, values: dict[str, float]) -> str:
    return name + " " + " ".join(f"{key}={value * 1000:.0f}ms" for key, value in values.items())


def _check_revoked(
    load: Load, token: str, targets: list[str], revoke: tuple[float, float], bound: float
) -> None:
    """At each target: accepted before the revocation was sent; never accepted once a refusal
    was seen there (monotonic), nor by a request sent later than its answer + `bound`."""
    sent, at = revoke
    for target in targets:
        series = load.series(target, token)
        assert any(s.status == 200 for s in series if s.end < sent), (target, token, "unused")
        refusals = [s for s in series if s.status == 401]
        assert refusals, (target, token, "never refused under load")
        assert all(s.error == "invalid_token" for s in refusals), refusals[:3]
        first_refusal_end = min(s.end for s in refusals)
        regressions = [s for s in series if s.status == 200 and s.start > first_refusal_end]
        assert not regressions, (target, token, "accepted again after a refusal", regressions[:3])
        late = [s for s in series if s.status == 200 and s.start > at + bound]
        assert not late, (target, token, f"accepted {bound} s after its revocation", late[:3])


def _check_limited(load: Load, down: tuple[float, float], up: tuple[float, float]) -> None:
    """A rate limit kept in Redis fails closed while Redis is down (503 temporarily_unavailable
    with Retry-After, docs/deployment.md) and serves again as soon as Redis is back. `down`,
    `up`: when stopping and restarting Redis began and returned (it goes away, and answers
    again, somewhere in between)."""
    stopping, stopped = down
    restarting, restarted = up
    samples = [s for s in load.samples if s.target == "limited" and s.token.startswith("keep")]
    assert {s.status for s in samples} <= {200, 503}, {s.status for s in samples}
    unavailable = [s for s in samples if s.status == 503]
    assert all(s.error == "temporarily_unavailable" for s in unavailable), unavailable[:3]
    assert all(s.retry_after and s.retry_after.isdigit() for s in unavailable), unavailable[:3]
    assert not [s for s in unavailable if s.end < stopping], "503 before the outage"
    late = [s for s in unavailable if s.start > restarted + 0.5]
    assert not late, late  # see PUSH_BOUND
    # A lease granted just before the outage may still be spent from memory for its TTL
    # (store/rate_leases.py: the bound is documented there); after that, nothing is admitted.
    during = [s for s in samples if stopped + LEASE_TTL < s.start and s.end < restarting]
    assert during, "no request to the rate-limited route during the outage"
    assert all(s.status == 503 for s in during), [s for s in during if s.status != 503][:3]
    assert any(s.status == 200 for s in samples if s.start > restarted), "never recovered"


def test_redis_stopped_mid_load_then_restarted(tmp_path: Path) -> None:
    require_postgres()
    (tmp_path / "redis").mkdir()
    (tmp_path / "cluster").mkdir()
    with ExitStack() as stack:
        redis = stack.enter_context(private_redis(str(tmp_path / "redis")))
        group = stack.enter_context(
            cluster(
                tmp_path / "cluster",
                redis_url=redis.url,
                log_dir=tmp_path,
                revocation_resync_seconds=str(RESYNC),
                revocation_max_staleness=str(STALENESS),
            )
        )
        gws = stack.enter_context(gateways(group, tmp_path, 2, redis_url=redis.url))
        a, b = group.nodes
        auth = group.service_client()
        tokens = {name: _token(a, auth) for name in ("t1", "t2", "keep1", "keep2")}
        channel = deployment_namespace(group.issuer, group.schema) + ":revocations"
        _until(lambda: _subscribers(redis.url, channel) == 4, within=10)  # 2 servers, 2 gateways
        targets = {
            "A": f"{a}/api/hello",
            "B": f"{b}/api/hello",
            **{f"gw{index}": f"{base}/healthz" for index, base in enumerate(gws)},
        }
        others = {name: url for name, url in targets.items() if name != "A"}
        load = Load({**targets, "limited": f"{gws[0]}/limited/healthz"}, tokens)
        with load.running():
            time.sleep(0.5)
            stopping = time.monotonic()
            redis.stop()
            stopped = time.monotonic()
            with Watch(others, tokens["t1"], BOUND + 5).started() as watch:
                t1_sent, t1_at = _revoke(a, tokens["t1"], auth)  # accepted: PostgreSQL rules
            outage = watch.latencies(t1_at)
            fresh = _token(b, auth)  # issuance needs no Redis either
            assert httpx.get(f"{gws[0]}/healthz", headers=_bearer(fresh)).status_code == 200
            # Stay down past max_staleness: the re-reads alone must keep every mirror fresh.
            time.sleep(max(0.0, stopped + STALENESS + RESYNC - time.monotonic()))
            restarting = time.monotonic()
            redis.start()
            restarted = time.monotonic()
            resubscribed = _until(lambda: _subscribers(redis.url, channel) == 4, within=15)
            with Watch(others, tokens["t2"], BOUND + 5).started() as watch:
                t2_sent, t2_at = _revoke(a, tokens["t2"], auth)
            push = watch.latencies(t2_at)
            time.sleep(0.5)
        print(
            f"\nrevoke at A while Redis is down took {(t1_at - t1_sent) * 1000:.0f}ms; "
            f"{_figures('then refused (from its answer) by re-read:', outage)}; "
            f"re-subscribed {resubscribed - restarted:.2f}s after restart; "
            f"revoke took {(t2_at - t2_sent) * 1000:.0f}ms; "
            f"{_figures('then refused after restart:', push)}; "
            f"{len(load.samples)} requests under load"
        )
        assert max(outage.values()) <= BOUND, outage
        assert resubscribed - restarted <= RECONNECT_BOUND
        assert max(push.values()) <= PUSH_BOUND, push

        # Nothing lost: both revocations refused everywhere, the others still accepted.
        with httpx.Client() as http:
            for name, url in targets.items():
                for token in ("t1", "t2"):
                    refused = http.get(url, headers=_bearer(tokens[token]))
                    assert refused.status_code == 401, (name, token)
                for token in ("keep1", "keep2"):
                    assert http.get(url, headers=_bearer(tokens[token])).status_code == 200
                assert http.get(url, headers=_bearer(fresh)).status_code == 200

        # From the load: every request answered, 200 or 401 only (no node failed closed while
        # the database answered), and every revocation held at every node once it arrived.
        revocation_path = [s for s in load.samples if s.target != "limited"]
        odd = [s for s in revocation_path if s.status not in (200, 401)]
        assert not odd, odd[:5]
        during = [s for s in revocation_path if stopped < s.start and s.end < restarting]
        assert len(during) > 50, len(during)  # the load ran through the outage
        for token in ("keep1", "keep2"):
            assert all(s.status == 200 for s in revocation_path if s.token == token)
        _check_limited(load, (stopping, stopped), (restarting, restarted))
        _check_revoked(load, "t1", ["A"], (t1_sent, t1_at), 0.0)  # the revoking node: at once
        _check_revoked(load, "t1", list(others), (t1_sent, t1_at), BOUND)
        _check_revoked(load, "t2", ["A"], (t2_sent, t2_at), 0.0)
        _check_revoked(load, "t2", list(others), (t2_sent, t2_at), BOUND)


class TcpRelay:
    """A loopback TCP relay to `target` on a port of its own, which a test can cut (every open
    connection closed, new ones reset at once) and restore, keeping the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._open = True
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                if not self._open:
                    raise ConnectionRefusedError
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=_pump, args=(source, sink), daemon=True)
                self._threads.append(thread)
                thread.start()

    def cut(self) -> None:
        self._open = False
        with self._lock:
            for sock in self._sockets:
                _reset(sock)
            self._sockets.clear()

    def restore(self) -> None:
        self._open = True

    def close(self) -> None:
        self._closed.set()
        self.cut()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv on it
    sock.close()


@contextmanager
def tcp_relay(target: tuple[str, int]) -> Iterator[TcpRelay]:
    relay = TcpRelay(target)
    try:
        yield relay
    finally:
        relay.close()


def test_gateway_cut_off_from_the_database_fails_closed_then_recovers(tmp_path: Path) -> None:
    require_postgres()
    (tmp_path / "cluster").mkdir()
    with ExitStack() as stack:
        relay = stack.enter_context(tcp_relay((PG_HOST, PG_PORT)))
        group = stack.enter_context(cluster(tmp_path / "cluster", nodes=1))
        relayed = PG_URL.replace(f"@{PG_HOST}:{PG_PORT}/", f"@127.0.0.1:{relay.port}/")
        assert relayed != PG_URL
        # No Redis at this gateway: what it learns, it learns from the database.
        (gw,) = stack.enter_context(
            gateways(
                group,
                tmp_path,
                1,
                redis_url=None,
                database_url=relayed,
                resync=GW_RESYNC,
                staleness=GW_STALENESS,
            )
        )
        a = group.nodes[0]
        auth = group.service_client()
        tokens = {"keep": _token(a, auth), "victim": _token(a, auth)}
        load = Load({"gw": f"{gw}/healthz"}, tokens, threads=2)
        with load.running(), httpx.Client() as http:
            time.sleep(0.5)
            relay.cut()
            cut = time.monotonic()
            _revoke(a, tokens["victim"], auth)  # the server's own database is fine
            keep = _bearer(tokens["keep"])
            failed = _until(
                lambda: http.get(f"{gw}/healthz", headers=keep).status_code == 503,
                within=GW_STALENESS + 5,
            )
            refused = http.get(f"{gw}/healthz", headers=keep)
            time.sleep(0.5)  # fail closed holds while the database stays out of reach
            relay.restore()
            restored = time.monotonic()
            recovered = _until(
                lambda: http.get(f"{gw}/healthz", headers=keep).status_code == 200,
                within=GW_RESYNC + 10,
            )
            victim = http.get(f"{gw}/healthz", headers=_bearer(tokens["victim"]))
            time.sleep(0.3)
        print(
            f"\ngateway failed closed {failed - cut:.2f}s after the cut "
            f"(max_staleness {GW_STALENESS}s, resync {GW_RESYNC}s); "
            f"recovered {recovered - restored:.2f}s after the database came back"
        )
        # Fail closed no sooner than the last sync before the cut allows, and no later than
        # max_staleness after it; recover within a re-read (or a few) of the database's return.
        assert GW_STALENESS - GW_RESYNC - 0.25 <= failed - cut <= GW_STALENESS + MARGIN
        assert recovered - restored <= GW_RESYNC + 2 * MARGIN
        assert refused.status_code == 503
        assert refused.json()["error"] == "temporarily_unavailable"
        assert refused.headers["retry-after"].isdigit()
        assert 'error="temporarily_unavailable"' in refused.headers["www-authenticate"]
        assert victim.status_code == 401  # caught up on what it missed: nothing lost
        assert victim.json()["error"] == "invalid_token"

        assert {s.status for s in load.samples} <= {200, 401, 503}
        unavailable = [s for s in load.samples if s.status == 503]
        assert unavailable
        assert all(s.error == "temporarily_unavailable" for s in unavailable)
        # 503 only inside the partition (and until the first re-read after it healed).
        assert min(s.start for s in unavailable) > cut + GW_STALENESS - GW_RESYNC - 0.25
        assert max(s.start for s in unavailable) < recovered
        first_503 = min(s.end for s in unavailable)
        for s in load.series("gw", "keep"):  # once stale, stale until a successful sync
            assert not (s.status == 200 and first_503 < s.start and s.end < restored), s
        # The revoked token passed only within the bounded staleness window, never after.
        accepted = [s for s in load.series("gw", "victim") if s.status == 200]
        assert all(s.start < cut + GW_STALENESS + MARGIN for s in accepted), accepted[-3:]
        assert all(s.status == 401 for s in load.series("gw", "victim") if s.start > recovered), (
            "the gateway accepted a token revoked during the partition"
        )
