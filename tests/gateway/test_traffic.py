"""`traffic:` on a route: its grammar, the canary choice, and retries only where a request can
be sent again (RFC 9110 §9.2.2 idempotent methods, a body read whole)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.e2e.live import free_port
from tests.gateway.conftest import GatewayFactory, serve
from tests.gateway.upstream_app import Upstream
from tokenward.gateway.config import ConfigError, parse_config
from tokenward.gateway.headers import Incoming
from tokenward.gateway.model import Route
from tokenward.gateway.traffic import RouteTraffic, subject_bucket
from tokenward.gateway.traffic_model import (
    ActiveHealth,
    BreakerSettings,
    CanaryRule,
    ConnectionLimits,
    PassiveHealth,
    Retries,
)

ROUTE = """
routes:
  - name: api
    prefix: /api
    auth: none
    upstreams: [http://127.0.0.1:9001, http://127.0.0.1:9002]
{traffic}
"""

FULL = """\
    traffic:
      groups:
        canary: [http://127.0.0.1:9003]
        blue: http://127.0.0.1:9004
      canary:
        - {header: X-Canary, value: "on", to: canary}
        - {header: x-blue, to: blue}
        - {subjects: 10, to: canary}
        - {percent: 2.5, to: default}
      health:
        active: {path: /healthz, interval: 2, timeout: 0.5, healthy_threshold: 1,
                 unhealthy_threshold: 4}
        passive: {failures: 3, cooloff: 20}
      retries: {attempts: 2, deadline: 3, statuses: [502, 503]}
      breaker: {failures: 4, cooloff: 15}
      limits: {max_connections: 10, max_pending: 5, pending_timeout: 0.25}
"""


def route_of(traffic: str) -> Route:
    return parse_config(ROUTE.format(traffic=traffic)).routes[0]


def test_no_traffic_section_is_todays_behaviour() -> None:
    assert route_of("").traffic is None


def test_every_part_is_read() -> None:
    policy = route_of(FULL).traffic
    assert policy is not None
    assert [(name, [u.port for u in ups]) for name, ups in policy.groups] == [
        ("canary", [9003]),
        ("blue", [9004]),
    ]
    assert policy.canary == (
        CanaryRule("canary", header=b"x-canary", value=b"on"),
        CanaryRule("blue", header=b"x-blue"),
        CanaryRule("canary", subjects=10.0),
        CanaryRule("default", percent=2.5),
    )
    assert policy.active == ActiveHealth("/healthz", 2.0, 0.5, 1, 4)
    assert policy.passive == PassiveHealth(3, 20.0)
    assert policy.retries == Retries(2, 3.0, frozenset({502, 503}))
    assert policy.breaker == BreakerSettings(4, 15.0)
    assert policy.limits == ConnectionLimits(10, 5, 0.25)


def test_defaults() -> None:
    policy = route_of(
        "    traffic:\n      health: {active: {path: /h}, passive: {}}\n"
        "      retries: {}\n      breaker: {}\n      limits: {max_connections: 3}\n"
    ).traffic
    assert policy is not None
    assert policy.active == ActiveHealth("/h", 5.0, 1.0, 2, 3)
    assert policy.passive == PassiveHealth(1, 10.0)
    assert policy.retries == Retries(1, 10.0, frozenset({502, 503, 504}))
    assert policy.breaker == BreakerSettings(5, 30.0)
    assert policy.limits == ConnectionLimits(3, 0, 1.0)


@pytest.mark.parametrize(
    ("traffic", "field", "message"),
    [
        ("canary: [{percent: 5, to: blue}]", "canary[0].to", "no group named 'blue'"),
        ("canary: [{percent: 5, subjects: 5, to: default}]", "canary[0]", "exactly one of"),
        ("canary: [{to: default}]", "canary[0]", "exactly one of"),
        ("canary: [{percent: 101, to: default}]", "canary[0].percent", "0 to 100"),
        ("canary: [{percent: 5, value: x, to: default}]", "canary[0].value", "goes with"),
        ("canary: [{header: 'a b', to: default}]", "canary[0].header", "header name"),
        ("canary: [{percent: 5}]", "canary[0]", "to: is required"),
        ("groups: {default: [http://127.0.0.1:1]}", "groups.default", "route's own"),
        ("groups: {g: []}", "groups.g", "1 to 64"),
        ("groups: {g: [ftp://x]}", "groups.g[0]", "http://"),
        ("groups: {g: [{url: http://x, weight: 0}]}", "groups.g[0].weight", "1 to 1000"),
        ("groups: {g: {url: http://x, weight: 1001}}", "groups.g.weight", "1 to 1000"),
        ("groups: {g: [{url: http://x, weight: x}]}", "groups.g[0].weight", "an integer"),
        ("groups: {g: [{weight: 2}]}", "groups.g[0]", "url: is required"),
        ("health: {active: {interval: 1}}", "health.active", "path: is required"),
        ("health: {active: {path: x}}", "health.active.path", "starting with /"),
        ("health: {active: {path: /h, interval: 1, timeout: 2}}", "active.timeout", "exceed"),
        ("retries: {attempts: 11}", "retries.attempts", "at most 10"),
        ("retries: {attempts: 0}", "retries.attempts", "at least 1"),
        ("retries: {statuses: [200]}", "retries.statuses[0]", "400 to 599"),
        ("breaker: {cooloff: 7200}", "breaker.cooloff", "at most 3600"),
        ("limits: {max_pending: 2}", "limits", "max_connections: is required"),
        ("limits: {max_connections: 0}", "limits.max_connections", "at least 1"),
        ("retry: {}", "traffic.retry", "unknown field"),
    ],
)
def test_mistakes_are_refused_with_their_place(traffic: str, field: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        route_of(f"    traffic:\n      {traffic}\n")
    assert field in caught.value.field
    assert message in caught.value.message


def test_a_subjects_place_is_stable_and_a_larger_share_only_adds_subjects() -> None:
    assert subject_bucket("canary", "alice") == subject_bucket("canary", "alice")
    buckets = [subject_bucket("canary", f"user-{i}") for i in range(4000)]
    assert all(0 <= b < 10_000 for b in buckets)
    share = sum(b < 1000 for b in buckets) / len(buckets)
    assert 0.08 < share < 0.12  # 10 %: 400 expected, sd 19
    # Another group spreads the subjects differently (no group always gets the same users).
    assert buckets != [subject_bucket("blue", f"user-{i}") for i in range(4000)]


def _incoming(*headers: tuple[bytes, bytes]) -> Incoming:
    incoming = Incoming()
    incoming.headers.extend(headers)
    return incoming


def test_rules_are_tried_in_order_and_the_first_match_wins() -> None:
    route = route_of(FULL)
    assert route.traffic is not None
    traffic = RouteTraffic(route, route.traffic, None)
    groups = traffic.groups

    def port(incoming: Incoming, subject: str | None) -> int:
        return traffic.choose(incoming, subject).members[0].upstream.port

    outside = next(f"u{i}" for i in range(100) if subject_bucket("canary", f"u{i}") >= 1000)
    inside = next(f"u{i}" for i in range(100) if subject_bucket("canary", f"u{i}") < 1000)
    both = _incoming((b"x-canary", b"on"), (b"x-blue", b"1"))
    assert port(both, outside) == 9003
    assert port(_incoming((b"x-canary", b"off"), (b"x-blue", b"")), outside) == 9004
    assert port(_incoming(), inside) == 9003
    assert port(_incoming(), None) in (9001, 9002)  # no subject: the subjects rule passes
    assert set(groups) == {"default", "canary", "blue"}


def test_state_survives_a_reload_that_keeps_its_settings() -> None:
    route = route_of(FULL)
    assert route.traffic is not None
    first = RouteTraffic(route, route.traffic, None)
    again = RouteTraffic(route, route.traffic, first)
    assert all(again.members[u] is first.members[u] for u in first.members)
    changed = route_of(FULL.replace("failures: 4", "failures: 5"))
    assert changed.traffic is not None
    fresh = RouteTraffic(changed, changed.traffic, first)
    assert all(fresh.members[u] is not first.members[u] for u in first.members)


@pytest.fixture
def second() -> Iterator[tuple[Upstream, str]]:
    app = Upstream()
    app.port = free_port()
    with serve(app, app.port) as url:
        yield app, url


RETRY_ROUTE = """
routes:
  - name: open
    prefix: /open
    auth: none
    upstreams: [{upstream}, {second}]
    traffic:
      retries: {{attempts: 1, statuses: [503]}}
"""


def test_a_body_read_whole_is_sent_again_and_a_streamed_one_is_not(
    gateway: GatewayFactory, upstream: Upstream, second: tuple[Upstream, str]
) -> None:
    other, url = second
    running = gateway(RETRY_ROUTE.replace("{second}", url))

    def reached() -> int:
        return upstream.requests + other.requests

    before = reached()
    small = running.http.put("/open/status/503", content=b"x" * 1000)
    assert small.status_code == 503  # both answered 503: the retry's answer is passed on
    assert reached() == before + 2
    before = reached()
    big = running.http.put("/open/status/503", content=b"x" * (64 * 1024 + 1))
    assert big.status_code == 503
    assert reached() == before + 1  # beyond 64 KiB the body streams: never sent twice
    before = reached()
    assert running.http.post("/open/status/503", content=b"{}").status_code == 503
    assert reached() == before + 1
    assert running.http.delete("/open/status/503").status_code == 503
    assert reached() == before + 3


def test_a_reload_that_adds_active_checks_starts_them(
    gateway: GatewayFactory, upstream: Upstream
) -> None:
    plain = "routes:\n  - {{name: open, prefix: /open, auth: none, upstreams: [{upstream}]}}\n"
    running = gateway(plain)
    assert running.http.get("/open/x").status_code == 200
    checks = "traffic: {{health: {{active: {{path: /open/h, interval: 0.05}}}}}}"
    checked = plain.replace("[{upstream}]}}", f"[{{upstream}}], {checks}}}}}")
    url = f"http://127.0.0.1:{upstream.port}"
    before = upstream.requests
    running.gateway.reload(parse_config(checked.format(upstream=url)))
    deadline = time.monotonic() + 10
    while upstream.requests < before + 3:  # checks arrive with no request from a client
        assert time.monotonic() < deadline, "no health checks after the reload"
        time.sleep(0.02)  # polling interval
    running.gateway.reload(parse_config(plain.format(upstream=url)))


@pytest.fixture
def hangs_up() -> Iterator[tuple[str, list[bytes]]]:
    """An upstream that reads each request head and closes without answering."""
    heads: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                heads.append(data.split(b"\r\n", 1)[0])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", heads
    finally:
        stop.set()
        thread.join(5)
        listener.close()


HANGUP_ROUTE = """
routes:
  - name: open
    prefix: /open
    auth: none
    upstreams: [{hangup}, {upstream}]
    timeouts: {{read: 0.5}}
    traffic:
      retries: {{attempts: 2}}
"""


def test_a_closed_connection_is_retried_for_a_get_and_never_for_a_post(
    gateway: GatewayFactory, hangs_up: tuple[str, list[bytes]], upstream: Upstream
) -> None:
    url, heads = hangs_up
    running = gateway(HANGUP_ROUTE.replace("{hangup}", url))
    for _ in range(4):  # round robin: two of them start on the one that hangs up
        assert running.http.get("/open/x").status_code == 200
    assert heads.count(b"GET /open/x HTTP/1.1") == 2
    statuses = []
    for _ in range(4):
        before = upstream.requests
        statuses.append(running.http.post("/open/x", content=b"{}").status_code)
        if statuses[-1] == 502:
            assert upstream.requests == before  # not sent again to the good one
    assert sorted(statuses) == [200, 200, 502, 502]
    assert heads.count(b"POST /open/x HTTP/1.1") == 2
    assert running.last_audit()["reason"] in ("ok", "upstream_closed")


def test_a_read_timeout_is_not_retried(gateway: GatewayFactory, upstream: Upstream) -> None:
    text = RETRY_ROUTE.replace("{second}", "{upstream}").replace(
        "auth: none", "auth: none\n    timeouts: {{read: 0.3}}"
    )
    running = gateway(text)
    before = upstream.requests
    assert running.http.get("/open/slow").status_code == 504
    assert upstream.requests == before + 1
