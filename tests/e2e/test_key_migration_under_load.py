"""`tokenward keys migrate` without a failed request: a steady stream of requests through a real
gateway (remote trust: it knows the keys only from /jwks, cached) while the deployment
migrates ES256 → ML-DSA-65 → ML-DSA-87. Separate processes, PostgreSQL and Redis, real time."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.cluster import Cluster, cluster, gateway_processes
from tokenward.tokens.jws import parse_compact

# Gateways cache /jwks for at least 30 s (RemoteJwks.min_interval): the new key must be
# published longer than that before it signs, which is what the overlap rule is for.
PUBLISH_AHEAD = 40


def _gateway(group: Cluster, port: int) -> str:
    return f"""
listen: {{host: 127.0.0.1, port: {port}}}
trust: {{issuer: "{group.issuer}", audience: "{group.issuer}/api"}}
audit: {{enabled: false}}
rate_limits:
  steady: {{requests: 1000000, per: 3600, key: token}}
routes:
  - name: api
    prefix: /healthz
    upstreams: ["{group.nodes[0]}"]
    auth: bearer
    scopes: [read]
    rate_limit: steady
"""


class Load:
    """Clients that take a fresh token every few requests and keep calling the gateway, plus
    one holding the token it got before any migration (old keys must keep verifying)."""

    def __init__(self, token_url: str, api: str, client: tuple[str, str]) -> None:
        self.token_url, self.api, self.client = token_url, api, client
        self.statuses: Counter[int] = Counter()
        self.algs: Counter[str] = Counter()
        self.failures: list[str] = []
        self.latest_alg = ""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        with httpx.Client(timeout=10) as http:
            self.first_token = self._token(http)
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(3)]

    def _token(self, http: httpx.Client) -> str:
        response = http.post(
            self.token_url,
            auth=self.client,
            data={"grant_type": "client_credentials", "scope": "read"},
        )
        self._count(response, "token endpoint")
        token = str(response.json()["access_token"]) if response.status_code == 200 else ""
        if token:
            alg = str(parse_compact(token).header["alg"])
            with self._lock:
                self.algs[alg] += 1
                self.latest_alg = alg
        return token

    def _count(self, response: httpx.Response, what: str) -> None:
        with self._lock:
            self.statuses[response.status_code] += 1
            if response.status_code != 200:
                self.failures.append(f"{what}: {response.status_code} {response.text[:200]}")

    def _run(self, index: int) -> None:
        with httpx.Client(timeout=10) as http:
            token, uses = "", 0
            while not self._stop.is_set():
                if index == 0:
                    token = self.first_token  # the pre-migration ES256 token, all along
                elif not token or uses >= 5:
                    token, uses = self._token(http), 0
                uses += 1
                response = http.get(self.api, headers={"authorization": f"Bearer {token}"})
                self._count(response, "gateway")
                time.sleep(0.02)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition() or self.failures:
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; algs so far {dict(self.algs)}")


@pytest.mark.timeout(600)
def test_es256_to_ml_dsa_65_to_ml_dsa_87_without_a_failed_request(tmp_path: Path) -> None:
    with cluster(
        tmp_path,
        nodes=1,
        jwks_max_age="1",
        key_publish_ahead=str(PUBLISH_AHEAD),
        key_schedule_seconds="1",
    ) as group:
        client = group.service_client()
        with gateway_processes(group, tmp_path, 1, lambda port: _gateway(group, port)) as gws:
            api = f"{gws[0]}/healthz"
            with Load(f"{group.issuer}/token", api, client) as load:
                load.wait_for(lambda: sum(load.statuses.values()) > 50, 60, "traffic")
                assert load.latest_alg == "ES256"
                for target in ("ML-DSA-65", "ML-DSA-87"):
                    plan = json.loads(group.cli("keys", "migrate", "--to", target))
                    assert plan["alg"] == target
                    # Published ahead: the old algorithm keeps signing until the switch.
                    time.sleep(2)
                    assert load.latest_alg != target
                    load.wait_for(
                        lambda t=target: load.latest_alg == t,  # type: ignore[misc]
                        PUBLISH_AHEAD + 60,
                        f"tokens signed {target}",
                    )
                    seen = sum(load.statuses.values())
                    load.wait_for(
                        lambda s=seen: sum(load.statuses.values()) > s + 50,  # type: ignore[misc]
                        60,
                        "traffic after the switch",
                    )
        assert load.failures == [], load.failures[:5]
        assert {"ES256", "ML-DSA-65", "ML-DSA-87"} <= set(load.algs)
        assert sum(load.statuses.values()) > 300
        keys = json.loads(group.cli("keys", "list"))
        states = {(key["alg"], key["state"]) for key in keys}
        # Nothing signs ES256 or ML-DSA-65 any more; their keys verify until their tokens end.
        assert ("ES256", "retiring") in states
        assert ("ML-DSA-65", "retiring") in states
        assert ("ML-DSA-87", "active") in states
        assert ("ES256", "active") not in states
