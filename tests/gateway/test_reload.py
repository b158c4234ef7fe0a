"""Config reload: under load with no failed request; bad files refused; SIGHUP; the CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.live import free_port
from tests.gateway.conftest import GatewayFactory
from tokenward.gateway.reload import Reloader

ONE = """
routes:
  - {{name: open, prefix: /open, upstreams: [{upstream}], auth: none}}
"""
TWO = """
routes:
  - {{name: open, prefix: /open, upstreams: [{upstream}], auth: none, timeouts: {{read: 20}}}}
  - {{name: extra, prefix: /extra, upstreams: [{upstream}], auth: none}}
"""


def _write(path: Path, text: str, upstream_url: str) -> None:
    path.write_text(text.format(upstream=upstream_url))


def test_reload_under_load_drops_nothing(
    gateway: GatewayFactory, upstream_url: str, tmp_path: Path
) -> None:
    running = gateway(ONE)
    path = tmp_path / "gateway.yaml"
    _write(path, ONE, upstream_url)
    reloader = Reloader(running.gateway, path)
    failures: list[str] = []
    done = threading.Event()
    counts = [0] * 4

    def load(slot: int) -> None:
        with httpx.Client(base_url=running.base, timeout=10) as client:
            while not done.is_set() and counts[slot] < 2000:
                response = client.post("/open/echo", content=b"payload")
                counts[slot] += 1
                if response.status_code != 200 or response.json()["size"] != 7:
                    failures.append(f"{response.status_code}")

    threads = [threading.Thread(target=load, args=(slot,)) for slot in range(4)]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(10):
            _write(path, TWO if round_ % 2 == 0 else ONE, upstream_url)
            assert reloader.check() is True
            path.write_text("routes: [unclosed\n")
            assert reloader.check() is False  # refused: the running config stays
            deadline = time.monotonic() + 10
            while sum(counts) < (round_ + 1) * 40 and time.monotonic() < deadline:
                time.sleep(0.001)  # bounded: let the load run under each config
    finally:
        done.set()
        for thread in threads:
            thread.join(30)
    assert failures == []
    assert sum(counts) >= 400
    assert reloader.reloads == 10
    assert reloader.last_error is not None
    assert "gateway.yaml:2" in reloader.last_error
    # The last good config (ONE) is what runs: /extra is gone again, /open still serves.
    assert running.http.get("/extra/x").status_code == 404
    assert running.http.get("/open/x").status_code == 200


def test_unchanged_file_is_not_reloaded_and_restart_only_changes_are_refused(
    gateway: GatewayFactory, upstream_url: str, tmp_path: Path
) -> None:
    running = gateway(ONE)
    path = tmp_path / "gateway.yaml"
    _write(path, ONE, upstream_url)
    reloader = Reloader(running.gateway, path)
    assert reloader.check() is None
    _write(path, "listen: {{port: 1}}\n" + TWO, upstream_url)
    assert reloader.check() is False
    assert "need a restart" in (reloader.last_error or "")
    assert running.http.get("/extra/x").status_code == 404


def test_sighup_reloads(gateway: GatewayFactory, upstream_url: str, tmp_path: Path) -> None:
    running = gateway(ONE)
    path = tmp_path / "gateway.yaml"
    _write(path, ONE, upstream_url)
    reloader = Reloader(running.gateway, path)
    _write(path, TWO, upstream_url)

    async def main() -> None:
        reloader.install_sighup()
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(100):
            if reloader.reloads:
                return
            await asyncio.sleep(0.01)  # bounded: the handler runs on the next loop turn

    asyncio.run(main())
    assert reloader.reloads == 1
    assert running.http.get("/extra/x").status_code == 200


@pytest.mark.skipif(sys.platform == "win32", reason="SIGHUP")
def test_cli_serves_reloads_on_sighup_and_exposes_metrics(
    upstream_url: str, tmp_path: Path
) -> None:
    port, metrics_port = free_port(), free_port()
    head = (
        f"listen: {{{{port: {port}}}}}\nmetrics: {{{{port: {metrics_port}}}}}\n"
        "audit: {{enabled: false}}\n"
    )
    path = tmp_path / "gateway.yaml"
    _write(path, head + ONE, upstream_url)
    code = "import sys; from tokenward.deploy.gateway import run_gateway; run_gateway(sys.argv[1])"
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(base + "/open/x", process)
        assert httpx.get(base + "/extra/x").status_code == 404
        _write(path, head + TWO, upstream_url)
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while httpx.get(base + "/extra/x").status_code != 200:
            assert time.monotonic() < deadline, "the reload did not happen"
            time.sleep(0.02)  # bounded wait for the other process to apply it
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert 'tokenward_gateway_requests_total{method="GET",route="open",status="200"}' in metrics
        assert "tokenward_gateway_request_seconds_bucket" in metrics
    finally:
        process.terminate()
        process.communicate(timeout=15)


def test_cli_refuses_a_bad_config_with_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("routes:\n  - {prefix: /x, upstreams: [http://h], auth: magic}\n")
    code = "import sys; from tokenward.deploy.gateway import run_gateway; run_gateway(sys.argv[1])"
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"{path}:2: routes[0].auth: must be one of" in result.stderr


def _wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None, process.communicate()[1].decode()
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)  # bounded wait for the server to start
