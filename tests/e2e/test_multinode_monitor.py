"""Monitoring across nodes, over real HTTP on loopback: two authorization servers and two
gateways, all separate processes, sharing PostgreSQL and the Redis at 6379 (under a namespace of
their own, so parallel tests never meet).

The gateways have a `monitor:` section and trust 127.0.0.1 as a proxy, so the test sets each
request's client address with X-Forwarded-For. Every gateway ships its usage events to the
Redis stream `<namespace>:usage`; each batch is read by one of the two servers (one consumer
group), whose detectors count in the shared Redis windows. So:

- a token used from more networks than `ip_spread.max_networks`, alternately at the two
  gateways (neither sees more than the limit), raises one ip_spread alert at a server;
- with the response `revoke_token`, that token is refused at both gateways moments later while
  another token of the same subject still passes;
- an address blocked through one server's admin API, or by the failures detector after
  failed validations spread over both gateways, is refused with 403 `ip_blocked` at both
  gateways within two blocklist refreshes, and its neighbours still pass.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from redis import Redis

from tests.e2e.cluster import Cluster, cluster, gateway_processes
from tests.store.conftest import PG_URL
from tokenward.deploy.gateway_feed import deployment_namespace
from tokenward.deploy.namespace import Namespace
from tokenward.monitor.detectors import network_of
from tokenward.store.redis_event_relay import GROUP

T = TypeVar("T")

MAX_NETWORKS = 3  # ip_spread fires when one token is seen from more networks than this
FAILURES = 8  # the failures detector blocks an address after this many failed validations
BLOCK_REFRESH = 1.0  # every node re-reads the shared blocklist this often (RedisBlocklist)
MARGIN = 1.5  # scheduling slack: four servers' and gateways' processes share a small machine
# A usage event goes gateway buffer (shipped every 0.2 s) -> stream -> a server's consumer
# (blocks 0.5 s at most) -> its monitor (drained every 0.2 s): about a second end to end. The
# bound is generous for a loaded two-core machine; the figures printed are what was measured.
ALERT_BOUND = 10.0
# A block: written to Redis by the blocking server's next refresh, read by each gateway's next.
BLOCK_BOUND = 2 * BLOCK_REFRESH + MARGIN


@dataclass
class Deployment:
    group: Cluster
    gateways: list[str]
    namespace: str
    service: tuple[str, str]  # a client_credentials client with scope read
    admin: dict[str, str]  # headers with a bearer token of scope tokenward:admin


def _until(condition: Callable[[], T | None], within: float, what: str) -> tuple[T, float]:
    """Poll until `condition` returns something other than None or False: (it, the instant)."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value is not None and value is not False:
            return value, time.monotonic()
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        time.sleep(0.02)


def _gateway_config(group: Cluster, port: int) -> str:
    return f"""
listen: {{host: 127.0.0.1, port: {port}}}
trust: {{issuer: "{group.issuer}", audience: "{group.issuer}/api"}}
trusted_proxies: ["127.0.0.1/32"]
revocations:
  database_url: "{PG_URL}"
  database_schema: {group.schema}
  redis_url: "{group.redis_url}"
monitor: {{blocklist: true}}
audit: {{enabled: false}}
routes:
  - name: api
    prefix: /healthz
    upstreams: ["{group.nodes[-1]}"]
    auth: bearer
    scopes: [read]
    rate_limit: off
"""


@contextmanager
def _gateways(group: Cluster, tmp: Path, count: int) -> Iterator[list[str]]:
    """`count` gateway processes proxying a bearer-protected /healthz to the last server (whose
    own monitor does not watch /healthz: every event the detectors see came from a gateway)."""
    with gateway_processes(group, tmp, count, lambda port: _gateway_config(group, port)) as bases:
        yield bases


def _token(node: str, auth: tuple[str, str], scope: str | None = None) -> str:
    data = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    response = httpx.post(f"{node}/token", data=data, auth=auth, timeout=30)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _claims(token: str) -> dict[str, Any]:
    """The JWT's payload, unverified: the test only needs its jti and sub."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def _printed_namespace(log: Path) -> str | None:
    found = re.search(r"redis_namespace=(\S+)", log.read_text(errors="replace"))
    return found.group(1) if found else None


def _monitor_group(redis_url: str, stream: str) -> bool:
    """Whether the servers' consumer group exists on `stream` (its consumers show only once
    they were handed something, on Redis 7.0)."""
    with Redis.from_url(redis_url) as client:
        if not client.exists(stream):
            return False
        groups: list[dict[str, Any]] = client.xinfo_groups(stream)
        return any(g["name"] in (GROUP, GROUP.encode()) for g in groups)


def _forget(deployments: list[tuple[str, str]]) -> None:
    """Each (Redis URL, namespace)'s keys (stream, windows, blocklist, ...) go with it."""
    for redis_url, namespace in deployments:
        with Redis.from_url(redis_url) as client:
            keys = list(client.scan_iter(match=namespace + ":*", count=1000))
            if keys:
                client.delete(*keys)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("monitor")
    with ExitStack() as stack:
        leftovers: list[tuple[str, str]] = []  # the deployment's Redis keys, once it is gone
        stack.callback(_forget, leftovers)  # runs after every server and gateway has stopped
        group = stack.enter_context(
            cluster(
                tmp,
                log_dir=tmp,
                monitor_ip_spread__max_networks=str(MAX_NETWORKS),
                monitor_ip_spread__response="revoke_token",
                monitor_failures__threshold=str(FAILURES),
                monitor_failures__window="60",
                monitor_failures__response="block_ip",
            )
        )
        namespace = deployment_namespace(group.issuer, group.schema)
        leftovers.append((group.redis_url, namespace))
        # The gateways derive the namespace from trust.issuer and database_schema; it must be the
        # one each server uses (and prints at start), or events would go to a stream nobody reads.
        # (Printed before serving: the server answered /healthz, so the line is in its log.)
        printed = [_printed_namespace(tmp / f"server{i}.log") for i in range(len(group.nodes))]
        assert printed == [namespace] * len(group.nodes), (printed, namespace)
        # The servers read, in one consumer group, the stream the gateways will write to.
        _until(
            lambda: _monitor_group(group.redis_url, Namespace(namespace).usage),
            within=15,
            what="the servers' consumer group on the usage stream",
        )
        gws = stack.enter_context(_gateways(group, tmp, 2))
        service = group.service_client()
        ops = group.service_client("ops", "tokenward:admin")
        admin = {"authorization": f"Bearer {_token(group.nodes[0], ops, 'tokenward:admin')}"}
        assert httpx.get(f"{group.nodes[1]}/admin/api/alerts", headers=admin).status_code == 200
        yield Deployment(group, gws, namespace, service, admin)


def _call(http: httpx.Client, gateway: str, token: str, ip: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    if ip is not None:
        headers["x-forwarded-for"] = ip
    return http.get(f"{gateway}/healthz", headers=headers)


def _error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("error", "")) if isinstance(body, dict) else ""


def _alerts(
    deployment: Deployment, http: httpx.Client, detector: str
) -> list[tuple[int, dict[str, Any]]]:
    """(server index, alert) for every alert of `detector` at every server."""
    found = []
    for index, node in enumerate(deployment.group.nodes):
        response = http.get(f"{node}/admin/api/alerts", headers=deployment.admin)
        assert response.status_code == 200, response.text
        found += [(index, a) for a in response.json() if a["detector"] == detector]
    return found


def _spread(deployment: Deployment, http: httpx.Client, token: str, addresses: list[str]) -> float:
    """Use `token` from each address in turn, alternating between the gateways; checks that no
    gateway saw more than MAX_NETWORKS networks. Returns when the last answer came."""
    seen: dict[str, set[str]] = {gateway: set() for gateway in deployment.gateways}
    for index, ip in enumerate(addresses):
        gateway = deployment.gateways[index % len(deployment.gateways)]
        response = _call(http, gateway, token, ip)
        assert response.status_code == 200, (ip, response.status_code, response.text)
        seen[gateway].add(network_of(ip, "network"))
    answered = time.monotonic()
    assert len(set().union(*seen.values())) == MAX_NETWORKS + 1
    assert all(len(networks) <= MAX_NETWORKS for networks in seen.values())
    return answered


def test_ip_spread_across_two_gateways_alerts_at_a_server(deployment: Deployment) -> None:
    token = _token(deployment.group.nodes[0], deployment.service)
    claims = _claims(token)
    # One more network than the limit: each gateway sees two, the deployment four.
    addresses = ["198.51.100.7", "203.0.113.7", "192.0.2.7", "100.64.1.7"]
    with httpx.Client(timeout=10) as http:
        last = _spread(deployment, http, token, addresses)

        def alert() -> list[tuple[int, dict[str, Any]]] | None:
            mine = [
                (index, a)
                for index, a in _alerts(deployment, http, "ip_spread")
                if a["target"]["jti"] == claims["jti"]
            ]
            return mine or None

        found, visible = _until(alert, within=ALERT_BOUND, what="the ip_spread alert")
        time.sleep(0.5)  # a second alert for the same token would have shown by now
        settled = alert()
    print(
        f"\nip_spread alert visible at server{found[0][0]} "
        f"{(visible - last) * 1000:.0f}ms after the last request"
    )
    # Only the event that brought the count above the limit fires: one alert in the deployment.
    assert settled is not None
    assert len(settled) == 1, settled
    _, alert_ = settled[0]
    assert alert_["target"]["sub"] == claims["sub"]
    assert alert_["target"]["client_id"] == "svc"
    assert alert_["status"] == "open"
    assert alert_["severity"] == "high"
    assert sorted(alert_["evidence"]["networks"]) == sorted(
        network_of(ip, "network") for ip in addresses
    )
    assert alert_["evidence"]["limit"] == MAX_NETWORKS


def test_ip_spread_revokes_the_token_at_both_gateways(deployment: Deployment) -> None:
    a, b = deployment.group.nodes
    victim = _token(a, deployment.service)
    keeper = _token(b, deployment.service)  # the same subject (the client), another token
    jti = _claims(victim)["jti"]
    assert _claims(keeper)["sub"] == _claims(victim)["sub"]
    addresses = ["198.51.100.21", "203.0.113.21", "192.0.2.21", "100.64.2.21"]
    with httpx.Client(timeout=10) as http:
        for gateway in deployment.gateways:
            assert _call(http, gateway, keeper, "198.51.100.99").status_code == 200
        last = _spread(deployment, http, victim, addresses)
        refused: dict[str, float] = {}

        def refused_everywhere() -> bool:
            # No X-Forwarded-For: the address is 127.0.0.1, exempt from the failures detector.
            for gateway in deployment.gateways:
                if gateway not in refused:
                    response = _call(http, gateway, victim)
                    if response.status_code == 401:
                        assert _error(response) == "invalid_token", response.text
                        refused[gateway] = time.monotonic()
                    else:
                        assert response.status_code == 200, response.text
            return len(refused) == len(deployment.gateways)

        _until(refused_everywhere, within=ALERT_BOUND, what="the revoked token refused")
        alerts = [
            alert
            for _, alert in _alerts(deployment, http, "ip_spread")
            if alert["target"]["jti"] == jti
        ]
        # Once refused, refused: by both gateways, from any address; the keeper still passes.
        for gateway in deployment.gateways:
            for ip in (None, *addresses):
                assert _call(http, gateway, victim, ip).status_code == 401
            keeper_answer = _call(http, gateway, keeper, "198.51.100.99")
            assert keeper_answer.status_code == 200, keeper_answer.text
    figures = " ".join(
        f"gw{index}={(refused[gateway] - last) * 1000:.0f}ms"
        for index, gateway in enumerate(deployment.gateways)
    )
    print(f"\nip_spread -> revoke_token: refused after the last request at {figures}")
    assert len(alerts) == 1, alerts
    (response,) = alerts[0]["responses"]
    assert response["action"] == "revoke_token"
    assert response["by"] == "monitor:ip_spread"
    assert not response.get("failed"), response


def _wait_blocked(
    deployment: Deployment, http: httpx.Client, token: str, ip: str, within: float
) -> dict[str, float]:
    """Poll every gateway from `ip` until each answers 403 ip_blocked: gateway -> instant."""
    blocked: dict[str, float] = {}

    def everywhere() -> bool:
        for gateway in deployment.gateways:
            if gateway not in blocked:
                response = _call(http, gateway, token, ip)
                if response.status_code == 403:
                    assert _error(response) == "ip_blocked", response.text
                    blocked[gateway] = time.monotonic()
                else:
                    assert response.status_code == 200, response.text
        return len(blocked) == len(deployment.gateways)

    _until(everywhere, within=within, what=f"{ip} refused at every gateway")
    return blocked


def _blocklist(deployment: Deployment, http: httpx.Client, node: str) -> dict[str, Any]:
    """The blocklist as one server's admin API lists it: address -> entry."""
    response = http.get(f"{node}/admin/api/blocklist", headers=deployment.admin)
    assert response.status_code == 200, response.text
    return {entry["ip"]: entry for entry in response.json()}


def test_admin_block_at_one_server_is_refused_at_both_gateways(deployment: Deployment) -> None:
    a, b = deployment.group.nodes
    token = _token(b, deployment.service)
    target, neighbour = "192.0.2.77", "192.0.2.78"
    with httpx.Client(timeout=10) as http:
        for gateway in deployment.gateways:
            assert _call(http, gateway, token, target).status_code == 200
        sent = time.monotonic()
        answer = http.post(
            f"{a}/admin/api/blocklist",
            json={"ip": target, "seconds": 120},
            headers=deployment.admin,
        )
        answered = time.monotonic()
        assert answer.status_code == 200, answer.text
        blocked = _wait_blocked(deployment, http, token, target, within=BLOCK_BOUND + 5)
        listed, _ = _until(
            lambda: _blocklist(deployment, http, b).get(target),
            within=BLOCK_BOUND + 5,
            what="the block listed at the other server",
        )
        for gateway in deployment.gateways:
            refused = _call(http, gateway, token, target)
            assert refused.status_code == 403
            assert _error(refused) == "ip_blocked"
            assert _call(http, gateway, token, neighbour).status_code == 200  # the same /24
            assert _call(http, gateway, token).status_code == 200
        # Unblocked at the other server: both gateways let the address through again.
        unblocked = http.delete(f"{b}/admin/api/blocklist/{target}", headers=deployment.admin)
        assert unblocked.status_code == 200, unblocked.text
        _until(
            lambda: all(
                _call(http, gateway, token, target).status_code == 200
                for gateway in deployment.gateways
            ),
            within=BLOCK_BOUND + 5,
            what="the unblocked address admitted at every gateway",
        )
    latencies = {name: at - answered for name, at in blocked.items()}
    figures = " ".join(
        f"gw{index}={latencies[gateway] * 1000:.0f}ms"
        for index, gateway in enumerate(deployment.gateways)
    )
    print(
        f"\nadmin block at server0 (answered in {(answered - sent) * 1000:.0f}ms) "
        f"refused with ip_blocked at {figures}"
    )
    assert listed["by"] == "client:ops"
    assert max(latencies.values()) <= BLOCK_BOUND, latencies


def test_failures_spread_over_both_gateways_block_the_address(deployment: Deployment) -> None:
    token = _token(deployment.group.nodes[0], deployment.service)
    attacker, bystander = "203.0.113.66", "203.0.113.67"
    with httpx.Client(timeout=10) as http:
        # FAILURES failed validations, half at each gateway: neither alone reaches the
        # threshold, but they are one address's failures in the shared windows.
        for index in range(FAILURES):
            gateway = deployment.gateways[index % len(deployment.gateways)]
            bad = http.get(
                f"{gateway}/healthz",
                headers={"authorization": "Bearer not-a-token", "x-forwarded-for": attacker},
            )
            assert bad.status_code == 401, bad.text
        last = time.monotonic()
        blocked = _wait_blocked(deployment, http, token, attacker, within=ALERT_BOUND + BLOCK_BOUND)
        alerts = [
            alert
            for _, alert in _alerts(deployment, http, "failures")
            if alert["target"]["ip"] == attacker
        ]
        for gateway in deployment.gateways:
            assert _call(http, gateway, token, bystander).status_code == 200
    figures = " ".join(
        f"gw{index}={(blocked[gateway] - last) * 1000:.0f}ms"
        for index, gateway in enumerate(deployment.gateways)
    )
    print(f"\nfailures -> block_ip: refused with ip_blocked after the last failure at {figures}")
    assert len(alerts) == 1, alerts
    assert alerts[0]["evidence"]["count"] == FAILURES
    (response,) = alerts[0]["responses"]
    assert response["action"] == "block_ip"
    assert response["done"].startswith(f"{attacker} blocked"), response
