"""`workers: N`: N real gateway processes on one port under `tokenward gateway`: state shared
through Redis, reload and graceful shutdown forwarded to every worker."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.live import free_port
from tests.gateway.processes import gateway_process, refused
from tests.gateway.upstream_app import Upstream
from tests.store.redis_server import need_shared_redis

CONFIG = """
listen: {{port: 0}}
audit: {{enabled: false}}
workers: 2
rate_limits:
  redis_url: {redis}
  redis_prefix: "{prefix}"
routes:
  - name: limited
    prefix: /limited
    upstreams: [{upstream}]
    auth: none
    rate_limit: {{requests: 5, per: 600, key: ip}}
  - name: held
    prefix: /held
    upstreams: [{upstream}]
    auth: none
"""


@pytest.fixture
def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}


def write_config(tmp_path: Path, upstream_url: str, extra: str = "") -> Path:
    path = tmp_path / "gateway.yaml"
    prefix = f"tw-test-workers-{secrets.token_hex(6)}:"
    text = CONFIG.format(redis=need_shared_redis(), prefix=prefix, upstream=upstream_url)
    path.write_text(text + extra)
    return path


def workers_of(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def fresh(url: str) -> int:
    """One request on a new connection (the kernel picks the worker per connection)."""
    with httpx.Client(timeout=10) as client:
        return client.get(url).status_code


def test_two_workers_share_one_port_and_one_rate_limit(
    tmp_path: Path, env: dict[str, str], upstream_url: str
) -> None:
    with gateway_process(write_config(tmp_path, upstream_url), env) as gateway:
        assert len(workers_of(gateway.process.pid)) == 2
        statuses = [fresh(f"{gateway.base}/limited/x") for _ in range(8)]
        # Per-worker memory would admit up to 10: the limit is the shared one.
        assert statuses == [200] * 5 + [429] * 3


BUSY = """\
  - name: busy
    prefix: /busy
    upstreams: [{upstream}]
    auth: none
    rate_limit: {{requests: 1000, per: 86400, key: ip}}
metrics: {{port: {metrics}}}
"""


def test_busy_limit_holds_within_the_lease_bound_across_two_workers(
    tmp_path: Path, env: dict[str, str], upstream_url: str
) -> None:
    """A limit that leases (K_max = 1000 // 100 = 10), flooded over connections spread on both
    workers: admitted within workers x (K_max - 1) = 18 of the limit (docs/gateway.md)."""
    metrics = free_port_pair()
    extra = BUSY.format(upstream=upstream_url, metrics=metrics)
    with gateway_process(write_config(tmp_path, upstream_url, extra), env) as gateway:

        def flood(_: int) -> list[int]:
            with httpx.Client(timeout=10) as client:  # one connection: one worker's
                return [client.get(f"{gateway.base}/busy/x").status_code for _ in range(160)]

        with ThreadPoolExecutor(16) as pool:  # 16 connections: both workers get some
            statuses = [status for batch in pool.map(flood, range(16)) for status in batch]
        served = [_served(metrics + index) for index in range(2)]
    assert set(statuses) == {200, 429}
    assert 1000 - 18 <= statuses.count(200) <= 1000 + 18 + 1  # + 1: refill over the test
    assert all(count > 0 for count in served), served  # both workers took part


def free_port_pair() -> int:
    """A port p with p + 1 free too (worker i serves its metrics on `metrics.port` + i)."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port + 1)) != 0 and port < 65535:
                return port


def _served(port: int) -> int:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("tokenward_gateway_requests_total{") and 'route="busy"' in line
    )


def test_reload_reaches_every_worker(
    tmp_path: Path, env: dict[str, str], upstream_url: str
) -> None:
    config = write_config(tmp_path, upstream_url)
    with gateway_process(config, env) as gateway:
        assert fresh(f"{gateway.base}/new/x") == 404
        added = f"  - {{name: new, prefix: /new, upstreams: [{upstream_url}], auth: none}}\n"
        config.write_text(config.read_text() + added)
        gateway.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        streak = 0
        while streak < 8:  # eight fresh connections in a row: both workers have it
            streak = streak + 1 if fresh(f"{gateway.base}/new/x") == 200 else 0
            assert time.monotonic() < deadline, "a worker did not reload"
            time.sleep(0.02 if streak == 0 else 0)  # bounded poll for the other processes


def test_shutdown_lets_requests_in_flight_finish(
    tmp_path: Path, env: dict[str, str], upstream: Upstream, upstream_url: str
) -> None:
    with gateway_process(write_config(tmp_path, upstream_url), env) as gateway:
        result: dict[str, object] = {}
        first = threading.Event()

        def in_flight() -> None:
            with (
                httpx.Client(timeout=30) as client,
                client.stream("GET", f"{gateway.base}/held/gate/shutdown") as response,
            ):
                chunks = response.iter_bytes()
                result["first"] = next(chunks)
                first.set()
                result["rest"] = b"".join(chunks)
                result["status"] = response.status_code

        thread = threading.Thread(target=in_flight)
        thread.start()
        assert first.wait(20)
        gateway.process.send_signal(signal.SIGTERM)
        port = int(gateway.base.rsplit(":", 1)[1])
        deadline = time.monotonic() + 20
        while _accepts(port):  # the workers stop accepting first
            assert time.monotonic() < deadline, "still accepting after SIGTERM"
            time.sleep(0.02)  # bounded poll for the other processes
        upstream.gate("shutdown").set()
        thread.join(20)
        assert result == {"first": b"first", "rest": b"second", "status": 200}
        assert gateway.process.wait(20) == 0


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_more_than_one_worker_needs_redis(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "workers: 2\nroutes:\n  - {prefix: /, upstreams: ['http://127.0.0.1:9'], auth: none}\n"
    )
    status, stderr = refused(path, env)
    assert status == 2
    assert "workers: more than one worker shares rate limits" in stderr
    assert "rate_limits.redis_url" in stderr
