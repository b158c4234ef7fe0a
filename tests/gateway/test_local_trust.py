"""`trust.mode: local`: a `tokenward gateway` process reading the issuer's database directly
follows what `tokenward serve` (another process) and the CLI write there: revocations (through
/revoke and `tokenward revoke`) and signing keys (`tokenward keys rotate`).

Real processes on SQLite and on PostgreSQL. Before the gateway's lifespan owned the revocation
feed, its mirror stayed empty and a revoked token passed until it expired; before it reloaded
the keyring, a key rotated in after it started was refused."""

from __future__ import annotations

import base64
import json
import os
import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.cluster import cluster
from tests.e2e.live import free_port
from tests.gateway.processes import (
    RunningGateway,
    cli,
    gateway_process,
    refused_within,
    server_process,
    service_client,
    token,
)

REVOCATION_BOUND = 3.0  # seconds: the feed re-reads the log every 2 s without Redis


def local_config(path: Path, issuer: str, upstream: str) -> Path:
    path.write_text(
        f"""
listen: {{host: 127.0.0.1, port: 0}}
metrics: {{host: 127.0.0.1, port: 0}}
trust: {{issuer: "{issuer}", audience: "{issuer}/api", mode: local}}
audit: {{enabled: false}}
routes:
  - {{name: api, prefix: /healthz, upstreams: ["{upstream}"], auth: bearer, scopes: [read]}}
"""
    )
    return path


@dataclass
class Deployment:
    data_dir: Path
    env: Mapping[str, str]
    server: str
    gateway: RunningGateway
    client: tuple[str, str]

    @property
    def api(self) -> str:
        return self.gateway.base + "/healthz"  # the server's /healthz stands in for an API


@pytest.fixture(scope="module")
def sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One server and one local-trust gateway on one SQLite data directory, no Redis."""
    tmp = tmp_path_factory.mktemp("local-sqlite")
    data_dir = tmp / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
    cli(data_dir, env, "init")
    client = service_client(data_dir, env)
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    with server_process(data_dir, env, port) as server:
        config = local_config(tmp / "gateway.yaml", issuer, server)
        args = ("--data-dir", str(data_dir), "--issuer", issuer)
        with gateway_process(config, env, global_args=args) as gateway:
            yield Deployment(data_dir, env, server, gateway, client)


def test_revoked_at_the_server_is_refused_at_the_local_gateway(sqlite: Deployment) -> None:
    bearer = token(sqlite.server, sqlite.client)
    assert _status(sqlite.api, bearer) == 200
    revoked = httpx.post(f"{sqlite.server}/revoke", data={"token": bearer}, auth=sqlite.client)
    assert revoked.status_code == 200
    assert refused_within(sqlite.api, bearer, REVOCATION_BOUND) < REVOCATION_BOUND


def test_revoked_by_the_cli_is_refused_at_the_local_gateway(sqlite: Deployment) -> None:
    bearer = token(sqlite.server, sqlite.client)
    assert _status(sqlite.api, bearer) == 200
    cli(sqlite.data_dir, sqlite.env, "revoke", "--token", bearer)
    assert refused_within(sqlite.api, bearer, REVOCATION_BOUND) < REVOCATION_BOUND


def test_a_key_rotated_in_after_the_gateway_started_is_trusted(sqlite: Deployment) -> None:
    """Two forced rotations make a key the gateway never saw the active one; a server started
    now signs with it. The gateway reloads the keyring on the unknown kid."""
    before = _kid(token(sqlite.server, sqlite.client))
    for _ in range(2):
        cli(sqlite.data_dir, sqlite.env, "keys", "rotate", "--force")
    issuer = sqlite.server  # the first server's URL is the deployment's issuer
    with server_process(sqlite.data_dir, sqlite.env, issuer=issuer) as second:
        bearer = token(second, sqlite.client)
        assert _kid(bearer) != before
        assert _status(sqlite.api, bearer) == 200


def test_readiness_reports_the_followed_revocation_log(sqlite: Deployment) -> None:
    assert sqlite.gateway.admin is not None
    ready = httpx.get(sqlite.gateway.admin + "/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"serving": "ok", "revocations": "ok"}


def test_postgresql_with_redis_and_a_clean_stop(tmp_path: Path) -> None:
    """As a scaled-out deployment sets it up (tests/e2e/cluster.py): the gateway takes the
    servers' TOKENWARD_* settings; revocations arrive by Redis pub/sub and the log."""
    with cluster(tmp_path, nodes=1) as group:
        client = group.service_client()
        server = group.nodes[0]
        config = local_config(tmp_path / "gateway.yaml", group.issuer, server)
        with gateway_process(config, group.env) as gateway:
            api = gateway.base + "/healthz"
            first, second = token(server, client), token(server, client)
            assert _status(api, first) == 200
            assert _status(api, second) == 200
            httpx.post(f"{server}/revoke", data={"token": first}, auth=client)
            assert refused_within(api, first, REVOCATION_BOUND) < REVOCATION_BOUND
            group.cli("revoke", "--token", second)
            assert refused_within(api, second, REVOCATION_BOUND) < REVOCATION_BOUND
            gateway.process.send_signal(signal.SIGTERM)
            # uvicorn re-raises the signal once it has shut down (its parent sees why it ended).
            assert gateway.process.wait(20) in (0, -signal.SIGTERM)
            # The feed, the key reloads and the stores closed without a word: only the
            # listening line is on stderr.
            lines = gateway.stderr.read_text().splitlines()
            assert len(lines) == 1, lines


def _status(url: str, bearer: str) -> int:
    return httpx.get(url, headers={"authorization": f"Bearer {bearer}"}).status_code


def _kid(jwt: str) -> str:
    header = jwt.split(".", 1)[0]
    decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    kid: str = decoded["kid"]
    return kid
