"""Two authorization servers and two gateways, all separate processes, sharing PostgreSQL and
Redis: tokens cross nodes, revocations reach every gateway at once, rate limits hold exactly."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.cluster import TOKENWARD, Cluster, cluster, wait_healthy
from tests.e2e.live import free_port, stop_processes
from tests.store.conftest import PG_URL

LIMIT = 7


@dataclass
class Deployment:
    nodes: Cluster
    gateways: list[str]
    secret: str


def _gateway_config(group: Cluster, port: int, prefix: str) -> str:
    upstream = group.nodes[-1]  # the servers' /healthz stands in for an API behind the gateway
    return f"""
listen: {{host: 127.0.0.1, port: {port}}}
trust: {{issuer: "{group.issuer}", audience: "{group.issuer}/api"}}
revocations:
  database_url: "{PG_URL}"
  database_schema: {group.schema}
  redis_url: "{group.redis_url}"
rate_limits:
  redis_prefix: "{prefix}"
  shared: {{requests: {LIMIT}, per: 3600, key: client}}
audit: {{enabled: false}}
routes:
  - name: api
    prefix: /healthz
    upstreams: ["{upstream}"]
    auth: bearer
    scopes: [read]
    rate_limit: shared
"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("deployment")
    with cluster(tmp) as group:
        secret = json.loads(
            group.cli(
                "client",
                "create",
                "--client-id",
                "svc",
                "--grant-type",
                "client_credentials",
                "--scope",
                "read",
            )
        )["client_secret"]
        prefix = f"test:{secrets.token_hex(6)}:"
        processes, gateways = [], []
        try:
            for index in range(2):
                port = free_port()
                config = Path(tmp) / f"gateway{index}.yaml"
                config.write_text(_gateway_config(group, port, prefix))
                process = subprocess.Popen(
                    [TOKENWARD, "gateway", "--config", str(config)],
                    env=group.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                processes.append(process)
                gateways.append(f"http://127.0.0.1:{port}")
                wait_healthy(gateways[-1], process, path="/healthz")
            yield Deployment(group, gateways, secret)
        finally:
            stop_processes(processes)


def _token(deployment: Deployment, node: str) -> str:
    response = httpx.post(
        f"{node}/token", data={"grant_type": "client_credentials"}, auth=("svc", deployment.secret)
    )
    token: str = response.json()["access_token"]
    return token


def test_token_from_server_a_passes_at_gateway_b(deployment: Deployment) -> None:
    a, _b = deployment.nodes.nodes
    response = httpx.get(
        f"{deployment.gateways[1]}/healthz",
        headers={"authorization": f"Bearer {_token(deployment, a)}"},
    )
    assert response.status_code == 200, response.text


def test_revocation_at_server_a_is_refused_at_gateway_b(deployment: Deployment) -> None:
    a, _b = deployment.nodes.nodes
    token = _token(deployment, a)
    headers = {"authorization": f"Bearer {token}"}
    gateway = deployment.gateways[1]
    with httpx.Client() as http:
        assert http.get(f"{gateway}/healthz", headers=headers).status_code == 200
        http.post(f"{a}/revoke", data={"token": token}, auth=("svc", deployment.secret))
        revoked_at = time.monotonic()
        while http.get(f"{gateway}/healthz", headers=headers).status_code == 200:
            assert time.monotonic() - revoked_at < 1.5, "gateway B still accepts the revoked token"


def test_rate_limit_holds_exactly_across_both_gateways(deployment: Deployment) -> None:
    # A fresh client, so the earlier tests' requests do not count against its limit.
    created = json.loads(
        deployment.nodes.cli(
            "client",
            "create",
            "--client-id",
            "burst",
            "--grant-type",
            "client_credentials",
            "--scope",
            "read",
        )
    )
    token = httpx.post(
        f"{deployment.nodes.nodes[0]}/token",
        data={"grant_type": "client_credentials"},
        auth=("burst", created["client_secret"]),
    ).json()["access_token"]
    headers = {"authorization": f"Bearer {token}"}
    targets = [deployment.gateways[i % 2] + "/healthz" for i in range(3 * LIMIT)]
    with httpx.Client() as http, ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda url: http.get(url, headers=headers).status_code, targets))
    assert statuses.count(200) == LIMIT, statuses
    assert statuses.count(429) == 2 * LIMIT
